//! OCI `linux.resources` as cgroup v1 and v2 file writes, for berth's own
//! create path ([`super::direct`]). What this does not translate is named,
//! and the container then takes libcontainer's path instead.

use berth_runtime::cgroup::shares_to_weight;
use berth_runtime::device_filter::DEFAULT_ALLOWED;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

/// One value written to one file of a controller's hierarchy.
#[derive(Debug, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn w(controller: &'static str, file: &str, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.to_owned(),
        value: value.to_string(),
    }
}

/// The writes that give a fresh v1 cgroup the limits of `res`, in an order
/// the kernel accepts (memory before memory+swap, the CFS period before the
/// quota). `Err` names the first setting left to libcontainer.
pub fn v1_writes(res: Option<&LinuxResources>) -> Result<Vec<Write>, String> {
    let mut out = Vec::new();
    let Some(res) = res else {
        device_writes(&[], &mut out);
        return Ok(out);
    };
    if res.block_io().is_some() {
        return Err("linux.resources.blockIO".into());
    }
    if res.network().is_some() {
        return Err("linux.resources.network".into());
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return Err("linux.resources.rdma".into());
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err("linux.resources.unified".into());
    }
    // On this kind of host hugetlb may live in the cgroup2 mount of a
    // hybrid layout; libcontainer knows where.
    if res.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        return Err("linux.resources.hugepageLimits".into());
    }
    if let Some(m) = res.memory() {
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            return Err("linux.resources.memory.kernel".into());
        }
        if let Some(limit) = m.limit().filter(|&l| l != 0) {
            out.push(w("memory", "memory.limit_in_bytes", limit));
        }
        // A fresh cgroup's memory+swap limit is unlimited, so it can only be
        // lowered after the memory limit, never before.
        if let Some(swap) = m.swap().filter(|&s| s != 0) {
            out.push(w("memory", "memory.memsw.limit_in_bytes", swap));
        }
        if let Some(r) = m.reservation().filter(|&r| r != 0) {
            out.push(w("memory", "memory.soft_limit_in_bytes", r));
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(format!("linux.resources.memory.swappiness {s} (0-100)"));
            }
            out.push(w("memory", "memory.swappiness", s));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom_control", 1));
        }
    }
    if let Some(c) = res.cpu() {
        if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
            return Err("linux.resources.cpu.realtime".into());
        }
        if c.idle().is_some() || c.burst().is_some() {
            return Err("linux.resources.cpu.idle/burst".into());
        }
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            out.push(w("cpu", "cpu.shares", s));
        }
        if let Some(p) = c.period().filter(|&p| p != 0) {
            out.push(w("cpu", "cpu.cfs_period_us", p));
        }
        if let Some(q) = c.quota().filter(|&q| q != 0) {
            out.push(w("cpu", "cpu.cfs_quota_us", q));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", mems));
        }
    }
    if let Some(p) = res.pids() {
        let limit = p.limit();
        if limit > 0 {
            out.push(w("pids", "pids.max", limit));
        } else {
            out.push(w("pids", "pids.max", "max"));
        }
    }
    device_writes(res.devices().as_deref().unwrap_or(&[]), &mut out);
    Ok(out)
}

/// Refuses resource settings that name files by themselves: a `unified` key
/// or a hugepage size that is not a plain file name of the container's own
/// cgroup could write outside it (libcgroups joins them to the cgroup path
/// unchecked). Checked before either create path runs.
pub fn check_file_names(res: Option<&LinuxResources>) -> Result<(), String> {
    let Some(res) = res else {
        return Ok(());
    };
    for key in res.unified().iter().flat_map(|u| u.keys()) {
        let plain =
            !key.is_empty() && !key.contains('/') && key != "." && key != ".." && !key.starts_with("cgroup.");
        if !plain {
            return Err(format!(
                "linux.resources.unified key {key:?} is not a file of the container's cgroup"
            ));
        }
    }
    for h in res.hugepage_limits().iter().flatten() {
        let size = h.page_size();
        let digits = size.trim_end_matches(['K', 'M', 'G', 'B']);
        let plain = size.ends_with('B') && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        if !plain {
            return Err(format!(
                "linux.resources.hugepageLimits pageSize {size:?} is not a page size (like 2MB)"
            ));
        }
    }
    Ok(())
}

