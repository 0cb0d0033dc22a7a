//! PodSandboxStatus, and the CRI view of a pod record that ListPodSandbox
//! and the events share.

use berth_runtime::model::NsMode;
use berth_runtime::runtime::{PodRecord, PodState};

use crate::convert;
use crate::error::CriError;
use crate::names;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, CriError> {
        let pod = self.pod(&req.pod_sandbox_id)?;
        let mut info = std::collections::HashMap::new();
        // The record only: containerd and CRI-O add the pause container's
        // `runtimeSpec` here, but a berth pod has no container of its own
        // (its namespaces are pinned files, its PID init berth's), so no
        // OCI spec exists to show.
        if req.verbose {
            info.insert(
                "info".to_string(),
                serde_json::to_string(&pod)
                    .map_err(|e| CriError::Internal(format!("pod {}: {e}", pod.id)))?,
            );
        }
        Ok(v1::PodSandboxStatusResponse {
            status: Some(sandbox_status(&pod)),
            info,
            containers_statuses: vec![],
            timestamp: convert::now_nanos(),
        })
    }

    pub(crate) fn sandbox_status_of(&self, id: &str) -> Result<v1::PodSandboxStatus, CriError> {
        Ok(sandbox_status(&self.runtime.get_pod(id)?))
    }
}

pub(crate) fn metadata(pod: &PodRecord) -> v1::PodSandboxMetadata {
    let c = &pod.config;
    v1::PodSandboxMetadata {
        name: c
            .annotations
            .get(names::POD_NAME_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| c.name.clone()),
        uid: c.uid.clone(),
        namespace: c.k8s_namespace.clone(),
        attempt: c.attempt,
    }
}

/// The pod's annotations as the CRI gave them.
pub(crate) fn annotations(pod: &PodRecord) -> std::collections::HashMap<String, String> {
    let mut a = convert::hash(&pod.config.annotations);
    a.remove(names::POD_NAME_ANNOTATION);
    a
}

pub(crate) fn state(pod: &PodRecord) -> v1::PodSandboxState {
    match pod.state {
        PodState::Ready => v1::PodSandboxState::SandboxReady,
        PodState::NotReady => v1::PodSandboxState::SandboxNotready,
    }
}

fn sandbox_status(pod: &PodRecord) -> v1::PodSandboxStatus {
    let network = (pod.config.namespaces.network != NsMode::Node).then(|| {
        let mut ips = pod.ips.iter();
        v1::PodSandboxNetworkStatus {
            ip: ips.next().cloned().unwrap_or_default(),
            additional_ips: ips.map(|ip| v1::PodIp { ip: ip.clone() }).collect(),
        }
    });
    v1::PodSandboxStatus {
        id: pod.id.clone(),
        metadata: Some(metadata(pod)),
        state: state(pod) as i32,
        created_at: pod.created_at,
        network,
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace {
                options: Some(v1::NamespaceOption {
                    userns_options: Some(userns_options(pod)),
                    ..convert::cri_namespace_options(&pod.config.namespaces)
                }),
            }),
        }),
        labels: convert::hash(&pod.config.labels),
        annotations: annotations(pod),
        runtime_handler: pod.config.runtime_handler.clone(),
    }
}

/// The pod's user namespace as the CRI reports it: NODE, or POD with the
/// mappings it was created with.
fn userns_options(pod: &PodRecord) -> v1::UserNamespace {
    let maps = |v: &[berth_runtime::model::IdMapping]| {
        v.iter()
            .map(|m| v1::IdMapping {
                host_id: m.host_id,
                container_id: m.container_id,
                length: m.length,
            })
            .collect()
    };
    match &pod.config.userns {
        None => v1::UserNamespace {
            mode: v1::NamespaceMode::Node as i32,
            ..Default::default()
        },
        Some(u) => v1::UserNamespace {
            mode: v1::NamespaceMode::Pod as i32,
            uids: maps(&u.uids),
            gids: maps(&u.gids),
        },
    }
}
