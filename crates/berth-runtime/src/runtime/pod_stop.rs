//! Pod stop: every container stopped (in parallel), the PID-namespace init
//! ended while the network is detached, the pinned namespaces released.

use std::time::Duration;

use super::{PodState, Runtime, RuntimeError, now_nanos};
use crate::{namespaces, pod_init};

impl Runtime {
    /// Takes the pod off its network (before its namespace goes, so the
    /// plugins can still clean inside it); a detached pod is left as it is.
    /// The caller records the change: should it crash first, the next stop
    /// detaches again, which CNI DEL allows.
    pub(crate) fn detach_network(&self, pod: &mut super::PodRecord) -> Result<(), RuntimeError> {
        let Some(network) = pod.network.clone() else {
            return Ok(());
        };
        if let Some(net) = &self.network {
            net.teardown(&self.net_request(pod), &network)?;
        }
        pod.network = None;
        Ok(())
    }

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
        let changed = pod.init_pid.is_some() || pod.network.is_some() || pod.state != PodState::NotReady;
        // The init holds only the PID namespace: it can end while the
        // plugins detach the network.
        let init = pod.init_pid.take();
        let (init, net) = std::thread::scope(|s| {
            let init = init.map(|pid| s.spawn(move || pod_init::stop_pid_init(pid)));
            let net = self.detach_network(&mut pod);
            (init.map(|h| h.join().expect("pod init stop thread")), net)
        });
        init.transpose()?;
        net?;
        if let Some(dir) = &pod.ns_dir {
            namespaces::unpin(dir)?;
        }
        if pod.state != PodState::NotReady {
            pod.state = PodState::NotReady;
            pod.stopped_at = Some(now_nanos());
        }
        // A second stop (RemovePodSandbox stops first) changes nothing.
        if changed {
            self.save_pod(&pod)?;
        }
        tracing::info!(pod = %pod.id, "pod stopped");
        Ok(())
    }
}
