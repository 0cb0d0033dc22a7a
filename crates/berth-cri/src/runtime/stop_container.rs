//! StopContainer: the stop signal, SIGKILL after `timeout` seconds;
//! stopping a stopped or missing container is success.

use std::time::Duration;

use super::gone_is_ok;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn stop_container(
        &self,
        req: v1::StopContainerRequest,
    ) -> Result<v1::StopContainerResponse, CriError> {
        let timeout = Duration::from_secs(req.timeout.max(0) as u64);
        gone_is_ok(self.container(&req.container_id).and_then(|c| {
            self.runtime.stop_container(&c.id, timeout)?;
            self.publish(&c.id, v1::ContainerEventType::ContainerStoppedEvent);
            Ok(())
        }))?;
        Ok(v1::StopContainerResponse {})
    }
}
