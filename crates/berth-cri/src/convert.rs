//! Small conversions between CRI messages and berth's model.

use std::collections::{BTreeMap, HashMap};

use berth_runtime::model::{NamespaceOptions, NsMode, Resources, Seccomp};

use crate::error::CriError;
use crate::v1;
use crate::v1::NamespaceMode;

pub fn now_nanos() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

pub fn btree(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

pub fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// True when every pair of `selector` is among `labels`.
pub fn selects(selector: &HashMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn ns_mode(v: i32) -> NsMode {
    match NamespaceMode::try_from(v).unwrap_or(NamespaceMode::Pod) {
        NamespaceMode::Pod => NsMode::Pod,
        NamespaceMode::Container => NsMode::Container,
        NamespaceMode::Node => NsMode::Node,
        NamespaceMode::Target => NsMode::Target,
    }
}

fn cri_mode(m: NsMode) -> i32 {
    (match m {
        NsMode::Pod => NamespaceMode::Pod,
        NsMode::Container => NamespaceMode::Container,
        NsMode::Node => NamespaceMode::Node,
        NsMode::Target => NamespaceMode::Target,
    }) as i32
}

pub fn namespace_options(o: &v1::NamespaceOption) -> NamespaceOptions {
    NamespaceOptions {
        network: ns_mode(o.network),
        pid: ns_mode(o.pid),
        ipc: ns_mode(o.ipc),
        target_id: (!o.target_id.is_empty()).then(|| o.target_id.clone()),
    }
}

pub fn cri_namespace_options(o: &NamespaceOptions) -> v1::NamespaceOption {
    v1::NamespaceOption {
        network: cri_mode(o.network),
        pid: cri_mode(o.pid),
        ipc: cri_mode(o.ipc),
        target_id: o.target_id.clone().unwrap_or_default(),
        userns_options: None,
    }
}

/// A seccomp profile; the deprecated path field counts when the new one is unset.
pub fn seccomp(p: Option<&v1::SecurityProfile>, legacy_path: &str) -> Result<Option<Seccomp>, CriError> {
    use v1::security_profile::ProfileType;
    if let Some(p) = p {
        return Ok(Some(match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Seccomp::RuntimeDefault,
            Ok(ProfileType::Unconfined) => Seccomp::Unconfined,
            Ok(ProfileType::Localhost) => {
                if p.localhost_ref.is_empty() {
                    return Err(CriError::InvalidArgument(
                        "seccomp profile type Localhost needs a localhost_ref".into(),
                    ));
                }
                Seccomp::Localhost(p.localhost_ref.trim_start_matches("localhost/").into())
            }
            Err(_) => {
                return Err(CriError::InvalidArgument(format!(
                    "seccomp profile type {} is unknown",
                    p.profile_type
                )));
            }
        }));
    }
    Ok(match legacy_path {
        "" => None,
        "runtime/default" | "docker/default" => Some(Seccomp::RuntimeDefault),
        "unconfined" => Some(Seccomp::Unconfined),
        p => Some(Seccomp::Localhost(p.trim_start_matches("localhost/").into())),
    })
}

/// A CRI uid or gid; negative ones are refused.
pub fn id(v: Option<&v1::Int64Value>, what: &str) -> Result<Option<u32>, CriError> {
    v.map(|v| {
        u32::try_from(v.value)
            .map_err(|_| CriError::InvalidArgument(format!("{what} {} is out of range", v.value)))
    })
    .transpose()
}

pub fn ids(v: &[i64], what: &str) -> Result<Vec<u32>, CriError> {
    v.iter()
        .map(|g| {
            u32::try_from(*g).map_err(|_| CriError::InvalidArgument(format!("{what} {g} is out of range")))
        })
        .collect()
}

pub fn resources(r: &v1::LinuxContainerResources) -> Resources {
    Resources {
        memory_limit: r.memory_limit_in_bytes,
        // 0 is no swap with a memory limit (containerd's CRI default), not
        // unlimited swap.
        memory_swap: r.memory_swap_limit_in_bytes,
        cpu_shares: r.cpu_shares.max(0) as u64,
        cpu_quota: r.cpu_quota,
        cpu_period: r.cpu_period.max(0) as u64,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        pids_limit: 0,
        oom_score_adj: (r.oom_score_adj != 0).then_some(r.oom_score_adj as i32),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|h| (h.page_size.clone(), h.limit))
            .collect(),
        unified: btree(r.unified.clone()),
    }
}

pub fn cri_resources(r: &Resources) -> v1::LinuxContainerResources {
    v1::LinuxContainerResources {
        cpu_period: r.cpu_period as i64,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares as i64,
        memory_limit_in_bytes: r.memory_limit,
        oom_score_adj: r.oom_score_adj.unwrap_or(0) as i64,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|(k, v)| v1::HugepageLimit {
                page_size: k.clone(),
                limit: *v,
            })
            .collect(),
        unified: hash(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap,
    }
}

pub fn u64v(value: u64) -> Option<v1::UInt64Value> {
    Some(v1::UInt64Value { value })
}

/// An RFC 3339 time as Unix nanoseconds (0 when unparsable).
pub fn rfc3339_nanos(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as i64)
        .unwrap_or(0)
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

/// Whether SELinux is enabled on this host (selinuxfs is mounted).
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// SELinux labels are accepted and, on a host without SELinux, ignored
/// with a warning naming the object.
pub fn check_selinux(what: &str, o: Option<&v1::SeLinuxOption>) {
    if let Some(o) = o
        && !(o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty() && o.level.is_empty())
        && !selinux_enabled()
    {
        tracing::warn!("{what}: SELinux options {o:?} ignored: SELinux is not enabled on this host");
    }
}
