//! Pod stop: every container stopped (in parallel), the PID-namespace init
//! ended, the pinned namespaces released.

use std::time::Duration;

use super::{PodState, Runtime, RuntimeError, now_nanos};
use crate::{namespaces, pod_init};

impl Runtime {
    /// Stops a pod; stopping a stopped pod is success.
    pub fn stop_pod(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let mut pod = self.get_pod(id)?;
        let ctrs = self.list_containers(None, Some(&pod.id))?;
        let errors: Vec<RuntimeError> = std::thread::scope(|s| {
            let handles: Vec<_> = ctrs
                .iter()
                .map(|c| s.spawn(move || self.stop_container(&c.id, timeout)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("stop thread").err())
                .collect()
        });
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        if let Some(pid) = pod.init_pid.take() {
            pod_init::stop_pid_init(pid)?;
        }
        if let Some(dir) = &pod.ns_dir {
            namespaces::unpin(dir)?;
        }
        if pod.state != PodState::NotReady {
            pod.state = PodState::NotReady;
            pod.stopped_at = Some(now_nanos());
        }
        self.save_pod(&pod)?;
        tracing::info!(pod = %pod.id, "pod stopped");
        Ok(())
    }
}
