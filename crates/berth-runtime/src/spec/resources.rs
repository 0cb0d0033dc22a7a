//! cgroup resources, rlimits, oom_score_adj and sysctls. Limits berth cannot
//! set without CAP_SYS_RESOURCE are clamped to its own, with a warning.

use std::collections::HashMap;
use std::str::FromStr;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
};

use super::namespaces::Modes;
use super::{HostInfo, SpecError};
use crate::model::{ContainerConfig, NsMode, PodConfig, Resources, Rlimit};

pub fn linux_resources(r: &Resources) -> Result<LinuxResources, OciSpecError> {
    linux_resources_on(r, SwapHost::detected())
}

/// What a host offers for limiting swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapHost {
    pub cgroup_v2: bool,
    /// The kernel accounts swap per cgroup (v1 `memory.memsw.*`, v2
    /// `memory.swap.max`); without it no runtime can limit swap, and a
    /// spec that asks fails (runc, libcontainer) on the missing file.
    pub accounting: bool,
}

impl SwapHost {
    pub fn detected() -> SwapHost {
        static HOST: std::sync::OnceLock<SwapHost> = std::sync::OnceLock::new();
        *HOST.get_or_init(|| {
            let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
            SwapHost {
                cgroup_v2,
                accounting: swap_accounting(cgroup_v2),
            }
        })
    }
}

/// As containerd's check: the v1 memory hierarchy's root has
/// `memory.memsw.limit_in_bytes`; on v2 `memory.swap.max` exists in every
/// cgroup with the memory controller but the root, so berth's own cgroup is
/// looked at, or (when that is the root, as in a VM guest) the root's
/// children.
fn swap_accounting(cgroup_v2: bool) -> bool {
    use std::path::Path;
    if !cgroup_v2 {
        return Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("0::").map(str::to_owned)))
        .unwrap_or_default();
    let own = own.trim_start_matches('/');
    if !own.is_empty()
        && Path::new("/sys/fs/cgroup")
            .join(own)
            .join("memory.swap.max")
            .exists()
    {
        return true;
    }
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("memory.swap.max").exists())
}

/// The OCI `memory.swap` (memory+swap) for a memory limit and the
/// requested [`Resources::memory_swap`], as containerd does for the CRI: no
/// swap unless asked for. None leaves swap alone: no memory limit, or a
/// host without swap accounting (then a request for swap is only warned
/// about, as docker does).
pub fn oci_swap(limit: i64, swap: i64, host: SwapHost) -> Result<Option<i64>, String> {
    if limit <= 0 {
        if swap != 0 {
            tracing::warn!(swap, "a memory+swap limit without a memory limit is ignored");
        }
        return Ok(None);
    }
    let total = match swap {
        0 => limit,
        -1 => -1,
        s if s < -1 => {
            return Err(format!(
                "memory+swap limit {s}: only -1 (unlimited) may be negative"
            ));
        }
        s if s < limit => {
            return Err(format!(
                "memory+swap limit {s} is below the memory limit {limit}: it counts memory and swap together"
            ));
        }
        s => s,
    };
    if !host.accounting {
        if swap != 0 {
            tracing::warn!(
                swap,
                "this host does not account swap per cgroup: memory limited without a swap limit"
            );
        }
        return Ok(None);
    }
    Ok(Some(total))
}

/// The unified file writes a swap limit needs on cgroup v2 beyond the OCI
/// field: libcgroups 0.7 writes `memory.swap.max` as memory+swap minus the
/// memory limit but skips the write when that is 0, leaving `max` — swap
/// unlimited exactly when none was asked for. runc writes the 0 itself; the
/// unified entry makes every runtime do so.
pub fn v2_swap_files(
    limit: i64,
    oci_swap: Option<i64>,
    host: SwapHost,
) -> Option<(&'static str, &'static str)> {
    (host.cgroup_v2 && limit > 0 && oci_swap == Some(limit)).then_some(("memory.swap.max", "0"))
}

