//! Container stop: the stop signal, then SIGKILL once the grace period is over.

use std::time::Duration;

use super::{ContainerState, Runtime, RuntimeError, wait_for};

/// How long a SIGKILLed container may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Runtime {
    /// Stops a container; stopping one that is not running is success.
    pub fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let rec = self.get_container(id)?;
        let status = self.container_status(&rec)?;
        if !matches!(status.state, ContainerState::Running | ContainerState::Created) {
            return Ok(());
        }
        let handler = self.handler(&rec.handler)?;
        let exit_file = self.exit_file(&rec.id);
        let exited = || exit_file.exists().then_some(());
        // In a pod-wide PID namespace the container's init is not the
        // namespace's init: its children survive it unless killed too.
        let all = self.get_pod(&rec.pod_id).is_ok_and(|p| p.init_pid.is_some());
        if !timeout.is_zero() && status.state == ContainerState::Running {
            let signal = rec
                .config
                .stop_signal
                .clone()
                .or_else(|| rec.image_run.stop_signal.clone())
                .unwrap_or_else(|| "TERM".into());
            if let Err(e) = handler.kill(&rec.id, &signal, false) {
                tracing::debug!(container = %rec.id, "stop signal: {e}");
            }
            if wait_for(timeout, exited).is_some() {
                return Ok(());
            }
        }
        if let Err(e) = handler.kill(&rec.id, "KILL", all) {
            tracing::debug!(container = %rec.id, "SIGKILL: {e}");
        }
        wait_for(KILL_WAIT, exited).ok_or(RuntimeError::StopTimeout {
            id: rec.id.clone(),
            timeout: KILL_WAIT,
        })?;
        tracing::info!(container = %rec.id, "container stopped");
        Ok(())
    }
}
