//! Container start: the handler releases the process the monitor created.

use super::{ContainerState, Runtime, RuntimeError, now_nanos};

impl Runtime {
    /// Starts a created container. Holds the container's lock, so a stop
    /// that arrives meanwhile waits and then stops what was started.
    pub fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let _lock = self.lock_container(id)?;
        let mut rec = self.get_container(id)?;
        let status = self.container_status(&rec)?;
        if status.state != ContainerState::Created {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {} ({}) is {:?}, not created: it can only be started once",
                rec.config.name, rec.id, status.state
            )));
        }
        if rec.restore_images.is_some() {
            return self.start_restoring(rec);
        }
        let handler = self.handler(&rec.handler)?;
        if let Err(e) = handler.start(&rec.id) {
            rec.error = Some(e.to_string());
            self.save_container(&rec)?;
            return Err(e.into());
        }
        rec.started_at = Some(now_nanos());
        self.save_container(&rec)?;
        tracing::info!(container = %rec.id, "container started");
        Ok(())
    }
}
