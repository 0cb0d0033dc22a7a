//! RemoveContainer: idempotent.

use super::gone_is_ok;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn remove_container(
        &self,
        req: v1::RemoveContainerRequest,
    ) -> Result<v1::RemoveContainerResponse, CriError> {
        gone_is_ok(self.container(&req.container_id).and_then(|c| {
            self.runtime.remove_container(&c.id)?;
            self.forget_samples(&c.id);
            self.publish(&c.id, v1::ContainerEventType::ContainerDeletedEvent);
            Ok(())
        }))?;
        Ok(v1::RemoveContainerResponse {})
    }
}
