//! containerd's defaults for what a container sees of /proc and /sys.

use super::host::HostInfo;
use crate::model::{Mount, SecurityContext};

/// Hidden from the container (a /dev/null or empty tmpfs over each).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Visible but remounted read-only.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Masked and read-only paths: none for privileged containers, the
/// request's when it gives them (even empty: kubelet's Unmasked procMount),
/// else the defaults.
pub fn protected_paths(sec: &SecurityContext, privileged: bool) -> (Vec<String>, Vec<String>) {
    if privileged {
        return (Vec::new(), Vec::new());
    }
    let owned = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let masked = sec
        .masked_paths
        .clone()
        .unwrap_or_else(|| owned(&DEFAULT_MASKED_PATHS));
    let readonly = sec
        .readonly_paths
        .clone()
        .unwrap_or_else(|| owned(&DEFAULT_READONLY_PATHS));
    (masked, readonly)
}

/// The container's cgroup v1 hierarchies (/sys/fs/cgroup/NAME), remounted
/// read-only: the spec's /sys/fs/cgroup mount says `ro`, but libcontainer
/// bind-mounts each v1 hierarchy into it read-write (runc honours the `ro`),
/// so without this a default container could write its cgroup's limits and
/// cgroup.procs, and the name=systemd hierarchy, which berth's cgroup driver
/// does not join, from its root. Nothing for privileged containers, on
/// cgroup v2 hosts, or when a requested mount covers /sys/fs/cgroup.
pub fn cgroup_v1_readonly_paths(host: &HostInfo, privileged: bool, requested: &[Mount]) -> Vec<String> {
    let cgroup = std::path::Path::new("/sys/fs/cgroup");
    let covered = requested.iter().any(|m| {
        let dest = std::path::Path::new(&m.destination);
        dest.starts_with(cgroup) || cgroup.starts_with(dest)
    });
    if privileged || host.cgroup_v2 || covered {
        return Vec::new();
    }
    host.cgroup_v1_hierarchies
        .iter()
        .map(|name| format!("/sys/fs/cgroup/{name}"))
        .collect()
}
