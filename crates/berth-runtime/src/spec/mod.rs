//! OCI runtime-spec generation from berth's pod and container model, with
//! secure defaults matching containerd's CRI plugin: default capabilities,
//! masked and read-only paths, berth's RuntimeDefault seccomp profile, the
//! pod's namespaces joined, and limits clamped to what berth itself may set.
//!
//! Generation runs on every container start, so it spawns nothing, reads
//! only the few small files it must, and caches what does not change
//! (host facts, the default seccomp profile).

mod capabilities;
mod controllers;
mod defaults;
mod devices;
mod host;
mod mounts;
mod namespaces;
mod process;
mod resources;
pub mod seccomp;
mod user;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder};

use crate::model::{ContainerConfig, ImageRun, PodConfig};

pub use capabilities::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES, capability_number, mask as capability_mask};
pub use defaults::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
pub use host::HostInfo;
pub use resources::{SwapHost, oci_swap, v2_swap_files};

/// Namespaces of the pod to join. `pid` is `/proc/<pod init>/ns/pid`; the
/// others are pinned bind mounts under `/run/berth/ns/<pod>/`.
#[derive(Clone, Debug, Default)]
pub struct PodNamespacePaths {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub pid: Option<PathBuf>,
    /// PID namespace of the target container (`NsMode::Target`).
    pub target_pid: Option<PathBuf>,
    /// The pod's pinned user namespace, when the pod has one.
    pub user: Option<PathBuf>,
}

/// Files the pod provides to each of its containers.
#[derive(Clone, Debug, Default)]
pub struct PodFiles {
    /// Bound at /etc/hostname.
    pub hostname: Option<PathBuf>,
    /// Bound at /etc/hosts.
    pub hosts: Option<PathBuf>,
    /// Bound at /etc/resolv.conf.
    pub resolv_conf: Option<PathBuf>,
    /// The pod's /dev/shm, bound in when the pod shares IPC.
    pub shm: Option<PathBuf>,
}

/// Everything a container's spec is generated from.
#[derive(Clone, Copy, Debug)]
pub struct SpecInput<'a> {
    /// Container id.
    pub id: &'a str,
    pub pod: &'a PodConfig,
    pub container: &'a ContainerConfig,
    pub image: &'a ImageRun,
    /// Mounted root filesystem (absolute); /etc/passwd and /etc/group are
    /// read beneath it.
    pub rootfs: &'a Path,
    /// Explicit cgroup path, e.g. `/berth/<pod>/<ctr>`.
    pub cgroups_path: &'a str,
    pub pod_namespaces: &'a PodNamespacePaths,
    pub pod_files: &'a PodFiles,
}

/// A generated spec and what was changed from the request to make it
/// settable here (clamped limits), for the caller to log once.
#[derive(Clone, Debug)]
pub struct Generated {
    pub spec: Spec,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("container {container}: no command: neither the request nor the image gives one")]
    NoCommand { container: String },
    #[error("container {container}: working directory {dir:?} is not absolute")]
    RelativeWorkingDir { container: String, dir: String },
    #[error("container {container}: privileged container in a pod that is not privileged")]
    PrivilegedNotAllowed { container: String },
    #[error("user {user:?} not found in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("group {group:?} not found in the image's /etc/group")]
    UnknownGroup { group: String },
    #[error("user spec {spec:?} is malformed")]
    BadUserSpec { spec: String },
    #[error("reading {path} in the rootfs {rootfs}: {source}")]
    ReadRootfsFile {
        rootfs: PathBuf,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown capability {name:?}")]
    UnknownCapability { name: String },
    #[error("mount destination {destination:?} must be absolute and free of `..`")]
    BadMountDestination { destination: String },
    #[error("mount source {source_path} for {destination:?} must be absolute")]
    BadMountSource {
        source_path: PathBuf,
        destination: String,
    },
    #[error("device {path}: {source}")]
    DeviceStat {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("device {path} is neither a character nor a block device")]
    NotADevice { path: String },
    #[error("device {path}: permissions {permissions:?} are not a subset of \"rwm\"")]
    BadDevicePermissions { path: String, permissions: String },
    #[error("device container path {path:?} must be absolute and free of `..`")]
    BadDevicePath { path: String },
    #[error("unknown rlimit {kind:?}")]
    UnknownRlimit { kind: String },
    #[error("rlimit {kind}: soft limit {soft} exceeds hard limit {hard}")]
    RlimitSoftAboveHard { kind: String, soft: u64, hard: u64 },
    #[error("sysctl {name:?} is not namespaced and cannot be set in a container")]
    SysctlNotNamespaced { name: String },
    #[error("sysctl {name:?} cannot be set: the pod's hostname sets it")]
    SysctlHostname { name: String },
    #[error("sysctl {name:?} cannot be set: the container shares the host's {namespace} namespace")]
    SysctlHostNamespace { name: String, namespace: &'static str },
    #[error("container {container}: the pod's {kind} namespace path is missing")]
    MissingNamespacePath { container: String, kind: &'static str },
    #[error("container {container}: pid namespace mode Target without a target's path")]
    MissingTargetNamespace { container: String },
    #[error("seccomp profile {path}: {source}")]
    SeccompProfileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path} is malformed: {source}")]
    SeccompProfileParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "container {container}: {what} needs the cgroup {controller} controller, which this host does not offer to containers"
    )]
    MissingController {
        container: String,
        controller: String,
        what: String,
    },
    #[error("building the OCI spec for container {container}: {source}")]
    Build {
        container: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
}

/// Generates the OCI spec of a container, with the host facts detected
/// once per process.
pub fn generate(input: &SpecInput) -> Result<Generated, SpecError> {
    generate_with(input, HostInfo::detected())
}

