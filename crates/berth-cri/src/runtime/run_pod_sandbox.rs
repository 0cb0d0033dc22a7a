//! RunPodSandbox: the CRI pod config mapped onto berth's `PodConfig`.

use berth_runtime::RuntimeError;
use berth_runtime::model::{DnsConfig, IdMapping, PodConfig, PortMapping, UserNamespace};
use berth_store::StoreError;

use crate::convert;
use crate::error::CriError;
use crate::names;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn run_pod_sandbox(
        &self,
        req: v1::RunPodSandboxRequest,
        deadline: Option<std::time::Instant>,
    ) -> Result<v1::RunPodSandboxResponse, CriError> {
        let config = req
            .config
            .ok_or_else(|| CriError::InvalidArgument("RunPodSandbox: config is missing".into()))?;
        let pod = pod_config(config, req.runtime_handler)?;
        let what = format!(
            "pod sandbox {}/{} (uid {:?}, attempt {})",
            pod.k8s_namespace,
            pod.annotations
                .get(names::POD_NAME_ANNOTATION)
                .map_or("", String::as_str),
            pod.uid,
            pod.attempt
        );
        let key = format!("pod/{}", pod.name);
        if let Some(id) = self.claim_late(&key)
            && self.runtime.get_pod(&id).is_ok()
        {
            return Ok(v1::RunPodSandboxResponse { pod_sandbox_id: id });
        }
        match self.runtime.run_pod(crate::NAMESPACE, pod) {
            Ok(rec) => {
                self.keep_if_late(deadline, key, &rec.id);
                Ok(v1::RunPodSandboxResponse {
                    pod_sandbox_id: rec.id,
                })
            }
            Err(RuntimeError::Store(StoreError::NameInUse { holder, .. })) => Err(CriError::AlreadyExists(
                format!("{what} already exists as {holder}"),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

fn pod_config(c: v1::PodSandboxConfig, runtime_handler: String) -> Result<PodConfig, CriError> {
    let meta = c
        .metadata
        .ok_or_else(|| CriError::InvalidArgument("RunPodSandbox: metadata is missing".into()))?;
    if meta.name.is_empty() {
        return Err(CriError::InvalidArgument(
            "RunPodSandbox: metadata.name is empty".into(),
        ));
    }
    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    convert::check_selinux("RunPodSandbox", sc.selinux_options.as_ref());
    // Absent options are the proto's zero value: POD for every namespace,
    // PID included (kubelet always sends them; crictl and critest may not).
    let namespace_options = sc.namespace_options.unwrap_or_default();
    let namespaces = convert::namespace_options(&namespace_options);
    let userns = userns(namespace_options.userns_options.as_ref())?;
    let mut annotations = convert::btree(c.annotations);
    annotations.insert(names::POD_NAME_ANNOTATION.into(), meta.name.clone());
    #[allow(deprecated)]
    let seccomp = convert::seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path)?;
    check_user_group(
        "RunPodSandbox",
        sc.run_as_user.is_some(),
        sc.run_as_group.is_some(),
    )?;
    Ok(PodConfig {
        name: names::pod_name(&meta.name, &meta.namespace, &meta.uid, meta.attempt),
        k8s_name: Some(meta.name.clone()),
        k8s_namespace: meta.namespace,
        uid: meta.uid,
        attempt: meta.attempt,
        hostname: (!c.hostname.is_empty()).then_some(c.hostname),
        labels: convert::btree(c.labels),
        annotations,
        namespaces,
        cgroup_parent: (!linux.cgroup_parent.is_empty()).then_some(linux.cgroup_parent),
        sysctls: convert::btree(linux.sysctls),
        log_directory: (!c.log_directory.is_empty()).then(|| c.log_directory.into()),
        runtime_handler,
        dns: c.dns_config.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings: c
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(port_mapping)
            .collect::<Result<_, _>>()?,
        network: None,
        privileged: sc.privileged,
        run_as_user: convert::id(sc.run_as_user.as_ref(), "run_as_user")?,
        run_as_group: convert::id(sc.run_as_group.as_ref(), "run_as_group")?,
        supplemental_groups: convert::ids(&sc.supplemental_groups, "supplemental group")?,
        readonly_rootfs: sc.readonly_rootfs,
        seccomp,
        resources: linux
            .resources
            .as_ref()
            .map(convert::resources)
            .unwrap_or_default(),
        userns,
    })
}

/// CRI userns options: NODE (or none) is the host's user namespace, POD
/// one of the pod's own with kubelet's mappings (checked by the runtime);
/// a user namespace per container, or another's, is not a thing a pod can
/// ask for.
fn userns(o: Option<&v1::UserNamespace>) -> Result<Option<UserNamespace>, CriError> {
    let Some(o) = o else {
        return Ok(None);
    };
    let maps = |v: &[v1::IdMapping]| {
        v.iter()
            .map(|m| IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    match v1::NamespaceMode::try_from(o.mode) {
        Ok(v1::NamespaceMode::Node) => Ok(None),
        Ok(v1::NamespaceMode::Pod) => Ok(Some(UserNamespace {
            uids: maps(&o.uids),
            gids: maps(&o.gids),
        })),
        _ => Err(CriError::InvalidArgument(format!(
            "RunPodSandbox: user namespace mode {} is not supported: only POD and NODE are",
            v1::NamespaceMode::try_from(o.mode)
                .map_or_else(|_| o.mode.to_string(), |m| m.as_str_name().to_string())
        ))),
    }
}

/// A group alone is refused as containerd refuses it: the image's user
/// would run with a group chosen for someone else.
pub(crate) fn check_user_group(call: &str, has_user: bool, has_group: bool) -> Result<(), CriError> {
    if has_group && !has_user {
        return Err(CriError::InvalidArgument(format!(
            "{call}: security context: user group is specified without user (run_as_group needs run_as_user or run_as_username)"
        )));
    }
    Ok(())
}

/// Only mappings with a host port reach CNI: a container port alone is
/// reachable on the pod IP anyway, and portmap refuses host port 0
/// (containerd skips `HostPort <= 0` the same way).
fn port_mapping(p: &v1::PortMapping) -> Result<PortMapping, CriError> {
    let port = |v: i32, what: &str| {
        u16::try_from(v)
            .map_err(|_| CriError::InvalidArgument(format!("port mapping: {what} {v} is out of range")))
    };
    let protocol = v1::Protocol::try_from(p.protocol).map_err(|_| {
        CriError::InvalidArgument(format!("port mapping: protocol {} is unknown", p.protocol))
    })?;
    Ok(PortMapping {
        protocol: protocol.as_str_name().to_ascii_lowercase(),
        container_port: port(p.container_port, "container port")?,
        host_port: port(p.host_port, "host port")?,
        host_ip: p.host_ip.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kubelet_pod_config() {
        let c = v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "Web".into(),
                uid: "u1".into(),
                namespace: "prod".into(),
                attempt: 2,
            }),
            hostname: "web".into(),
            port_mappings: vec![v1::PortMapping {
                protocol: v1::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: String::new(),
            }],
            linux: Some(v1::LinuxPodSandboxConfig {
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(v1::NamespaceOption {
                        network: v1::NamespaceMode::Node as i32,
                        pid: v1::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    run_as_user: Some(v1::Int64Value { value: 1000 }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod_config(c, "runc".into()).unwrap();
        assert_eq!(p.name, names::pod_name("Web", "prod", "u1", 2));
        assert_eq!(p.annotations[names::POD_NAME_ANNOTATION], "Web");
        // CNI plugins get the name kubelet knows (K8S_POD_NAME).
        assert_eq!(p.k8s_name.as_deref(), Some("Web"));
        assert_eq!(p.namespaces.network, berth_runtime::model::NsMode::Node);
        assert_eq!(p.namespaces.pid, berth_runtime::model::NsMode::Pod);
        assert_eq!(p.port_mappings[0].protocol, "udp");
        assert_eq!(p.run_as_user, Some(1000));
        assert_eq!(p.runtime_handler, "runc");
    }

    #[test]
    fn skips_port_mappings_without_host_port() {
        let mapping = |container_port, host_port| v1::PortMapping {
            protocol: v1::Protocol::Tcp as i32,
            container_port,
            host_port,
            host_ip: String::new(),
        };
        let c = v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "p".into(),
                ..Default::default()
            }),
            port_mappings: vec![mapping(80, 0), mapping(81, 8081), mapping(82, -1)],
            ..Default::default()
        };
        let p = pod_config(c, String::new()).unwrap();
        assert_eq!(p.port_mappings.len(), 1, "{:?}", p.port_mappings);
        assert_eq!(p.port_mappings[0].container_port, 81);
        assert_eq!(p.port_mappings[0].host_port, 8081);
    }

    #[test]
    fn refuses_group_without_user() {
        let config = |user: Option<i64>| v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "p".into(),
                ..Default::default()
            }),
            linux: Some(v1::LinuxPodSandboxConfig {
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    run_as_user: user.map(|value| v1::Int64Value { value }),
                    run_as_group: Some(v1::Int64Value { value: 1000 }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = pod_config(config(None), String::new()).unwrap_err();
        assert!(matches!(err, CriError::InvalidArgument(_)), "{err}");
        assert!(
            err.to_string().contains("user group is specified without user"),
            "{err}"
        );
        let p = pod_config(config(Some(0)), String::new()).unwrap();
        assert_eq!((p.run_as_user, p.run_as_group), (Some(0), Some(1000)));
    }

    #[test]
    fn absent_namespace_options_mean_pod_for_every_namespace() {
        let c = v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "p".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ns = pod_config(c, String::new()).unwrap().namespaces;
        use berth_runtime::model::NsMode;
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (NsMode::Pod, NsMode::Pod, NsMode::Pod)
        );
    }

    #[test]
    fn refuses_missing_metadata() {
        let err = pod_config(v1::PodSandboxConfig::default(), String::new()).unwrap_err();
        assert!(err.to_string().contains("metadata"), "{err}");
    }
}