pub fn linux_resources_on(r: &Resources, swap_host: SwapHost) -> Result<LinuxResources, OciSpecError> {
    let mut b = LinuxResourcesBuilder::default();
    let mut unified: HashMap<String, String> =
        r.unified.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if r.memory_limit > 0 {
        let mut m = LinuxMemoryBuilder::default().limit(r.memory_limit);
        let swap = oci_swap(r.memory_limit, r.memory_swap, swap_host)
            .map_err(|e| OciSpecError::Other(format!("linux.resources.memory.swap: {e}")))?;
        if let Some(swap) = swap {
            m = m.swap(swap);
        }
        if let Some((file, value)) = v2_swap_files(r.memory_limit, swap, swap_host) {
            // What the request's own unified keys say wins.
            unified.entry(file.into()).or_insert_with(|| value.into());
        }
        b = b.memory(m.build()?);
    }
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if r.cpu_shares > 0 {
        cpu = cpu.shares(r.cpu_shares);
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu = cpu.quota(r.cpu_quota);
        any_cpu = true;
    }
    if r.cpu_period > 0 {
        cpu = cpu.period(r.cpu_period);
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
        any_cpu = true;
    }
    if any_cpu {
        b = b.cpu(cpu.build()?);
    }
    if r.pids_limit > 0 {
        b = b.pids(LinuxPidsBuilder::default().limit(r.pids_limit).build()?);
    }
    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|(size, limit)| {
                LinuxHugepageLimitBuilder::default()
                    .page_size(size.clone())
                    .limit(i64::try_from(*limit).unwrap_or(i64::MAX))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        b = b.hugepage_limits(limits);
    }
    if !unified.is_empty() {
        b = b.unified(unified);
    }
    b.build()
}

/// The request's rlimits, each hard limit clamped to berth's own (raising
/// one needs CAP_SYS_RESOURCE, which berth may lack).
pub fn rlimits(
    requested: &[Rlimit],
    host: &HostInfo,
    warnings: &mut Vec<String>,
) -> Result<Vec<PosixRlimit>, SpecError> {
    requested
        .iter()
        .map(|r| {
            let typ = rlimit_type(&r.kind)?;
            if r.soft > r.hard {
                return Err(SpecError::RlimitSoftAboveHard {
                    kind: r.kind.clone(),
                    soft: r.soft,
                    hard: r.hard,
                });
            }
            let (mut soft, mut hard) = (r.soft, r.hard);
            if let Some(max) = host.hard_limit(typ).filter(|max| hard > *max) {
                warnings.push(format!(
                    "rlimit {typ}: hard {hard} above berth's own hard limit {max}, clamped to {max}"
                ));
                hard = max;
                soft = soft.min(max);
            }
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()
                .map_err(|source| SpecError::Build {
                    container: format!("(rlimit {typ})"),
                    source,
                })
        })
        .collect()
}

fn rlimit_type(kind: &str) -> Result<PosixRlimitType, SpecError> {
    let upper = kind.trim().to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    PosixRlimitType::from_str(&full).map_err(|_| SpecError::UnknownRlimit {
        kind: kind.to_string(),
    })
}

/// The requested score, never below berth's own: lowering it needs
/// CAP_SYS_RESOURCE (containerd's restrict_oom_score_adj).
pub fn oom_score_adj(requested: Option<i32>, host: &HostInfo, warnings: &mut Vec<String>) -> Option<i32> {
    let want = requested?.clamp(-1000, 1000);
    if want < host.oom_score_adj {
        warnings.push(format!(
            "oom_score_adj {want} below berth's own {}, clamped to {}",
            host.oom_score_adj, host.oom_score_adj
        ));
        return Some(host.oom_score_adj);
    }
    Some(want)
}

/// The namespace a sysctl belongs to, if it is namespaced at all.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    let n = name.replace('/', ".");
    if n == "kernel.sem"
        || n.starts_with("kernel.shm")
        || n.starts_with("kernel.msg")
        || n.starts_with("fs.mqueue.")
    {
        Some("ipc")
    } else if n.starts_with("net.") {
        Some("network")
    } else if n == "kernel.domainname" {
        Some("uts")
    } else {
        None
    }
}

