//! The seam between pods and their network: berth-runtime pins the network
//! namespace and calls a `PodNetwork` to give it interfaces (CNI, from the
//! `berth-net` crate, wired in by the binary), and again to take them away.

use std::path::PathBuf;

use crate::model::PortMapping;

/// What a network implementation needs to know about a pod.
#[derive(Clone, Debug)]
pub struct PodNetRequest {
    pub pod_id: String,
    pub pod_name: String,
    pub k8s_namespace: String,
    pub pod_uid: String,
    /// The pinned network namespace.
    pub netns: PathBuf,
    /// The network by name; `None` is the default one.
    pub network: Option<String>,
    pub port_mappings: Vec<PortMapping>,
}

/// Interfaces for pods. Both calls block (they run plugins); `teardown` must
/// be idempotent and work after a restart of berth and after the network's
/// configuration changed.
pub trait PodNetwork: Send + Sync {
    /// Attaches the pod; returns its IPs, IPv4 first, or `None` when no
    /// network is configured at all and none was asked for by name (the
    /// pod keeps loopback only). On error nothing of the attachment may be
    /// left.
    fn setup(&self, req: &PodNetRequest) -> Result<Option<NetSetup>, NetworkError>;
    /// Detaches the pod from `network` (the name `setup` reported).
    fn teardown(&self, req: &PodNetRequest, network: &str) -> Result<(), NetworkError>;
}

/// The outcome of `setup`.
#[derive(Clone, Debug, Default)]
pub struct NetSetup {
    /// The network the pod was attached to (its name in the config).
    pub network: String,
    pub ips: Vec<String>,
}

/// A network error, as the implementation words it (it names the plugin,
/// the network and what failed).
#[derive(Debug, thiserror::Error)]
#[error("pod {pod}: network: {message}")]
pub struct NetworkError {
    pub pod: String,
    pub message: String,
}
