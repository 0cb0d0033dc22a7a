//! Capability sets: containerd's default set, the request's add/drop
//! (names with or without `CAP_`, any case, `ALL`), and everything the kernel
//! knows and berth itself holds for privileged containers.

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

/// The set of capabilities (numbers) the container's process gets, for a
/// runtime whose bounding set is `bounding` (bit n = capability n; see
/// `HostInfo::cap_bounding`): "all" (privileged, `add: ALL`) means every capability the kernel knows that is
/// also in `bounding`. A capability outside the runtime's bounding set can
/// never be raised, so asking for it would only make capset fail with EPERM
/// (containerd takes "all" from its own process' capabilities for the same
/// reason). Capabilities added by name are left as asked: that error is the
/// caller's to see.
pub fn resolve(sec: &SecurityContext, cap_last_cap: u32, bounding: u64) -> Result<BTreeSet<u32>, SpecError> {
    let usable = |n: &u32| *n <= cap_last_cap && *n < 64 && bounding & (1u64 << n) != 0;
    let all = || {
        ALL_CAPABILITIES
            .iter()
            .map(|c| c.0)
            .filter(usable)
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

/// The CapBnd mask of a /proc/<pid>/status text.
pub(crate) fn parse_cap_bnd(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's bounding set: everything up to 40 but SYS_RESOURCE.
    const NO_SYS_RESOURCE: u64 = 0x0000_01ff_feff_ffff;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn privileged_gets_only_what_the_bounding_set_holds() {
        let sec = SecurityContext {
            privileged: true,
            ..Default::default()
        };
        let caps = resolve(&sec, 40, NO_SYS_RESOURCE).unwrap();
        assert_eq!(caps.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!caps.contains(&24), "SYS_RESOURCE is outside the bounding set");
        assert!(caps.contains(&21) && caps.contains(&40));
        assert_eq!(mask(&caps), NO_SYS_RESOURCE);
    }

    #[test]
    fn add_all_is_bounded_but_named_capabilities_are_not() {
        let mut sec = SecurityContext {
            add_capabilities: strings(&["ALL"]),
            drop_capabilities: strings(&["MKNOD"]),
            ..Default::default()
        };
        let caps = resolve(&sec, 40, NO_SYS_RESOURCE).unwrap();
        assert!(!caps.contains(&24));
        assert!(!caps.contains(&27));
        assert_eq!(caps.len(), ALL_CAPABILITIES.len() - 2);

        // Bounded by both: the kernel's last capability and the mask.
        let caps = resolve(&sec, 37, NO_SYS_RESOURCE).unwrap();
        assert_eq!(caps.iter().max(), Some(&37));

        sec.add_capabilities = strings(&["SYS_RESOURCE"]);
        sec.drop_capabilities.clear();
        let caps = resolve(&sec, 40, NO_SYS_RESOURCE).unwrap();
        assert!(
            caps.contains(&24),
            "asked by name: left for the runtime to refuse"
        );
    }

    #[test]
    fn reads_cap_bnd_from_status() {
        let status =
            "Name:\tberth\nCapEff:\t000001ffffffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n";
        assert_eq!(parse_cap_bnd(status), Some(NO_SYS_RESOURCE));
        assert_eq!(parse_cap_bnd("Name:\tx\n"), None);
    }
}
