//! StopPodSandbox: idempotent; a pod that is gone is stopped.

use std::time::Duration;

use berth_runtime::runtime::ContainerState;

use super::gone_is_ok;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn stop_pod_sandbox(
        &self,
        req: v1::StopPodSandboxRequest,
    ) -> Result<v1::StopPodSandboxResponse, CriError> {
        gone_is_ok(self.pod(&req.pod_sandbox_id).and_then(|pod| {
            let running: Vec<String> = self
                .runtime
                .list_containers(None, Some(&pod.id))?
                .into_iter()
                .filter(|c| {
                    self.runtime
                        .container_status(c)
                        .is_ok_and(|s| matches!(s.state, ContainerState::Running | ContainerState::Created))
                })
                .map(|c| c.id)
                .collect();
            // kubelet stops containers itself first, with their grace
            // periods; what is left gets none.
            self.runtime.stop_pod(&pod.id, Duration::ZERO)?;
            for id in running {
                self.publish(&id, v1::ContainerEventType::ContainerStoppedEvent);
            }
            Ok(())
        }))?;
        Ok(v1::StopPodSandboxResponse {})
    }
}
