//! berth's one model of a pod and its containers. The CLI (and its Pod
//! manifests) and the CRI server both map their requests onto these types;
//! the OCI spec is generated from them and nothing else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How a namespace kind is shared, as the CRI's `NamespaceMode` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsMode {
    /// One namespace for the whole pod (pinned, or held by the pod's init).
    #[default]
    Pod,
    /// The container gets a namespace of its own.
    Container,
    /// The host's namespace.
    Node,
    /// Another container's namespace (CRI `TARGET`, pid only).
    Target,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOptions {
    pub network: NsMode,
    /// `Pod` means one PID namespace for the pod, held by berth's pod init.
    /// Kubernetes' default is `Container`.
    pub pid: NsMode,
    pub ipc: NsMode,
    /// Container id whose PID namespace to join when `pid` is `Target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
}

impl NamespaceOptions {
    /// Kubernetes' defaults: pod network and IPC, a PID namespace per container.
    pub fn kubernetes() -> Self {
        NamespaceOptions {
            network: NsMode::Pod,
            pid: NsMode::Container,
            ipc: NsMode::Pod,
            target_id: None,
        }
    }
}

/// A pod as asked for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PodConfig {
    /// berth's name of the pod, unique in its berth namespace.
    pub name: String,
    /// The name Kubernetes knows the pod by, when it differs from `name`
    /// (CRI pod names are unique only with their namespace, uid and
    /// attempt): CNI plugins see this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_name: Option<String>,
    /// Kubernetes namespace of the pod (CRI metadata), not berth's tenant.
    #[serde(default)]
    pub k8s_namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub attempt: u32,
    /// Defaults to the pod name.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub namespaces: NamespaceOptions,
    /// CRI `cgroup_parent`; berth's own pod cgroup when empty.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Directory of the pod's container logs (CRI `log_directory`).
    #[serde(default)]
    pub log_directory: Option<PathBuf>,
    /// Runtime handler name from config; empty means the default.
    #[serde(default)]
    pub runtime_handler: String,
    #[serde(default)]
    pub dns: Option<DnsConfig>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The pod network by name (`None`: the default network). `"none"`
    /// gives the pod's own network namespace with loopback only.
    #[serde(default)]
    pub network: Option<String>,
    /// Security options that apply to the pod as a whole.
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub run_as_user: Option<u32>,
    #[serde(default)]
    pub run_as_group: Option<u32>,
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub seccomp: Option<Seccomp>,
    /// Pod-level resource limits, applied to the pod cgroup.
    #[serde(default)]
    pub resources: Resources,
    /// A user namespace of the pod's own with these mappings (CRI userns
    /// mode POD); `None` is the host's (NODE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<UserNamespace>,
}

/// The id mappings of a pod's user namespace, as kubelet chose them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

/// `length` ids from `container_id` inside map to `host_id` outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: String,
    pub container_port: u16,
    pub host_port: u16,
    #[serde(default)]
    pub host_ip: String,
}

/// A container as asked for, before image defaults are applied.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub name: String,
    #[serde(default)]
    pub attempt: u32,
    /// Image reference as given; resolved to `image_id` at create.
    pub image: String,
    /// Replaces the image's ENTRYPOINT when set.
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's CMD when set.
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=VALUE`, appended to (and overriding) the image's.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    /// Log file, absolute or relative to the pod's log directory.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub security: SecurityContext,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Signal that stops the container; the image's STOPSIGNAL, then SIGTERM.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Bind mounts (by destination) to idmap with these mappings, as CRI
    /// mounts' uid/gid mappings ask (kubelet sets them on a pod's volumes
    /// when it has a user namespace): they must be the pod's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub idmapped_mounts: BTreeMap<String, UserNamespace>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path in the container.
    pub destination: String,
    pub kind: MountKind,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub propagation: Propagation,
    /// tmpfs size in bytes (0 = kernel default).
    #[serde(default)]
    pub size: u64,
    /// Read-only submounts too (OCI `rro`, KEP-3857): a plain `ro` bind
    /// leaves mounts beneath the source writable. Only with `readonly`
    /// and private propagation.
    #[serde(default)]
    pub recursive_readonly: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "source")]
pub enum MountKind {
    /// A host path bound in (hostPath, emptyDir directories, CRI mounts).
    Bind(PathBuf),
    Tmpfs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    #[default]
    Private,
    /// rslave: host mounts propagate into the container.
    HostToContainer,
    /// rshared, both ways.
    Bidirectional,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub container_path: String,
    pub host_path: String,
    /// Any of r, w, m.
    #[serde(default = "default_device_perms")]
    pub permissions: String,
}

fn default_device_perms() -> String {
    "rwm".into()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Bytes; 0 = unlimited.
    #[serde(default)]
    pub memory_limit: i64,
    /// Memory plus swap in bytes, as OCI's `linux.resources.memory.swap`,
    /// meaningful with a memory limit only: 0 = no swap (memory+swap equal
    /// to the memory limit, the CRI's default), -1 = unlimited swap, else
    /// the total, at least the memory limit.
    #[serde(default)]
    pub memory_swap: i64,
    /// cgroup v1 cpu.shares (v2 weight is derived from it).
    #[serde(default)]
    pub cpu_shares: u64,
    /// Microseconds per period; 0 = unlimited.
    #[serde(default)]
    pub cpu_quota: i64,
    #[serde(default)]
    pub cpu_period: u64,
    #[serde(default)]
    pub cpuset_cpus: String,
    #[serde(default)]
    pub cpuset_mems: String,
    /// 0 = unlimited.
    #[serde(default)]
    pub pids_limit: i64,
    /// Requested score; clamped to what berth may set.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    #[serde(default)]
    pub hugepage_limits: BTreeMap<String, u64>,
    /// Extra cgroup files (CRI `unified`), written as given.
    #[serde(default)]
    pub unified: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityContext {
    #[serde(default)]
    pub privileged: bool,
    /// Capability names with or without `CAP_`, any case; `ALL` allowed.
    #[serde(default)]
    pub add_capabilities: Vec<String>,
    #[serde(default)]
    pub drop_capabilities: Vec<String>,
    #[serde(default)]
    pub run_as_user: Option<u32>,
    /// A user name resolved in the image's /etc/passwd.
    #[serde(default)]
    pub run_as_username: Option<String>,
    #[serde(default)]
    pub run_as_group: Option<u32>,
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// Whether the groups the image's /etc/group gives the user are added
    /// to `supplemental_groups` (KEP-3619).
    #[serde(default)]
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub no_new_privs: bool,
    #[serde(default)]
    pub seccomp: Option<Seccomp>,
    /// Replaces the default masked paths when set (CRI `masked_paths`).
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(default)]
    pub namespaces: Option<NamespaceOptions>,
    /// AppArmor profile; reported as unsupported where the host has none.
    #[serde(default)]
    pub apparmor: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupplementalGroupsPolicy {
    /// The primary gid, the groups /etc/group in the image gives the user,
    /// and the requested ones: what Kubernetes always did.
    #[default]
    Merge,
    /// The primary gid and the requested groups only: an image cannot add
    /// a group the pod's author did not ask for.
    Strict,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "profile")]
pub enum Seccomp {
    RuntimeDefault,
    Unconfined,
    /// An OCI seccomp profile (JSON, the `linux.seccomp` shape) on the host.
    Localhost(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE` or `nofile`.
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// What the image contributes to a container's process, from its config.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageRun {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}
