//! A container's cgroup limits reduced to what the host's cgroup hierarchy
//! can enforce, decided once here so that every handler (berth's own
//! create path, libcontainer, runc) gets a spec it can apply.
//!
//! kubelet sends some fields with every container whether or not they ask
//! for anything: a zero limit for each huge page size the host has, a CFS
//! period without a quota. A field like that is dropped where its
//! controller is missing (containerd does the same for hugetlb with its
//! `tolerate_missing_hugetlb_controller`, on by default), with a debug log.
//! A field that does ask for something the host cannot enforce is refused
//! with an error naming the controller: running without the limit would
//! break the promise the caller relied on.

use super::{HostInfo, SpecError};
use crate::model::Resources;

/// The kernel's `cpu.shares` when nothing set it (cgroup v2's weight 100):
/// asking for it asks for nothing.
const DEFAULT_CPU_SHARES: u64 = 1024;

/// `r` with every field whose controller the host lacks dropped, or an
/// error for the first such field that asks for a real limit.
pub fn fit(r: &Resources, host: &HostInfo, id: &str, container: &str) -> Result<Resources, SpecError> {
    let mut out = r.clone();
    let missing = |controller: &str, what: String| SpecError::MissingController {
        container: container.to_string(),
        controller: controller.to_string(),
        what,
    };
    let dropped = |controller: &str, what: &str| {
        tracing::debug!(
            container = %id,
            name = container,
            controller,
            "{what} asks for nothing and the host has no {controller} controller: left out of the spec"
        );
    };

    if !host.has_controller("hugetlb") {
        for (size, limit) in std::mem::take(&mut out.hugepage_limits) {
            if limit > 0 {
                return Err(missing(
                    "hugetlb",
                    format!("a hugepage limit of {limit} bytes for page size {size}"),
                ));
            }
            dropped("hugetlb", &format!("hugepage limit 0 for page size {size}"));
        }
    }

    if !host.has_controller("cpu") {
        if out.cpu_quota > 0 {
            return Err(missing("cpu", format!("a CPU quota of {}µs", out.cpu_quota)));
        }
        if out.cpu_shares != 0 && out.cpu_shares != DEFAULT_CPU_SHARES {
            return Err(missing("cpu", format!("cpu shares {}", out.cpu_shares)));
        }
        // A quota of -1 is "unlimited" and a period only scales a quota.
        for (set, what) in [
            (out.cpu_quota != 0, "cpu quota -1 (unlimited)"),
            (out.cpu_period != 0, "a cpu period without a quota"),
            (out.cpu_shares != 0, "the default cpu shares"),
        ] {
            if set {
                dropped("cpu", what);
            }
        }
        (out.cpu_quota, out.cpu_period, out.cpu_shares) = (0, 0, 0);
    }

    if !host.has_controller("memory") {
        if out.memory_limit > 0 {
            return Err(missing(
                "memory",
                format!("a memory limit of {} bytes", out.memory_limit),
            ));
        }
        out.memory_limit = 0;
    }

    if !host.has_controller("cpuset") {
        for (set, what) in [
            (&out.cpuset_cpus, "cpuset cpus"),
            (&out.cpuset_mems, "cpuset mems"),
        ] {
            if !set.is_empty() {
                return Err(missing("cpuset", format!("{what} {set:?}")));
            }
        }
    }

    if !host.has_controller("pids") {
        if out.pids_limit > 0 {
            return Err(missing("pids", format!("a pids limit of {}", out.pids_limit)));
        }
        out.pids_limit = 0;
    }

    for key in out.unified.keys() {
        // Only the unified hierarchy has these files; on v1 no runtime can
        // write them (runc refuses the whole spec).
        if !host.cgroup_v2 {
            return Err(missing("unified (cgroup v2)", format!("unified key {key:?}")));
        }
        // `cgroup.*` files belong to no controller.
        let controller = key.split_once('.').map_or(key.as_str(), |(c, _)| c);
        if controller != "cgroup" && !host.has_controller(controller) {
            return Err(missing(controller, format!("unified key {key:?}")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A cgroup v1 host with every controller but `lacking`.
    fn host_without(lacking: &str) -> HostInfo {
        let mut host = HostInfo::unrestricted(false);
        host.cgroup_controllers.retain(|c| c != lacking);
        host
    }

    /// What kubelet sends for a BestEffort container on a host with 2 MiB
    /// and 1 GiB pages.
    fn kubelet() -> Resources {
        Resources {
            cpu_period: 100_000,
            cpu_shares: 2,
            oom_score_adj: Some(1000),
            hugepage_limits: BTreeMap::from([("2MB".into(), 0), ("1GB".into(), 0)]),
            ..Default::default()
        }
    }

    fn refusal(r: &Resources, host: &HostInfo) -> String {
        fit(r, host, "c1", "app").unwrap_err().to_string()
    }

    #[test]
    fn everything_stays_where_every_controller_is() {
        let r = Resources {
            memory_limit: 64 << 20,
            cpu_quota: 50_000,
            cpuset_cpus: "0".into(),
            pids_limit: 10,
            hugepage_limits: BTreeMap::from([("2MB".into(), 4 << 20)]),
            ..kubelet()
        };
        assert_eq!(fit(&r, &HostInfo::unrestricted(false), "c1", "app").unwrap(), r);
    }

    #[test]
    fn zero_hugepage_limits_go_without_hugetlb_and_real_ones_are_refused() {
        let host = host_without("hugetlb");
        let fitted = fit(&kubelet(), &host, "c1", "app").unwrap();
        assert!(fitted.hugepage_limits.is_empty());
        assert_eq!((fitted.cpu_period, fitted.cpu_shares), (100_000, 2));

        let mut r = kubelet();
        r.hugepage_limits.insert("2MB".into(), 4 << 20);
        let e = refusal(&r, &host);
        assert!(
            e.contains("hugetlb") && e.contains("2MB") && e.contains("app"),
            "{e}"
        );
    }

    #[test]
    fn cpu_fields_that_ask_nothing_go_without_the_cpu_controller() {
        let host = host_without("cpu");
        let r = Resources {
            cpu_shares: 1024,
            cpu_quota: -1,
            ..kubelet()
        };
        let fitted = fit(&r, &host, "c1", "app").unwrap();
        assert_eq!(
            (fitted.cpu_period, fitted.cpu_quota, fitted.cpu_shares),
            (0, 0, 0)
        );
        // kubelet's shares for a BestEffort pod are a real weight.
        assert!(refusal(&kubelet(), &host).contains("cpu shares 2"));
        let quota = Resources {
            cpu_quota: 50_000,
            cpu_shares: 0,
            ..kubelet()
        };
        assert!(refusal(&quota, &host).contains("cpu controller"));
    }

    #[test]
    fn memory_cpuset_and_pids_limits_need_their_controllers() {
        let r = Resources {
            memory_limit: 1 << 20,
            ..Default::default()
        };
        assert!(refusal(&r, &host_without("memory")).contains("memory controller"));
        assert_eq!(
            fit(&kubelet(), &host_without("memory"), "c1", "app").unwrap(),
            kubelet()
        );

        let r = Resources {
            cpuset_mems: "0".into(),
            ..Default::default()
        };
        assert!(refusal(&r, &host_without("cpuset")).contains("cpuset mems"));

        let r = Resources {
            pids_limit: 5,
            ..Default::default()
        };
        assert!(refusal(&r, &host_without("pids")).contains("pids controller"));
        let r = Resources {
            pids_limit: -1,
            ..Default::default()
        };
        assert_eq!(fit(&r, &host_without("pids"), "c1", "app").unwrap().pids_limit, 0);
    }

    #[test]
    fn unified_keys_need_cgroup_v2_and_their_controller() {
        let r = Resources {
            unified: BTreeMap::from([("memory.high".into(), "max".into())]),
            ..Default::default()
        };
        assert!(refusal(&r, &HostInfo::unrestricted(false)).contains("memory.high"));
        let mut v2 = HostInfo::unrestricted(true);
        assert!(fit(&r, &v2, "c1", "app").is_ok());
        v2.cgroup_controllers.retain(|c| c != "memory");
        assert!(refusal(&r, &v2).contains("memory controller"));
        let core = Resources {
            unified: BTreeMap::from([("cgroup.max.depth".into(), "2".into())]),
            ..Default::default()
        };
        assert!(fit(&core, &v2, "c1", "app").is_ok());
    }
}
