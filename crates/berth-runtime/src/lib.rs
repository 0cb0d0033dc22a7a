//! Pods and containers on the host: berth's pod model, OCI runtime-spec
//! generation with secure defaults, runtime handlers, the per-container
//! monitor, cgroups and pinned namespaces.

pub mod cgroup;
pub mod device_filter;
pub mod features;
pub mod handler;
pub mod logs;
pub mod model;
pub mod monitor;
pub mod namespaces;
pub mod network;
pub mod pod_init;
pub mod rootfs;
pub mod runtime;
pub mod spec;
pub mod userns;

pub use runtime::{Runtime, RuntimeError, RuntimeOptions};
