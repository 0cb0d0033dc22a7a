//! What the store keeps about pods and containers (as JSON documents), and
//! the states derived from them and from the monitors' exit records.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{ContainerConfig, ImageRun, PodConfig};
use crate::monitor::ExitRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    /// Namespaces pinned, cgroup made: containers can be created in it.
    Ready,
    /// Stopped: namespaces released, no container runs.
    NotReady,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub namespace: String,
    pub config: PodConfig,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub state: PodState,
    pub hostname: String,
    /// The pod's cgroup (absolute cgroup path).
    pub cgroup: String,
    /// Directory of pinned namespaces; `None` when the pod uses none.
    #[serde(default)]
    pub ns_dir: Option<PathBuf>,
    /// Host PID of the init holding the pod's PID namespace.
    #[serde(default)]
    pub init_pid: Option<u32>,
    /// Pod IPs, set by networking, IPv4 first.
    #[serde(default)]
    pub ips: Vec<String>,
    /// The network the pod is attached to, until it is detached.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub stopped_at: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub namespace: String,
    pub config: ContainerConfig,
    /// Image reference as resolved at create (name in the store).
    pub image_name: String,
    /// Manifest digest of the image.
    pub image_id: String,
    /// Config digest of the image, its id in the CRI; empty in records
    /// from before berth kept it.
    #[serde(default)]
    pub image_config: String,
    pub image_run: ImageRun,
    pub handler: String,
    pub cgroup: String,
    pub log_path: PathBuf,
    pub created_at: i64,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub monitor_pid: Option<u32>,
    /// Set when berth itself saw the start fail or the monitor vanish.
    #[serde(default)]
    pub error: Option<String>,
    /// The identity the container's process runs as, resolved into its
    /// spec at creation (from the image's passwd/group files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ProcessUser>,
    /// Created from a checkpoint archive: the CRIU images (unpacked in the
    /// state directory) that start restores the container from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_images: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// A container's state as it is now.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerStatus {
    pub state: ContainerState,
    pub exit: Option<ExitRecord>,
    /// CRI reason: OOMKilled, Error, Completed.
    pub reason: Option<String>,
}