/// The writes that give a fresh v2 cgroup the limits of `res`, as runc
/// converts them (memory+swap becomes `memory.swap.max` = swap − limit,
/// shares become a weight). Device rules are not files on v2: they are
/// the BPF program [`super::devices`] attaches. `Err` names the first
/// setting left to libcontainer.
pub fn v2_writes(res: Option<&LinuxResources>) -> Result<Vec<Write>, String> {
    let mut out = Vec::new();
    let Some(res) = res else {
        return Ok(out);
    };
    if res.block_io().is_some() {
        return Err("linux.resources.blockIO".into());
    }
    if res.network().is_some() {
        return Err("linux.resources.network".into());
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return Err("linux.resources.rdma".into());
    }
    let max = |v: i64| if v < 0 { "max".to_owned() } else { v.to_string() };
    if let Some(m) = res.memory() {
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            return Err("linux.resources.memory.kernel".into());
        }
        if m.swappiness().is_some() || m.disable_oom_killer() == Some(true) {
            return Err("linux.resources.memory.swappiness or disableOOMKiller (no v2 file)".into());
        }
        if let Some(r) = m.reservation().filter(|&r| r != 0) {
            out.push(w("memory", "memory.low", max(r)));
        }
        let limit = m.limit().filter(|&l| l != 0);
        if let Some(l) = limit {
            out.push(w("memory", "memory.max", max(l)));
        }
        match (limit, m.swap().filter(|&s| s != 0)) {
            (_, None) => {}
            (_, Some(s)) if s < 0 => out.push(w("memory", "memory.swap.max", "max")),
            (Some(l), Some(s)) if l > 0 => {
                if s < l {
                    return Err(format!("linux.resources.memory.swap {s} below the limit {l}"));
                }
                out.push(w("memory", "memory.swap.max", s - l));
            }
            (_, Some(_)) => return Err("linux.resources.memory.swap without a memory limit".into()),
        }
    }
    if let Some(c) = res.cpu() {
        if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
            return Err("linux.resources.cpu.realtime".into());
        }
        if c.idle().is_some() || c.burst().is_some() {
            return Err("linux.resources.cpu.idle/burst".into());
        }
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            out.push(w("cpu", "cpu.weight", shares_to_weight(s)));
        }
        let quota = c.quota().filter(|&q| q != 0);
        let period = c.period().filter(|&p| p != 0);
        if quota.is_some() || period.is_some() {
            let quota = quota
                .filter(|&q| q > 0)
                .map_or_else(|| "max".to_owned(), |q| q.to_string());
            out.push(w(
                "cpu",
                "cpu.max",
                format!("{quota} {}", period.unwrap_or(100_000)),
            ));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", mems));
        }
    }
    if let Some(p) = res.pids() {
        let limit = p.limit();
        out.push(w(
            "pids",
            "pids.max",
            if limit > 0 {
                limit.to_string()
            } else {
                "max".into()
            },
        ));
    }
    for h in res.hugepage_limits().as_deref().unwrap_or(&[]) {
        out.push(w("hugetlb", &format!("hugetlb.{}.max", h.page_size()), h.limit()));
    }
    for (file, value) in res.unified().iter().flatten() {
        // Files of the container's own cgroup only.
        if file.contains('/') || file.starts_with("cgroup.") {
            return Err(format!("linux.resources.unified key {file:?}"));
        }
        out.push(w("", file, value));
    }
    Ok(out)
}