/// As [`generate`], with the host facts given (tests inject them).
pub fn generate_with(input: &SpecInput, host: &HostInfo) -> Result<Generated, SpecError> {
    let mut warnings = Vec::new();
    let pod = input.pod;
    let ctr = input.container;
    let sec = &ctr.security;
    let privileged = sec.privileged;
    if privileged && !pod.privileged {
        return Err(SpecError::PrivilegedNotAllowed {
            container: ctr.name.clone(),
        });
    }
    let build_err = |source| SpecError::Build {
        container: ctr.name.clone(),
        source,
    };

    let ns = namespaces::plan(input, host)?;
    let user = user::resolve(input)?;
    let caps = capabilities::resolve(sec, host.cap_last_cap, host.cap_bounding)?;
    let rlimits = resources::rlimits(&ctr.rlimits, host, &mut warnings)?;
    let oom = resources::oom_score_adj(ctr.resources.oom_score_adj, host, &mut warnings);
    let hostname = ns.hostname.clone();

    let mut process = ProcessBuilder::default()
        .terminal(ctr.tty)
        .args(process::args(ctr, input.image)?)
        .env(process::env(input.image, ctr, &hostname_for_env(&hostname)))
        .cwd(process::cwd(ctr, input.image)?)
        .user(user)
        .capabilities(capabilities::to_oci(&caps))
        .rlimits(rlimits)
        .build()
        .map_err(build_err)?;
    // Absent rather than `false`: youki's libcontainer loads the seccomp
    // filter after dropping capabilities when the field is present, which
    // fails (EACCES) without no_new_privs. runc reads both the same way.
    process.set_no_new_privileges(sec.no_new_privs.then_some(true));
    process.set_oom_score_adj(oom);
    process.set_apparmor_profile(apparmor_profile(
        sec.apparmor.as_deref(),
        privileged,
        host,
        &mut warnings,
    ));

    let seccomp = if privileged {
        None
    } else {
        seccomp::for_request(sec.seccomp.as_ref().or(pod.seccomp.as_ref()), &caps)?
    };
    let (masked, mut readonly) = defaults::protected_paths(sec, privileged);
    readonly.extend(defaults::cgroup_v1_readonly_paths(host, privileged, &ctr.mounts));
    let devs = devices::plan(&ctr.devices, privileged)?;
    let sysctls = resources::sysctls(pod, ctr, &ns.modes)?;
    let readonly_rootfs = sec.readonly_rootfs || pod.readonly_rootfs;
    let mounts = mounts::plan(input, privileged, readonly_rootfs, &ns.modes)?;

    let enforceable = controllers::fit(&ctr.resources, host, input.id, &ctr.name)?;
    let mut res = resources::linux_resources(&enforceable).map_err(build_err)?;
    res.set_devices(Some(devs.cgroup_rules));

    let mut linux = LinuxBuilder::default()
        .namespaces(ns.namespaces)
        .resources(res)
        .cgroups_path(PathBuf::from(input.cgroups_path))
        .masked_paths(masked)
        .readonly_paths(readonly)
        .devices(devs.nodes)
        .build()
        .map_err(build_err)?;
    linux.set_seccomp(seccomp);
    if let Some((uids, gids)) = ns.id_mappings {
        linux.set_uid_mappings(Some(uids));
        linux.set_gid_mappings(Some(gids));
    }
    linux.set_rootfs_propagation(mounts.rootfs_propagation);
    if !sysctls.is_empty() {
        linux.set_sysctl(Some(sysctls));
    }

    let root = RootBuilder::default()
        .path(input.rootfs)
        .readonly(readonly_rootfs)
        .build()
        .map_err(build_err)?;

    let mut spec = SpecBuilder::default()
        .version("1.0.2-dev")
        .root(root)
        .process(process)
        .mounts(mounts.mounts)
        .linux(linux)
        .build()
        .map_err(build_err)?;
    spec.set_hostname(hostname);
    spec.set_annotations(Some(annotations(input)));
    Ok(Generated { spec, warnings })
}

/// AppArmor as the CRI names it: `localhost/<profile>` loads that profile;
/// `runtime/default` and `unconfined` mean none, as berth ships no profile
/// of its own. Where the host has no AppArmor a named profile is dropped
/// with a warning rather than failing every start.
fn apparmor_profile(
    requested: Option<&str>,
    privileged: bool,
    host: &HostInfo,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let name = requested?.trim();
    let profile = name.strip_prefix("localhost/")?;
    if privileged || profile.is_empty() {
        return None;
    }
    if !host.apparmor {
        warnings.push(format!(
            "apparmor profile {profile:?} ignored: AppArmor is not enabled on this host"
        ));
        return None;
    }
    Some(profile.to_string())
}

/// The container's own annotations plus the CRI ones containerd sets, so
/// OCI hooks and runtimes can tell which pod a container belongs to.
fn annotations(input: &SpecInput) -> std::collections::HashMap<String, String> {
    let mut out: std::collections::HashMap<String, String> = input
        .container
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let pod = input.pod;
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.container-name", &input.container.name),
        ("io.kubernetes.cri.image-name", &input.container.image),
        ("io.kubernetes.cri.sandbox-name", &pod.name),
        ("io.kubernetes.cri.sandbox-namespace", &pod.k8s_namespace),
        ("io.kubernetes.cri.sandbox-uid", &pod.uid),
        ("io.berth.container-id", input.id),
    ] {
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// The HOSTNAME variable: the pod's hostname, or the host's own when the
/// container shares the host's UTS namespace.
fn hostname_for_env(hostname: &Option<String>) -> String {
    match hostname {
        Some(h) => h.clone(),
        None => rustix::system::uname().nodename().to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
mod runc_test;
#[cfg(test)]
mod tests;
