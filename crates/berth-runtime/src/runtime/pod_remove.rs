//! Pod remove: stopped, its containers removed, its cgroup and files
//! deleted (side by side), then its record.

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
        // The cgroup and the pod's directories are independent: removed at
        // once, and the record only when both are gone, so a failure
        // leaves it for a retry.
        let ours = pod.config.cgroup_parent.as_deref().is_none_or(str::is_empty);
        let (cgroup, files) = std::thread::scope(|s| {
            // A cgroup parent given by the caller (kubelet's) is not ours to remove.
            let cgroup = ours.then(|| s.spawn(|| self.cgroups.remove(&pod.cgroup)));
            let files = self.remove_pod_files(&pod.id);
            (
                cgroup.map(|h| h.join().expect("pod cgroup removal thread")),
                files,
            )
        });
        cgroup.transpose()?;
        files?;
        self.store.delete_object(ObjectKind::Pod, &pod.id)?;
        tracing::info!(pod = %pod.id, "pod removed");
        Ok(())
    }

    /// Unmounts the pod's /dev/shm and state directory, removes its state
    /// and root directories.
    fn remove_pod_files(&self, id: &str) -> Result<(), RuntimeError> {
        let state_dir = self.pod_state_dir(id);
        rootfs::unmount(&state_dir.join("shm"))?;
        rootfs::unmount(&state_dir)?;
        remove_dir(&state_dir)?;
        remove_dir(&self.pod_root_dir(id))
    }
}
