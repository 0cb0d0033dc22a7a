//! The pod and container configs every runtime gets, shaped as kubelet sends
//! them for a plain pod: own network, IPC and UTS namespaces, a PID namespace
//! per container, a log directory the caller made beforehand (kubelet creates
//! it before RunPodSandbox).

use std::path::Path;

use k8s_cri::v1;

use crate::cri::{BENCH_LABEL, RUN_LABEL, image_spec};

/// Names one benchmark pod: unique per invocation (`run_id`), scenario,
/// sample and index, valid as a hostname.
pub fn pod_name(run_id: &str, scenario: &str, sample: usize, index: usize) -> String {
    let mut name = format!("bb-{run_id}-{scenario}-{sample}-{index}");
    name.truncate(63);
    name
}

fn namespaces() -> v1::NamespaceOption {
    v1::NamespaceOption {
        network: v1::NamespaceMode::Pod as i32,
        pid: v1::NamespaceMode::Container as i32,
        ipc: v1::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

pub fn pod_config(name: &str, run_id: &str, log_root: &Path) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("{name}-uid"),
            namespace: "berth-bench".into(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_root.join(name).display().to_string(),
        labels: [
            (BENCH_LABEL.to_string(), "1".to_string()),
            (RUN_LABEL.to_string(), run_id.to_string()),
        ]
        .into(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A busybox `sleep` that runs until stopped; `attempt` makes each creation
/// in the same pod a new container, as kubelet's restart count does.
pub fn sleep_container(image: &str, attempt: u32) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "app".into(),
            attempt,
        }),
        image: Some(image_spec(image)),
        command: vec!["sleep".into(), "3600".into()],
        log_path: format!("app/{attempt}.log"),
        labels: [(BENCH_LABEL.to_string(), "1".to_string())].into(),
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the pod's log directory and its container subdirectory, as
/// kubelet does before the CRI calls.
pub fn make_log_dir(config: &v1::PodSandboxConfig) -> anyhow::Result<()> {
    let dir = Path::new(&config.log_directory).join("app");
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("create pod log directory {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_hostnames() {
        let n = pod_name("0123456789abcdef", "density", 12, 49);
        assert_eq!(n, "bb-0123456789abcdef-density-12-49");
        let long = pod_name(&"x".repeat(80), "pod", 0, 0);
        assert_eq!(long.len(), 63);
    }

    #[test]
    fn pods_are_labelled_and_log_under_the_root() {
        let c = pod_config("p", "r1", Path::new("/tmp/logs"));
        assert_eq!(c.labels[BENCH_LABEL], "1");
        assert_eq!(c.labels[RUN_LABEL], "r1");
        assert_eq!(c.log_directory, "/tmp/logs/p");
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.pid, v1::NamespaceMode::Container as i32);
        assert_eq!(ns.network, v1::NamespaceMode::Pod as i32);
    }
}
