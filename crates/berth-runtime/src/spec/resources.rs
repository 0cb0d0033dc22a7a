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
    let mut b = LinuxResourcesBuilder::default();
    if r.memory_limit > 0 {
        b = b.memory(LinuxMemoryBuilder::default().limit(r.memory_limit).build()?);
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
    if !r.unified.is_empty() {
        b = b.unified(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
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
