//! CreateContainer: the CRI container config mapped onto berth's
//! `ContainerConfig`; the image must already be pulled. An image that is
//! the path of a checkpoint archive makes a container that start restores.

use std::path::PathBuf;

use berth_runtime::RuntimeError;
use berth_runtime::model::{
    ContainerConfig, Device, Mount, MountKind, Propagation, SecurityContext, SupplementalGroupsPolicy,
};
use berth_runtime::runtime::CheckpointArchive;
use berth_store::StoreError;

use crate::convert;
use crate::error::CriError;
use crate::names;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn create_container(
        &self,
        req: v1::CreateContainerRequest,
        deadline: Option<std::time::Instant>,
    ) -> Result<v1::CreateContainerResponse, CriError> {
        let pod = self.pod(&req.pod_sandbox_id)?;
        let config = req
            .config
            .ok_or_else(|| CriError::InvalidArgument("CreateContainer: config is missing".into()))?;
        let image_ref = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if image_ref.is_empty() {
            return Err(CriError::InvalidArgument(
                "CreateContainer: image is empty".into(),
            ));
        }
        let cfg = container_config(config)?;
        // As CRI-O: the image may be the path of a checkpoint archive, which
        // names the image the container runs on (see container_restore).
        let archive = CheckpointArchive::open(&image_ref)?;
        let image_ref = archive.as_ref().map_or(image_ref, |a| a.image_name().to_owned());
        let image = self.resolve_image(&image_ref).map_err(|e| match e {
            e if e.is_not_found() => {
                let of = archive
                    .as_ref()
                    .map(|a| format!(" (the image of checkpoint archive {})", a.path.display()))
                    .unwrap_or_default();
                CriError::NotFound(format!(
                    "image {image_ref:?}{of} is not pulled (pull it first): {e}"
                ))
            }
            e => e,
        })?;
        let what = format!("container {:?} in pod sandbox {}", cfg.name, pod.id);
        let key = format!("container/{}/{}", pod.id, cfg.name);
        if let Some(id) = self.claim_late(&key)
            && self.runtime.get_container(&id).is_ok()
        {
            return Ok(v1::CreateContainerResponse { container_id: id });
        }
        let created = match &archive {
            Some(a) => self
                .runtime
                .create_container_from_checkpoint(&pod.id, cfg, &image, a),
            None => self.runtime.create_container(&pod.id, cfg, &image),
        };
        let rec = match created {
            Ok(rec) => {
                self.keep_if_late(deadline, key, &rec.id);
                rec
            }
            Err(RuntimeError::Store(StoreError::NameInUse { holder, .. })) => {
                return Err(CriError::AlreadyExists(format!(
                    "{what} already exists as {holder}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.publish(&rec.id, v1::ContainerEventType::ContainerCreatedEvent);
        Ok(v1::CreateContainerResponse { container_id: rec.id })
    }
}

fn container_config(c: v1::ContainerConfig) -> Result<ContainerConfig, CriError> {
    let meta = c
        .metadata
        .ok_or_else(|| CriError::InvalidArgument("CreateContainer: metadata is missing".into()))?;
    if meta.name.is_empty() {
        return Err(CriError::InvalidArgument(
            "CreateContainer: metadata.name is empty".into(),
        ));
    }
    let linux = c.linux.unwrap_or_default();
    Ok(ContainerConfig {
        name: names::container_name(&meta.name, meta.attempt),
        attempt: meta.attempt,
        image: c.image.map(|i| i.image).unwrap_or_default(),
        command: c.command,
        args: c.args,
        env: c
            .envs
            .into_iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect(),
        working_dir: (!c.working_dir.is_empty()).then_some(c.working_dir),
        labels: convert::btree(c.labels),
        annotations: convert::btree(c.annotations),
        mounts: c.mounts.iter().map(mount).collect::<Result<_, _>>()?,
        devices: c
            .devices
            .into_iter()
            .map(|d| Device {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: if d.permissions.is_empty() {
                    "rwm".into()
                } else {
                    d.permissions
                },
            })
            .collect(),
        tty: c.tty,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        log_path: (!c.log_path.is_empty()).then(|| PathBuf::from(c.log_path)),
        resources: linux
            .resources
            .as_ref()
            .map(convert::resources)
            .unwrap_or_default(),
        security: security(linux.security_context.unwrap_or_default())?,
        rlimits: vec![],
        sysctls: Default::default(),
        stop_signal: None,
        idmapped_mounts: c
            .mounts
            .iter()
            .filter(|m| !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty())
            .map(|m| (m.container_path.clone(), idmap(m)))
            .collect(),
    })
}

/// A CRI mount's idmapping, in the model's terms.
fn idmap(m: &v1::Mount) -> berth_runtime::model::UserNamespace {
    let maps = |v: &[v1::IdMapping]| {
        v.iter()
            .map(|m| berth_runtime::model::IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    berth_runtime::model::UserNamespace {
        uids: maps(&m.uid_mappings),
        gids: maps(&m.gid_mappings),
    }
}

fn mount(m: &v1::Mount) -> Result<Mount, CriError> {
    if m.container_path.is_empty() || m.host_path.is_empty() {
        return Err(CriError::InvalidArgument(format!(
            "mount {:?} -> {:?}: host and container path are both required",
            m.host_path, m.container_path
        )));
    }
    let propagation = match v1::MountPropagation::try_from(m.propagation) {
        Ok(v1::MountPropagation::PropagationPrivate) => Propagation::Private,
        Ok(v1::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
        Ok(v1::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
        Err(_) => {
            return Err(CriError::InvalidArgument(format!(
                "mount {}: propagation {} is unknown",
                m.container_path, m.propagation
            )));
        }
    };
    // KEP-3857: a recursive read-only mount must be read-only, and the
    // runtime cannot keep mounts that propagate into it read-only later.
    if m.recursive_read_only && !m.readonly {
        return Err(CriError::InvalidArgument(format!(
            "mount {}: recursive_read_only needs readonly",
            m.container_path
        )));
    }
    if m.recursive_read_only && propagation != Propagation::Private {
        return Err(CriError::InvalidArgument(format!(
            "mount {}: recursive_read_only needs private propagation, not {:?}",
            m.container_path, propagation
        )));
    }
    Ok(Mount {
        destination: m.container_path.clone(),
        kind: MountKind::Bind(m.host_path.clone().into()),
        readonly: m.readonly,
        propagation,
        size: 0,
        recursive_readonly: m.recursive_read_only,
    })
}

fn security(sc: v1::LinuxContainerSecurityContext) -> Result<SecurityContext, CriError> {
    convert::check_selinux("CreateContainer", sc.selinux_options.as_ref());
    super::run_pod_sandbox::check_user_group(
        "CreateContainer",
        sc.run_as_user.is_some() || !sc.run_as_username.is_empty(),
        sc.run_as_group.is_some(),
    )?;
    let caps = sc.capabilities.unwrap_or_default();
    #[allow(deprecated)]
    let seccomp = convert::seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path)?;
    #[allow(deprecated)]
    let apparmor = match &sc.apparmor {
        Some(p) if !p.localhost_ref.is_empty() => Some(p.localhost_ref.clone()),
        _ => (!sc.apparmor_profile.is_empty()).then(|| sc.apparmor_profile.clone()),
    };
    Ok(SecurityContext {
        privileged: sc.privileged,
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        run_as_user: convert::id(sc.run_as_user.as_ref(), "run_as_user")?,
        run_as_username: (!sc.run_as_username.is_empty()).then_some(sc.run_as_username),
        run_as_group: convert::id(sc.run_as_group.as_ref(), "run_as_group")?,
        supplemental_groups: convert::ids(&sc.supplemental_groups, "supplemental group")?,
        supplemental_groups_policy: match v1::SupplementalGroupsPolicy::try_from(
            sc.supplemental_groups_policy,
        ) {
            Ok(v1::SupplementalGroupsPolicy::Merge) => SupplementalGroupsPolicy::Merge,
            Ok(v1::SupplementalGroupsPolicy::Strict) => SupplementalGroupsPolicy::Strict,
            Err(_) => {
                return Err(CriError::InvalidArgument(format!(
                    "CreateContainer: supplemental_groups_policy {} is unknown",
                    sc.supplemental_groups_policy
                )));
            }
        },
        readonly_rootfs: sc.readonly_rootfs,
        no_new_privs: sc.no_new_privs,
        seccomp,
        // kubelet sends the defaults it wants; empty means "not set".
        masked_paths: (!sc.masked_paths.is_empty()).then_some(sc.masked_paths),
        readonly_paths: (!sc.readonly_paths.is_empty()).then_some(sc.readonly_paths),
        namespaces: sc.namespace_options.as_ref().map(convert::namespace_options),
        apparmor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kubelet_container_config() {
        let c = v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            }),
            image: Some(v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            envs: vec![v1::KeyValue {
                key: "A".into(),
                value: "b=c".into(),
            }],
            mounts: vec![v1::Mount {
                container_path: "/data".into(),
                host_path: "/tmp/x".into(),
                readonly: true,
                propagation: v1::MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            }],
            log_path: "app/1.log".into(),
            linux: Some(v1::LinuxContainerConfig {
                resources: Some(v1::LinuxContainerResources {
                    memory_limit_in_bytes: 1 << 20,
                    ..Default::default()
                }),
                security_context: Some(v1::LinuxContainerSecurityContext {
                    capabilities: Some(v1::Capability {
                        add_capabilities: vec!["NET_ADMIN".into()],
                        ..Default::default()
                    }),
                    seccomp: Some(v1::SecurityProfile {
                        profile_type: v1::security_profile::ProfileType::Unconfined as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let m = container_config(c).unwrap();
        assert_eq!(m.name, "app_1");
        assert_eq!(m.env, ["A=b=c"]);
        assert_eq!(m.mounts[0].propagation, Propagation::HostToContainer);
        assert!(m.mounts[0].readonly);
        assert_eq!(m.log_path, Some(PathBuf::from("app/1.log")));
        assert_eq!(m.resources.memory_limit, 1 << 20);
        assert_eq!(m.security.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(
            m.security.seccomp,
            Some(berth_runtime::model::Seccomp::Unconfined)
        );
    }

    #[test]
    fn refuses_group_without_user() {
        let group = || Some(v1::Int64Value { value: 1000 });
        let err = security(v1::LinuxContainerSecurityContext {
            run_as_group: group(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, CriError::InvalidArgument(_)), "{err}");
        assert!(
            err.to_string().contains("user group is specified without user"),
            "{err}"
        );

        let by_uid = security(v1::LinuxContainerSecurityContext {
            run_as_user: Some(v1::Int64Value { value: 0 }),
            run_as_group: group(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((by_uid.run_as_user, by_uid.run_as_group), (Some(0), Some(1000)));
        let by_name = security(v1::LinuxContainerSecurityContext {
            run_as_username: "nobody".into(),
            run_as_group: group(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(by_name.run_as_username.as_deref(), Some("nobody"));
        assert_eq!(by_name.run_as_group, Some(1000));
    }

    #[test]
    fn recursive_read_only_needs_readonly_and_private_propagation() {
        let rro = |readonly, propagation: v1::MountPropagation| v1::Mount {
            container_path: "/mnt".into(),
            host_path: "/tmp/x".into(),
            readonly,
            recursive_read_only: true,
            propagation: propagation as i32,
            ..Default::default()
        };
        let m = mount(&rro(true, v1::MountPropagation::PropagationPrivate)).unwrap();
        assert!(m.readonly && m.recursive_readonly);
        for bad in [
            rro(false, v1::MountPropagation::PropagationPrivate),
            rro(true, v1::MountPropagation::PropagationHostToContainer),
            rro(true, v1::MountPropagation::PropagationBidirectional),
        ] {
            let err = mount(&bad).unwrap_err();
            assert!(matches!(err, CriError::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains("mount /mnt"), "{err}");
        }
    }

    #[test]
    fn supplemental_groups_policy_maps_and_unknown_is_refused() {
        let policy = |p: i32| {
            security(v1::LinuxContainerSecurityContext {
                supplemental_groups_policy: p,
                ..Default::default()
            })
        };
        assert_eq!(
            policy(0).unwrap().supplemental_groups_policy,
            SupplementalGroupsPolicy::Merge
        );
        assert_eq!(
            policy(v1::SupplementalGroupsPolicy::Strict as i32)
                .unwrap()
                .supplemental_groups_policy,
            SupplementalGroupsPolicy::Strict
        );
        assert!(matches!(policy(7), Err(CriError::InvalidArgument(_))));
    }
}
