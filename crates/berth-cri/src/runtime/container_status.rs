//! ContainerStatus, and the CRI view of a container record that
//! ListContainers and the events share.

use berth_runtime::model::{MountKind, Propagation};
use berth_runtime::runtime::{ContainerRecord, ContainerState, ContainerStatus};

use crate::convert;
use crate::error::CriError;
use crate::names;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn container_status(
        &self,
        req: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, CriError> {
        let c = self.container(&req.container_id)?;
        let (rec, status) = self.container_status_of(&c.id)?;
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            info.insert("info".to_string(), self.verbose_info(&rec)?);
        }
        Ok(v1::ContainerStatusResponse {
            status: Some(status),
            info,
        })
    }

    pub(crate) fn container_status_of(
        &self,
        id: &str,
    ) -> Result<(ContainerRecord, v1::ContainerStatus), CriError> {
        let rec = self.runtime.get_container(id)?;
        let st = self.runtime.container_status(&rec)?;
        let image_id = self.image_id_of(&rec);
        let mut status = cri_status(&rec, &st, image_id);
        status.user = self.user_of(&rec);
        Ok((rec, status))
    }

    /// berth's record of the container plus what containerd and CRI-O put
    /// in the verbose info and tools read from it (`crictl inspect`
    /// templates, debugging scripts): `runtimeSpec`, the OCI spec it was
    /// created from, and `pid`, its init process on the host.
    fn verbose_info(&self, rec: &ContainerRecord) -> Result<String, CriError> {
        let internal = |e: serde_json::Error| CriError::Internal(format!("container {}: {e}", rec.id));
        let mut info = serde_json::to_value(rec).map_err(internal)?;
        if let Some(spec) = self.runtime.container_runtime_spec(&rec.id)? {
            info["runtimeSpec"] = spec;
        }
        info["pid"] = rec.pid.unwrap_or(0).into();
        serde_json::to_string(&info).map_err(internal)
    }

    /// The identity the container's process runs as, as resolved at
    /// creation (records from before berth kept it have none).
    fn user_of(&self, rec: &ContainerRecord) -> Option<v1::ContainerUser> {
        let u = rec.user.as_ref()?;
        Some(v1::ContainerUser {
            linux: Some(v1::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                supplemental_groups: u.additional_gids.iter().map(|&g| i64::from(g)).collect(),
            }),
        })
    }

    /// The image's id as PullImage and ListImages give it (its config
    /// digest), recorded at creation; for older records looked up, by
    /// name or else by manifest digest, while the image is stored.
    pub(crate) fn image_id_of(&self, rec: &ContainerRecord) -> String {
        if !rec.image_config.is_empty() {
            return rec.image_config.clone();
        }
        self.images
            .lookup(&self.ns, &rec.image_name)
            .or_else(|_| self.images.lookup(&self.ns, &rec.image_id))
            .ok()
            .and_then(|img| self.images.config_digest(&img))
            .map(|d| d.to_string())
            .unwrap_or_default()
    }
}

pub(crate) fn state(s: ContainerState) -> v1::ContainerState {
    match s {
        ContainerState::Created => v1::ContainerState::ContainerCreated,
        ContainerState::Running => v1::ContainerState::ContainerRunning,
        ContainerState::Exited => v1::ContainerState::ContainerExited,
        ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
    }
}

pub(crate) fn metadata(rec: &ContainerRecord) -> v1::ContainerMetadata {
    v1::ContainerMetadata {
        name: names::container_cri_name(&rec.config.name, rec.config.attempt).to_string(),
        attempt: rec.config.attempt,
    }
}

pub(crate) fn image_spec(rec: &ContainerRecord) -> v1::ImageSpec {
    v1::ImageSpec {
        image: rec.image_name.clone(),
        user_specified_image: rec.config.image.clone(),
        ..Default::default()
    }
}

/// The image as kubelet reports it: the repository digest of what runs.
pub(crate) fn image_ref(rec: &ContainerRecord) -> String {
    let repo = rec
        .image_name
        .split_once('@')
        .map(|(r, _)| r)
        .unwrap_or_else(|| strip_tag(&rec.image_name));
    format!("{repo}@{}", rec.image_id)
}

fn strip_tag(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

fn cri_status(rec: &ContainerRecord, st: &ContainerStatus, image_id: String) -> v1::ContainerStatus {
    let exit = st.exit.as_ref();
    let message = match (&rec.error, exit) {
        (Some(e), _) => e.clone(),
        (None, Some(x)) if x.signal.is_some() => format!("killed by signal {}", x.signal.unwrap_or(0)),
        _ => String::new(),
    };
    v1::ContainerStatus {
        id: rec.id.clone(),
        metadata: Some(metadata(rec)),
        state: state(st.state) as i32,
        created_at: rec.created_at,
        started_at: rec.started_at.unwrap_or(0),
        finished_at: exit.map_or(0, |x| convert::rfc3339_nanos(&x.exited_at)),
        exit_code: exit.map_or(0, |x| x.code),
        image: Some(image_spec(rec)),
        image_ref: image_ref(rec),
        reason: st.reason.clone().unwrap_or_default(),
        message,
        labels: convert::hash(&rec.config.labels),
        annotations: convert::hash(&rec.config.annotations),
        mounts: rec
            .config
            .mounts
            .iter()
            .filter_map(|m| match &m.kind {
                MountKind::Bind(src) => Some(v1::Mount {
                    container_path: m.destination.clone(),
                    host_path: src.display().to_string(),
                    readonly: m.readonly,
                    recursive_read_only: m.recursive_readonly,
                    propagation: (match m.propagation {
                        Propagation::Private => v1::MountPropagation::PropagationPrivate,
                        Propagation::HostToContainer => v1::MountPropagation::PropagationHostToContainer,
                        Propagation::Bidirectional => v1::MountPropagation::PropagationBidirectional,
                    }) as i32,
                    ..Default::default()
                }),
                MountKind::Tmpfs => None,
            })
            .collect(),
        log_path: rec.log_path.display().to_string(),
        resources: Some(v1::ContainerResources {
            linux: Some(convert::cri_resources(&rec.config.resources)),
            windows: None,
        }),
        image_id,
        user: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_name_the_repository_digest() {
        assert_eq!(
            strip_tag("localhost:5000/busybox:latest"),
            "localhost:5000/busybox"
        );
        assert_eq!(strip_tag("localhost:5000/busybox"), "localhost:5000/busybox");
    }
}
