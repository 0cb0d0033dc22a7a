//! Facts about the host and berth's own process that bound what a spec may
//! ask for. Read once per process: none of them changes while berth runs.

use std::sync::OnceLock;

use oci_spec::runtime::PosixRlimitType;
use rustix::process::{Resource, getrlimit};

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
const CGROUP2_MAGIC: u64 = 0x6367_7270;

/// What generation needs to know about the host; [`HostInfo::detected`] in
/// production, built by hand in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// /sys/fs/cgroup is cgroup2 (unified): containers get a cgroup namespace.
    pub cgroup_v2: bool,
    /// Names of the cgroup v1 hierarchies mounted under /sys/fs/cgroup
    /// (`memory`, `cpu,cpuacct`, `systemd`): the directories a runtime
    /// mounts them on in a container.
    pub cgroup_v1_hierarchies: Vec<String>,
    /// Controllers a container's cgroup can use, as berth's cgroup driver
    /// finds them: on a hybrid host only the v1 hierarchies count, not
    /// what the cgroup2 mount at /sys/fs/cgroup/unified holds.
    pub cgroup_controllers: Vec<String>,
    /// AppArmor is enabled (/sys/module/apparmor/parameters/enabled is Y).
    pub apparmor: bool,
    /// Highest capability number the kernel knows (/proc/sys/kernel/cap_last_cap).
    pub cap_last_cap: u32,
    /// berth's own capability bounding set (CapBnd, bit n = capability n):
    /// a capability outside it can never be raised in a container.
    pub cap_bounding: u64,
    /// berth's own oom_score_adj: without CAP_SYS_RESOURCE nothing lower can be set.
    pub oom_score_adj: i32,
    /// berth's own hard rlimits (None = unlimited), indexed by [`rlimit_index`].
    pub rlimit_hard: [Option<u64>; RLIMIT_COUNT],
}

pub const RLIMIT_COUNT: usize = 16;

/// The controllers a container's resources can ask for.
const RESOURCE_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "memory", "pids", "hugetlb"];

impl HostInfo {
    /// The host's facts, read on first use and cached.
    pub fn detected() -> &'static HostInfo {
        static HOST: OnceLock<HostInfo> = OnceLock::new();
        HOST.get_or_init(HostInfo::detect)
    }

    fn detect() -> HostInfo {
        let cgroup_v2 = rustix::fs::statfs("/sys/fs/cgroup")
            .map(|s| s.f_type as u64 == CGROUP2_MAGIC)
            .unwrap_or(false);
        let cgroup_v1_hierarchies = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| cgroup_v1_hierarchies(&m))
            .unwrap_or_default();
        let cgroup_controllers = crate::cgroup::Cgroups::detect()
            .map(|cg| {
                RESOURCE_CONTROLLERS
                    .iter()
                    .filter(|c| cg.has_controller(c))
                    .map(|c| c.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let cap_last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            // CAP_CHECKPOINT_RESTORE, the last one berth knows by name.
            .unwrap_or(40);
        let oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let apparmor =
            std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y");
        // Unreadable counts as unbounded: cap_last_cap alone decides then.
        let cap_bounding = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| super::capabilities::parse_cap_bnd(&s))
            .unwrap_or(u64::MAX);
        let mut rlimit_hard = [None; RLIMIT_COUNT];
        for (i, res) in RESOURCES.iter().enumerate() {
            rlimit_hard[i] = getrlimit(*res).maximum;
        }
        HostInfo {
            cgroup_v2,
            cgroup_v1_hierarchies,
            cgroup_controllers,
            apparmor,
            cap_last_cap,
            cap_bounding,
            oom_score_adj,
            rlimit_hard,
        }
    }

    /// A host with no limits on berth itself (tests start from this).
    pub fn unrestricted(cgroup_v2: bool) -> HostInfo {
        HostInfo {
            cgroup_v2,
            cgroup_v1_hierarchies: Vec::new(),
            cgroup_controllers: RESOURCE_CONTROLLERS.iter().map(|c| c.to_string()).collect(),
            apparmor: false,
            cap_last_cap: 40,
            cap_bounding: u64::MAX,
            oom_score_adj: -1000,
            rlimit_hard: [None; RLIMIT_COUNT],
        }
    }

    /// Whether a container's cgroup can use `controller`.
    pub fn has_controller(&self, controller: &str) -> bool {
        self.cgroup_controllers.iter().any(|c| c == controller)
    }

    /// berth's own hard limit for `kind` (None = unlimited).
    pub fn hard_limit(&self, kind: PosixRlimitType) -> Option<u64> {
        self.rlimit_hard[rlimit_index(kind)]
    }
}

/// The last path component of every cgroup (v1) mount directly under
/// /sys/fs/cgroup in a mountinfo text.
fn cgroup_v1_hierarchies(mountinfo: &str) -> Vec<String> {
    let mut names: Vec<String> = mountinfo
        .lines()
        .filter(|l| l.split(" - ").nth(1).and_then(|t| t.split(' ').next()) == Some("cgroup"))
        .filter_map(|l| l.split(' ').nth(4)?.strip_prefix("/sys/fs/cgroup/"))
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

const RESOURCES: [Resource; RLIMIT_COUNT] = [
    Resource::Cpu,
    Resource::Fsize,
    Resource::Data,
    Resource::Stack,
    Resource::Core,
    Resource::Rss,
    Resource::Nproc,
    Resource::Nofile,
    Resource::Memlock,
    Resource::As,
    Resource::Locks,
    Resource::Sigpending,
    Resource::Msgqueue,
    Resource::Nice,
    Resource::Rtprio,
    Resource::Rttime,
];

/// Position of `kind` in [`HostInfo::rlimit_hard`].
pub fn rlimit_index(kind: PosixRlimitType) -> usize {
    use PosixRlimitType::*;
    match kind {
        RlimitCpu => 0,
        RlimitFsize => 1,
        RlimitData => 2,
        RlimitStack => 3,
        RlimitCore => 4,
        RlimitRss => 5,
        RlimitNproc => 6,
        RlimitNofile => 7,
        RlimitMemlock => 8,
        RlimitAs => 9,
        RlimitLocks => 10,
        RlimitSigpending => 11,
        RlimitMsgqueue => 12,
        RlimitNice => 13,
        RlimitRtprio => 14,
        RlimitRttime => 15,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cgroup_v1_hierarchies_are_the_cgroup_mounts_under_sys_fs_cgroup() {
        let mountinfo = "\
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:6 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:7 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:8 - cgroup cgroup rw,memory
35 1 0:30 / /mnt/memory rw,nosuid shared:8 - cgroup cgroup rw,memory
";
        assert_eq!(
            super::cgroup_v1_hierarchies(mountinfo),
            ["cpu,cpuacct", "memory", "systemd"]
        );
    }
}
