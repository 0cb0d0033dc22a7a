//! CheckpointContainer (KEP-2008, forensic checkpointing): the runtime
//! checkpoints the running container with CRIU, leaves it running and
//! writes the archive kubelet asked for at `location`.

use std::path::Path;

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn checkpoint_container(
        &self,
        req: v1::CheckpointContainerRequest,
    ) -> Result<v1::CheckpointContainerResponse, CriError> {
        if req.location.is_empty() {
            return Err(CriError::InvalidArgument(format!(
                "CheckpointContainer of {}: location is empty",
                req.container_id
            )));
        }
        let c = self.container(&req.container_id)?;
        self.runtime
            .checkpoint_container(&c.id, Path::new(&req.location))?;
        Ok(v1::CheckpointContainerResponse {})
    }
}
