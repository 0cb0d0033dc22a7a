//! containerd's defaults for what a container sees of /proc and /sys.

use crate::model::SecurityContext;

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