/// The spec's device rules in order, then the devices every container gets
/// ([`DEFAULT_ALLOWED`], the same list berth's v2 program appends).
fn device_writes(rules: &[LinuxDeviceCgroup], out: &mut Vec<Write>) {
    for r in rules {
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        out.push(w("devices", file, r));
    }
    for &(typ, major, minor, access) in DEFAULT_ALLOWED {
        let star = |n: Option<i64>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        out.push(w(
            "devices",
            "devices.allow",
            format!("{} {}:{} {access}", typ.as_str(), star(major), star(minor)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    use super::*;

    fn find<'a>(ws: &'a [Write], file: &str) -> Vec<&'a str> {
        ws.iter()
            .filter(|w| w.file == file)
            .map(|w| w.value.as_str())
            .collect()
    }

    #[test]
    fn limits_become_v1_files_in_an_order_the_kernel_accepts() {
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(128 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
            .build()
            .unwrap();
        let ws = v1_writes(Some(&res)).unwrap();
        assert_eq!(find(&ws, "memory.limit_in_bytes"), ["67108864"]);
        assert_eq!(find(&ws, "memory.memsw.limit_in_bytes"), ["134217728"]);
        assert_eq!(find(&ws, "cpu.shares"), ["512"]);
        assert_eq!(find(&ws, "cpuset.cpus"), ["0"]);
        assert_eq!(find(&ws, "pids.max"), ["42"]);
        let pos = |f: &str| ws.iter().position(|w| w.file == f).unwrap();
        assert!(pos("memory.limit_in_bytes") < pos("memory.memsw.limit_in_bytes"));
        assert!(pos("cpu.cfs_period_us") < pos("cpu.cfs_quota_us"));
    }

    #[test]
    fn device_rules_come_first_then_the_defaults() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .typ(LinuxDeviceType::A)
            .access("rwm")
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default()
            .devices(vec![deny_all])
            .build()
            .unwrap();
        let ws = v1_writes(Some(&res)).unwrap();
        assert_eq!(ws[0], w("devices", "devices.deny", "a *:* rwm"));
        let allowed = find(&ws, "devices.allow");
        assert!(allowed.contains(&"c 1:3 rwm"), "{allowed:?}");
        assert!(allowed.contains(&"c 136:* rwm"), "{allowed:?}");
        assert!(allowed.contains(&"b *:* m"), "{allowed:?}");
        // Nothing but device rules when no limit is set.
        assert!(ws.iter().all(|w| w.controller == "devices"));
    }

    #[test]
    fn limits_become_v2_files_as_runc_converts_them() {
        let mut res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .hugepage_limits(vec![
                oci_spec::runtime::LinuxHugepageLimitBuilder::default()
                    .page_size("2MB")
                    .limit(0i64)
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        res.set_unified(Some([("memory.high".to_owned(), "50000000".to_owned())].into()));
        let ws = v2_writes(Some(&res)).unwrap();
        assert_eq!(find(&ws, "memory.max"), ["67108864"]);
        assert_eq!(
            find(&ws, "memory.swap.max"),
            ["0"],
            "swap equal to the limit: no swap"
        );
        assert_eq!(find(&ws, "cpu.weight"), ["20"]);
        assert_eq!(find(&ws, "cpu.max"), ["50000 100000"]);
        assert_eq!(find(&ws, "pids.max"), ["max"]);
        assert_eq!(find(&ws, "hugetlb.2MB.max"), ["0"]);
        assert_eq!(find(&ws, "memory.high"), ["50000000"]);
        assert!(
            ws.iter().all(|w| w.controller != "devices"),
            "device rules are a BPF program on v2"
        );

        let unlimited_swap = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(-1)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            find(&v2_writes(Some(&unlimited_swap)).unwrap(), "memory.swap.max"),
            ["max"]
        );
    }

    #[test]
    fn file_names_that_could_leave_the_cgroup_are_refused() {
        let mut res = LinuxResourcesBuilder::default().build().unwrap();
        for bad in [
            "../cgroup.procs",
            "/proc/sys/kernel/core_pattern",
            "cgroup.procs",
            "..",
            "",
        ] {
            res.set_unified(Some([(bad.to_owned(), "1".to_owned())].into()));
            assert!(
                check_file_names(Some(&res)).unwrap_err().contains("unified key"),
                "{bad}"
            );
        }
        res.set_unified(Some([("memory.high".to_owned(), "1".to_owned())].into()));
        assert_eq!(check_file_names(Some(&res)), Ok(()));
        let huge = |size: &str| {
            LinuxResourcesBuilder::default()
                .hugepage_limits(vec![
                    oci_spec::runtime::LinuxHugepageLimitBuilder::default()
                        .page_size(size)
                        .limit(0i64)
                        .build()
                        .unwrap(),
                ])
                .build()
                .unwrap()
        };
        assert_eq!(check_file_names(Some(&huge("2MB"))), Ok(()));
        assert!(
            check_file_names(Some(&huge("../x/2MB")))
                .unwrap_err()
                .contains("pageSize")
        );
    }

    #[test]
    fn v2_settings_left_to_libcontainer_are_named() {
        let res = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().swappiness(10u64).build().unwrap())
            .build()
            .unwrap();
        assert!(v2_writes(Some(&res)).unwrap_err().contains("swappiness"));
        let mut res = LinuxResourcesBuilder::default().build().unwrap();
        res.set_unified(Some([("../cgroup.procs".to_owned(), "1".to_owned())].into()));
        assert!(v2_writes(Some(&res)).unwrap_err().contains("unified key"));
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(32 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(v2_writes(Some(&res)).unwrap_err().contains("below the limit"));
    }

    #[test]
    fn an_unlimited_pids_limit_is_written_as_max() {
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(find(&v1_writes(Some(&res)).unwrap(), "pids.max"), ["max"]);
    }

    #[test]
    fn settings_left_to_libcontainer_are_named() {
        let res = LinuxResourcesBuilder::default()
            .block_io(LinuxBlockIoBuilder::default().weight(100u16).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(v1_writes(Some(&res)).unwrap_err(), "linux.resources.blockIO");
        let res = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().swappiness(101u64).build().unwrap())
            .build()
            .unwrap();
        assert!(v1_writes(Some(&res)).unwrap_err().contains("swappiness 101"));
    }
}
