//! ReopenContainerLog: asks the container's monitor, after kubelet rotated
//! the log, to write to a new file at the same path.

use berth_runtime::monitor::AttachClient;
use berth_runtime::runtime::ContainerState;

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn reopen_container_log(
        &self,
        req: v1::ReopenContainerLogRequest,
    ) -> Result<v1::ReopenContainerLogResponse, CriError> {
        let c = self.container(&req.container_id)?;
        if self.runtime.container_status(&c)?.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is not running: its log cannot be reopened",
                c.id
            )));
        }
        let mut client = AttachClient::connect(&self.runtime.attach_socket(&c.id))
            .map_err(|e| CriError::Runtime(e.into()))?;
        client.reopen_log().map_err(|e| CriError::Runtime(e.into()))?;
        Ok(v1::ReopenContainerLogResponse {})
    }
}
