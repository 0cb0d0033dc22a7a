//! RuntimeService calls, one module each.

pub(crate) mod attach;
mod checkpoint_container;
mod container_stats;
mod container_status;
mod create_container;
pub(crate) mod exec;
mod exec_sync;
mod list_container_stats;
mod list_containers;
mod list_pod_sandbox;
mod list_pod_sandbox_stats;
mod metrics;
mod pod_sandbox_stats;
mod pod_sandbox_status;
pub(crate) mod port_forward;
mod remove_container;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod update_container_resources;
mod version;

use berth_runtime::runtime::{ContainerRecord, PodRecord};

use crate::error::CriError;
use crate::service::CriService;

impl CriService {
    /// A pod of the CRI namespace by id or unique id prefix.
    pub(crate) fn pod(&self, id: &str) -> Result<PodRecord, CriError> {
        if id.is_empty() {
            return Err(CriError::InvalidArgument("pod sandbox id is empty".into()));
        }
        let pods = self.runtime.list_pods(Some(&self.ns))?;
        unique("pod sandbox", id, pods, |p| &p.id)
    }

    /// A container of the CRI namespace by id or unique id prefix.
    pub(crate) fn container(&self, id: &str) -> Result<ContainerRecord, CriError> {
        if id.is_empty() {
            return Err(CriError::InvalidArgument("container id is empty".into()));
        }
        let ctrs = self.runtime.list_containers(Some(&self.ns), None)?;
        unique("container", id, ctrs, |c| &c.id)
    }
}

fn unique<T>(kind: &str, key: &str, items: Vec<T>, id: impl Fn(&T) -> &String) -> Result<T, CriError> {
    let mut hits: Vec<T> = items.into_iter().filter(|i| id(i).starts_with(key)).collect();
    match hits.len() {
        1 => Ok(hits.pop().expect("one")),
        0 => Err(CriError::NotFound(format!("{kind} {key:?} not found"))),
        n => Err(CriError::InvalidArgument(format!(
            "{kind} id prefix {key:?} matches {n} {kind}s"
        ))),
    }
}

/// Success when `r` failed only because the object is gone (CRI's idempotent
/// stop and remove).
pub(crate) fn gone_is_ok(r: Result<(), CriError>) -> Result<(), CriError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}