/// Pod sysctls overridden by the container's; each must be namespaced and
/// its namespace not the host's.
pub fn sysctls(
    pod: &PodConfig,
    ctr: &ContainerConfig,
    modes: &Modes,
) -> Result<HashMap<String, String>, SpecError> {
    let mut out = HashMap::new();
    for (name, value) in pod.sysctls.iter().chain(&ctr.sysctls) {
        if name.replace('/', ".") == "kernel.hostname" {
            // Runtimes refuse it: the spec's hostname field owns it.
            return Err(SpecError::SysctlHostname { name: name.clone() });
        }
        let ns =
            sysctl_namespace(name).ok_or_else(|| SpecError::SysctlNotNamespaced { name: name.clone() })?;
        let mode = match ns {
            "ipc" => modes.ipc,
            "network" => modes.net,
            _ => modes.uts,
        };
        if mode == NsMode::Node {
            return Err(SpecError::SysctlHostNamespace {
                name: name.clone(),
                namespace: ns,
            });
        }
        out.insert(name.clone(), value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod swap_tests {
    use super::*;

    const V1: SwapHost = SwapHost {
        cgroup_v2: false,
        accounting: true,
    };
    const V2: SwapHost = SwapHost {
        cgroup_v2: true,
        accounting: true,
    };
    const NO_ACCOUNTING: SwapHost = SwapHost {
        cgroup_v2: true,
        accounting: false,
    };

    fn memory(limit: i64, swap: i64, host: SwapHost) -> (Option<i64>, Option<String>) {
        let r = Resources {
            memory_limit: limit,
            memory_swap: swap,
            ..Default::default()
        };
        let res = linux_resources_on(&r, host).unwrap();
        let swap = res.memory().as_ref().and_then(|m| m.swap());
        let swap_max = res
            .unified()
            .as_ref()
            .and_then(|u| u.get("memory.swap.max").cloned());
        (swap, swap_max)
    }

    #[test]
    fn a_memory_limit_alone_means_no_swap() {
        // OCI swap is memory+swap: equal to the limit, no swap at all.
        assert_eq!(memory(64 << 20, 0, V1), (Some(64 << 20), None));
        // On v2 also memory.swap.max 0, which libcgroups would not write.
        assert_eq!(memory(64 << 20, 0, V2), (Some(64 << 20), Some("0".into())));
    }

    #[test]
    fn requested_swap_is_memory_plus_swap() {
        assert_eq!(memory(64 << 20, 96 << 20, V1), (Some(96 << 20), None));
        // libcgroups writes memory.swap.max = 96m - 64m itself.
        assert_eq!(memory(64 << 20, 96 << 20, V2), (Some(96 << 20), None));
        assert_eq!(memory(64 << 20, -1, V2), (Some(-1), None));
        assert_eq!(memory(64 << 20, 64 << 20, V1), (Some(64 << 20), None));
    }

    #[test]
    fn no_memory_limit_or_no_swap_accounting_leaves_swap_alone() {
        assert_eq!(memory(0, 0, V2), (None, None));
        assert_eq!(memory(0, 96 << 20, V1), (None, None));
        // Asking for a file the kernel lacks would fail the container.
        assert_eq!(memory(64 << 20, 0, NO_ACCOUNTING), (None, None));
        assert_eq!(memory(64 << 20, 96 << 20, NO_ACCOUNTING), (None, None));
    }

    #[test]
    fn the_requests_own_unified_swap_wins() {
        let r = Resources {
            memory_limit: 64 << 20,
            unified: [("memory.swap.max".to_string(), "max".to_string())].into(),
            ..Default::default()
        };
        let res = linux_resources_on(&r, V2).unwrap();
        assert_eq!(res.unified().as_ref().unwrap()["memory.swap.max"], "max");
    }

    #[test]
    fn swap_below_the_limit_is_refused_naming_the_field() {
        let r = Resources {
            memory_limit: 64 << 20,
            memory_swap: 32 << 20,
            ..Default::default()
        };
        let err = linux_resources_on(&r, V1).unwrap_err().to_string();
        assert!(
            err.contains("linux.resources.memory.swap")
                && err.contains("33554432")
                && err.contains("67108864"),
            "{err}"
        );
        assert!(oci_swap(64 << 20, -2, V1).unwrap_err().contains("-2"));
    }
}
