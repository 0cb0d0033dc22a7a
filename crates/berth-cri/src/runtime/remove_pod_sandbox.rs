//! RemovePodSandbox: idempotent; removes the pod's containers too.

use super::gone_is_ok;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn remove_pod_sandbox(
        &self,
        req: v1::RemovePodSandboxRequest,
    ) -> Result<v1::RemovePodSandboxResponse, CriError> {
        gone_is_ok(self.pod(&req.pod_sandbox_id).and_then(|pod| {
            let ctrs = self.runtime.list_containers(None, Some(&pod.id))?;
            self.runtime.remove_pod(&pod.id)?;
            self.forget_samples(&pod.id);
            for c in ctrs {
                self.forget_samples(&c.id);
                self.publish(&c.id, v1::ContainerEventType::ContainerDeletedEvent);
            }
            Ok(())
        }))?;
        Ok(v1::RemovePodSandboxResponse {})
    }
}
