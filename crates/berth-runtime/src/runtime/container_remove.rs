//! Container remove: kill, forget in the handler, unmount, delete.

use std::time::Duration;

use berth_store::ObjectKind;

use super::container_status::process_alive;
use super::{Runtime, RuntimeError, remove_dir, wait_for};
use crate::rootfs;

impl Runtime {
    /// Removes a container, stopping it first if needed. Removing one that
    /// is gone is success.
    pub fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let rec = match self.get_container(id) {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let _lock = self.lock_container(&rec.id)?;
        // Read again under the lock: a start (or restore) that held it may
        // have changed the record (its monitor pid, above all).
        let rec = match self.get_container(&rec.id) {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_locked(&rec.id, Duration::ZERO)?;
        self.handler(&rec.handler)?.delete(&rec.id, true)?;
        if let Some(pid) = rec.monitor_pid {
            // The monitor leaves once it has recorded the exit; its files
            // go with the directory below.
            wait_for(Duration::from_secs(5), || (!process_alive(pid)).then_some(()));
        }
        let state_dir = self.ctr_state_dir(&rec.id);
        rootfs::unmount(&state_dir.join("rootfs"))?;
        unmount_idmapped_volumes(&state_dir.join("idmap"))?;
        self.cgroups.remove(&rec.cgroup)?;
        remove_dir(&state_dir)?;
        remove_dir(&self.ctr_root_dir(&rec.id))?;
        self.store.delete_object(ObjectKind::Container, &rec.id)?;
        tracing::info!(container = %rec.id, "container removed");
        Ok(())
    }
}

/// The idmapped mounts of a container's volumes in a pod with a user
/// namespace (see `Runtime::idmap_volumes`); none is fine.
fn unmount_idmapped_volumes(dir: &std::path::Path) -> Result<(), RuntimeError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        rootfs::unmount(&e.path())?;
    }
    Ok(())
}
