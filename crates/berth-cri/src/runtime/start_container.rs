//! StartContainer.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn start_container(
        &self,
        req: v1::StartContainerRequest,
    ) -> Result<v1::StartContainerResponse, CriError> {
        let c = self.container(&req.container_id)?;
        self.runtime.start_container(&c.id)?;
        self.publish(&c.id, v1::ContainerEventType::ContainerStartedEvent);
        Ok(v1::StartContainerResponse {})
    }
}
