//! The cgroupfs driver against the real kernel (needs root). On this
//! machine /sys/fs/cgroup is v1; its cgroup2 mount at /sys/fs/cgroup/unified
//! (hugetlb only) exercises the v2 code path for create, kill and remove.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_runtime::cgroup::{CgroupVersion, Cgroups};
use berth_runtime::model::Resources;

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("/{prefix}-{}-{nanos:x}", std::process::id())
}

/// Removes the test's cgroup tree and kills its process even when an
/// assertion failed halfway.
struct Guard {
    cg: Cgroups,
    top: String,
    child: Option<Child>,
    restore: Option<(PathBuf, String)>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.remove(&self.top);
        if let Some((file, before)) = &self.restore {
            let now = fs::read_to_string(file).unwrap_or_default();
            for c in now.split_whitespace() {
                if !before.split_whitespace().any(|b| b == c) {
                    let _ = fs::write(file, format!("-{c}"));
                }
            }
        }
    }
}

/// A shell that waits for a line on stdin, burns a little CPU, then
/// becomes `sleep`: everything it does after the line is charged to the
/// cgroup it was moved into meanwhile.
fn spawn_waiting_sleeper() -> Child {
    Command::new("sh")
        .args([
            "-c",
            "read x; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; exec sleep 1000",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap()
}

fn release_and_wait_for_sleep(child: &mut Child) {
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let comm = format!("/proc/{}/comm", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
        assert!(Instant::now() < deadline, "child never exec'd sleep");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap().trim().to_owned()
}

#[test]
fn host_cgroups_create_limit_stat_and_remove() {
    let cg = Cgroups::detect().unwrap();
    let top = unique("berth-test");
    let pod = format!("{top}/pod");
    let ctr = format!("{pod}/ctr");
    let mut g = Guard {
        cg: cg.clone(),
        top: top.clone(),
        child: None,
        restore: None,
    };
    cg.create(&ctr).unwrap();
    assert!(cg.exists(&ctr));
    let dirs = cg.dirs(&ctr).unwrap();
    assert!(!dirs.is_empty());
    assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}");

    let limits = Resources {
        memory_limit: 64 << 20,
        pids_limit: 50,
        cpu_shares: 512,
        ..Resources::default()
    };
    cg.apply(&pod, &limits).unwrap();
    cg.apply(&ctr, &limits).unwrap();
    let pod_dirs = cg.dirs(&pod).unwrap();
    let with_file = |name: &str| {
        pod_dirs
            .iter()
            .find(|d| d.join(name).exists())
            .unwrap_or_else(|| panic!("no hierarchy has {name}"))
    };
    match cg.version() {
        CgroupVersion::V1 => {
            assert_eq!(
                read(with_file("memory.limit_in_bytes"), "memory.limit_in_bytes"),
                "67108864"
            );
            assert_eq!(read(with_file("cpu.shares"), "cpu.shares"), "512");
        }
        CgroupVersion::V2 => {
            assert_eq!(read(with_file("memory.max"), "memory.max"), "67108864");
            assert_eq!(read(with_file("cpu.weight"), "cpu.weight"), "20");
        }
    }
    assert_eq!(read(with_file("pids.max"), "pids.max"), "50");

    g.child = Some(spawn_waiting_sleeper());
    let child = g.child.as_mut().unwrap();
    let pid = child.id();
    cg.add_proc(&ctr, pid).unwrap();
    release_and_wait_for_sleep(child);
    assert_eq!(cg.procs(&ctr), [pid]);
    assert!(cg.procs(&pod).is_empty());

    let s = cg.stats(&ctr).unwrap();
    assert_eq!(s.pids_current, 1, "{s:?}");
    assert_eq!(s.pids_limit, Some(50));
    assert_eq!(s.memory_limit, Some(64 << 20));
    assert!(s.memory_usage > 0, "{s:?}");
    assert!(s.memory_working_set <= s.memory_usage);
    assert!(s.cpu_usage_ns > 0, "{s:?}");
    assert!(s.timestamp_ns > 0);
    assert_eq!(s.oom_kills, 0);
    assert_eq!(cg.oom_kill_files(&ctr).len(), 1);
    assert!(cg.oom_kill_files(&ctr)[0].exists());
    // The pod's usage includes its container's. The two reads are moments
    // apart and a sleeping process's charge still moves a little (the
    // kernel's per-CPU stock is flushed lazily): read the container again
    // right after the pod and compare with the smaller of its two figures.
    let pod_usage = cg.stats(&pod).unwrap().memory_usage;
    let again = cg.stats(&ctr).unwrap().memory_usage;
    assert!(
        pod_usage >= s.memory_usage.min(again),
        "pod {pod_usage} < container {} / {again}",
        s.memory_usage
    );

    let all_dirs = cg.dirs(&top).unwrap();
    cg.remove(&top).unwrap();
    let status = g.child.take().unwrap().wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    for d in &all_dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(!cg.exists(&top));
    cg.remove(&top).unwrap();
    assert!(cg.stats(&top).is_err());
}

#[test]
fn remove_of_a_missing_cgroup_is_ok() {
    let cg = Cgroups::detect().unwrap();
    cg.remove(&unique("berth-test-missing")).unwrap();
    assert!(cg.remove("/").is_err());
    assert!(cg.create("relative/path").is_err());
}

fn is_cgroup2(dir: &Path) -> bool {
    rustix::fs::statfs(dir)
        .map(|s| s.f_type as u32 == libc::CGROUP2_SUPER_MAGIC as u32)
        .unwrap_or(false)
}

/// The v2 path for real: create enables controllers, cgroup.kill kills,
/// remove leaves nothing. On a pure v2 host this is /sys/fs/cgroup itself
/// and the first test already covers it.
#[test]
fn unified_hierarchy_create_kill_and_remove() {
    let root = Path::new("/sys/fs/cgroup/unified");
    if !is_cgroup2(root) {
        eprintln!(
            "no hybrid cgroup2 mount at {}; covered by the host test",
            root.display()
        );
        return;
    }
    let cg = Cgroups::with_root(CgroupVersion::V2, root);
    let top = unique("berth-test-v2");
    let ctr = format!("{top}/pod/ctr");
    let control = root.join("cgroup.subtree_control");
    let mut g = Guard {
        cg: cg.clone(),
        top: top.clone(),
        child: None,
        restore: Some((control.clone(), fs::read_to_string(&control).unwrap())),
    };
    cg.create(&ctr).unwrap();
    let available = fs::read_to_string(root.join("cgroup.controllers")).unwrap();
    let pod_dir = root.join(&top[1..]).join("pod");
    let enabled = fs::read_to_string(pod_dir.join("cgroup.subtree_control")).unwrap();
    for c in available.split_whitespace() {
        assert!(
            enabled.split_whitespace().any(|e| e == c),
            "{c} not enabled in {enabled:?}"
        );
    }

    g.child = Some(spawn_waiting_sleeper());
    let child = g.child.as_mut().unwrap();
    let pid = child.id();
    cg.add_proc(&ctr, pid).unwrap();
    release_and_wait_for_sleep(child);
    assert_eq!(cg.procs(&ctr), [pid]);
    let s = cg.stats(&ctr).unwrap();
    assert!(s.cpu_usage_ns > 0, "{s:?}");

    cg.remove(&top).unwrap();
    let status = g.child.take().unwrap().wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(!root.join(&top[1..]).exists());
}
