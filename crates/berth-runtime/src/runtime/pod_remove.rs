//! Pod remove: stopped, its containers removed, its cgroup, files and record deleted.

use std::time::Duration;

use berth_store::ObjectKind;

use super::{Runtime, RuntimeError, remove_dir};
use crate::rootfs;

impl Runtime {
    /// Removes a pod and everything in it; a pod that is gone is success.
    pub fn remove_pod(&self, id: &str) -> Result<(), RuntimeError> {
        let pod = match self.get_pod(id) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod(&pod.id, Duration::ZERO)?;
        for c in self.list_containers(None, Some(&pod.id))? {
            self.remove_container(&c.id)?;
        }
        let state_dir = self.pod_state_dir(&pod.id);
        rootfs::unmount(&state_dir.join("shm"))?;
        rootfs::unmount(&state_dir)?;
        // A cgroup parent given by the caller (kubelet's) is not ours to remove.
        if pod.config.cgroup_parent.as_deref().is_none_or(str::is_empty) {
            self.cgroups.remove(&pod.cgroup)?;
        }
        remove_dir(&state_dir)?;
        remove_dir(&self.pod_root_dir(&pod.id))?;
        self.store.delete_object(ObjectKind::Pod, &pod.id)?;
        tracing::info!(pod = %pod.id, "pod removed");
        Ok(())
    }
}
