//! Capability sets: containerd's default set, the request's add/drop
//! (names with or without `CAP_`, any case, `ALL`), and everything the kernel
//! knows for privileged containers.

use std::collections::{BTreeSet, HashSet};

use oci_spec::runtime::{Capability, LinuxCapabilities};

use super::SpecError;
use crate::model::SecurityContext;

/// Every capability berth knows, by number (capability.h) and OCI name.
pub const ALL_CAPABILITIES: [(u32, &str, Capability); 41] = [
    (0, "CHOWN", Capability::Chown),
    (1, "DAC_OVERRIDE", Capability::DacOverride),
    (2, "DAC_READ_SEARCH", Capability::DacReadSearch),
    (3, "FOWNER", Capability::Fowner),
    (4, "FSETID", Capability::Fsetid),
    (5, "KILL", Capability::Kill),
    (6, "SETGID", Capability::Setgid),
    (7, "SETUID", Capability::Setuid),
    (8, "SETPCAP", Capability::Setpcap),
    (9, "LINUX_IMMUTABLE", Capability::LinuxImmutable),
    (10, "NET_BIND_SERVICE", Capability::NetBindService),
    (11, "NET_BROADCAST", Capability::NetBroadcast),
    (12, "NET_ADMIN", Capability::NetAdmin),
    (13, "NET_RAW", Capability::NetRaw),
    (14, "IPC_LOCK", Capability::IpcLock),
    (15, "IPC_OWNER", Capability::IpcOwner),
    (16, "SYS_MODULE", Capability::SysModule),
    (17, "SYS_RAWIO", Capability::SysRawio),
    (18, "SYS_CHROOT", Capability::SysChroot),
    (19, "SYS_PTRACE", Capability::SysPtrace),
    (20, "SYS_PACCT", Capability::SysPacct),
    (21, "SYS_ADMIN", Capability::SysAdmin),
    (22, "SYS_BOOT", Capability::SysBoot),
    (23, "SYS_NICE", Capability::SysNice),
    (24, "SYS_RESOURCE", Capability::SysResource),
    (25, "SYS_TIME", Capability::SysTime),
    (26, "SYS_TTY_CONFIG", Capability::SysTtyConfig),
    (27, "MKNOD", Capability::Mknod),
    (28, "LEASE", Capability::Lease),
    (29, "AUDIT_WRITE", Capability::AuditWrite),
    (30, "AUDIT_CONTROL", Capability::AuditControl),
    (31, "SETFCAP", Capability::Setfcap),
    (32, "MAC_OVERRIDE", Capability::MacOverride),
    (33, "MAC_ADMIN", Capability::MacAdmin),
    (34, "SYSLOG", Capability::Syslog),
    (35, "WAKE_ALARM", Capability::WakeAlarm),
    (36, "BLOCK_SUSPEND", Capability::BlockSuspend),
    (37, "AUDIT_READ", Capability::AuditRead),
    (38, "PERFMON", Capability::Perfmon),
    (39, "BPF", Capability::Bpf),
    (40, "CHECKPOINT_RESTORE", Capability::CheckpointRestore),
];

/// containerd's default capability set, by name.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The number of a capability name (`CAP_` optional, any case).
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES
        .iter()
        .find(|(_, n, _)| *n == bare)
        .map(|(num, _, _)| *num)
}

/// The set of capabilities (numbers) the container's process gets.
pub fn resolve(sec: &SecurityContext, cap_last_cap: u32) -> Result<BTreeSet<u32>, SpecError> {
    let known = |n: &u32| *n <= cap_last_cap;
    let all = || {
        ALL_CAPABILITIES
            .iter()
            .map(|c| c.0)
            .filter(known)
            .collect::<BTreeSet<u32>>()
    };
    if sec.privileged {
        return Ok(all());
    }
    let is_all = |s: &String| s.trim().eq_ignore_ascii_case("ALL");
    let mut caps: BTreeSet<u32> = DEFAULT_CAPABILITIES
        .iter()
        .filter_map(|n| capability_number(n))
        .collect();
    if sec.add_capabilities.iter().any(is_all) {
        caps = all();
    }
    if sec.drop_capabilities.iter().any(is_all) {
        caps.clear();
    }
    for name in sec.add_capabilities.iter().filter(|n| !is_all(n)) {
        caps.insert(parse(name)?);
    }
    for name in sec.drop_capabilities.iter().filter(|n| !is_all(n)) {
        caps.remove(&parse(name)?);
    }
    Ok(caps)
}

fn parse(name: &str) -> Result<u32, SpecError> {
    capability_number(name).ok_or_else(|| SpecError::UnknownCapability {
        name: name.to_string(),
    })
}

/// bounding = effective = permitted; inheritable and ambient stay empty so
/// that nothing survives an exec of a non-root program unasked.
pub fn to_oci(caps: &BTreeSet<u32>) -> LinuxCapabilities {
    let set: HashSet<Capability> = ALL_CAPABILITIES
        .iter()
        .filter(|(n, _, _)| caps.contains(n))
        .map(|(_, _, c)| *c)
        .collect();
    let mut oci = LinuxCapabilities::default();
    oci.set_bounding(Some(set.clone()));
    oci.set_effective(Some(set.clone()));
    oci.set_permitted(Some(set));
    oci.set_inheritable(Some(HashSet::new()));
    oci.set_ambient(Some(HashSet::new()));
    oci
}

/// The bit mask of a set, as /proc/<pid>/status prints CapEff.
pub fn mask(caps: &BTreeSet<u32>) -> u64 {
    caps.iter().fold(0, |m, n| m | (1u64 << n))
}
