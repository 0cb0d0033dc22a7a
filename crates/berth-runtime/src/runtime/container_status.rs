//! A container's state, from its record, its monitor and its exit record.

use super::{ContainerRecord, ContainerState, ContainerStatus, Runtime, RuntimeError};
use crate::monitor::read_exit;

impl Runtime {
    pub fn container_status(&self, rec: &ContainerRecord) -> Result<ContainerStatus, RuntimeError> {
        if let Some(exit) = read_exit(&self.exit_file(&rec.id))? {
            let reason = if exit.oom_killed {
                "OOMKilled"
            } else if exit.code == 0 {
                "Completed"
            } else {
                "Error"
            };
            return Ok(ContainerStatus {
                state: ContainerState::Exited,
                exit: Some(exit),
                reason: Some(reason.into()),
            });
        }
        // No exit record and no monitor: the container's end went unrecorded
        // (its monitor was killed, or the host rebooted).
        let monitor_alive = rec.monitor_pid.is_some_and(process_alive);
        let state = match (monitor_alive, rec.started_at) {
            // Created from a checkpoint: the monitor comes with start.
            (false, None) if rec.restore_images.is_some() && rec.monitor_pid.is_none() => {
                ContainerState::Created
            }
            (false, _) => ContainerState::Unknown,
            (true, None) => ContainerState::Created,
            (true, Some(_)) => ContainerState::Running,
        };
        Ok(ContainerStatus {
            state,
            exit: None,
            reason: rec.error.as_ref().map(|_| "StartError".to_string()),
        })
    }
}

impl Runtime {
    /// The OCI spec the container was created from, as its bundle holds
    /// it (None once the bundle is gone). Kept as JSON: it is shown, not
    /// interpreted, and a field this oci-spec version does not know stays.
    pub fn container_runtime_spec(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        let path = self.ctr_state_dir(id).join("config.json");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::io("read", &path)(e)),
        };
        serde_json::from_slice(&data).map(Some).map_err(|e| {
            RuntimeError::io("parse", &path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
    }
}

/// True while `pid` exists and is not a zombie.
pub(crate) fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X'),
        Err(_) => false,
    }
}
