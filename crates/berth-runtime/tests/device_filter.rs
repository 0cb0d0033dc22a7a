//! The device filter enforced by the kernel: a program attached to a real
//! cgroup v2 directory decides what a process inside may open and make.
//! Runs on pure v2 hosts and on hybrid ones (the kernel asks the programs of
//! a task's v2 cgroup on every device access, whatever v1 says as well).

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::device_filter::{self, DeviceRules, cgroup_rule as rule};
use oci_spec::runtime::LinuxDeviceType;

/// The cgroup2 mount (/sys/fs/cgroup on v2, /sys/fs/cgroup/unified on a
/// hybrid host).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
    })
}

/// A cgroup of the test's own, removed at the end even when it fails.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs `script` with `sh` in `cgroup` (or where the test runs, for
/// `None`) and returns its output.
fn sh_in(cgroup: Option<&Path>, script: &str, dir: &Path) -> String {
    let join = match cgroup {
        Some(cg) => format!("echo 0 > {}/cgroup.procs || exit 99\n", cg.display()),
        None => String::new(),
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{join}cd {}\n{script}", dir.display()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line per check: "NAME ok" or "NAME denied".
const CHECKS: &str = r#"
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name ok"; else echo "$name denied"; fi; }
try mknod-char mknod zero c 1 5
[ -e zero ] || mknod zero c 1 5 2>/dev/null
try read-zero head -c 1 zero
try read-null head -c 1 /dev/null
try write-null sh -c 'echo x > /dev/null'
try read-random head -c 1 /dev/random
try write-random sh -c 'echo x > /dev/random'
try read-urandom head -c 1 /dev/urandom
try mknod-block mknod blk b 7 0
rm -f zero blk
"#;

#[test]
fn an_attached_filter_decides_what_processes_in_the_cgroup_may_open_and_make() {
    assert!(rustix::process::geteuid().is_root(), "run as root");
    let mount = cgroup2_mount().expect("a cgroup2 mount (the kernel's v2 hierarchy)");
    let tmp = tempfile::Builder::new()
        .prefix("berth-device-filter-test-")
        .tempdir()
        .unwrap();
    let cg = TestCgroup(mount.join(format!(
        "berth-test-device-filter-{}-{}",
        std::process::id(),
        tmp.path().file_name().unwrap().to_string_lossy()
    )));
    std::fs::create_dir(&cg.0).unwrap();

    let mut rules = vec![
        rule(false, LinuxDeviceType::A, None, None, "rwm"),
        rule(true, LinuxDeviceType::C, None, None, "m"),
        rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        rule(true, LinuxDeviceType::C, Some(1), Some(8), "r"),
    ];
    let reduced = DeviceRules::from_oci(&rules).unwrap();
    device_filter::attach(&cg.0, &reduced).unwrap();

    let outside = sh_in(None, CHECKS, tmp.path());
    let inside = sh_in(Some(&cg.0), CHECKS, tmp.path());
    let expect_outside = "mknod-char ok\nread-zero ok\nread-null ok\nwrite-null ok\nread-random ok\nwrite-random ok\nread-urandom ok\nmknod-block ok\n";
    assert_eq!(
        outside, expect_outside,
        "without the filter everything is allowed to root"
    );
    let expect_inside = "mknod-char ok\nread-zero denied\nread-null ok\nwrite-null ok\nread-random ok\nwrite-random denied\nread-urandom denied\nmknod-block denied\n";
    assert_eq!(inside, expect_inside, "rules {reduced:?}");

    // An allow-everything rule set (privileged) attaches a program that
    // denies nothing.
    let cg2 = TestCgroup(cg.0.with_extension("privileged"));
    std::fs::create_dir(&cg2.0).unwrap();
    rules.push(rule(true, LinuxDeviceType::A, None, None, "rwm"));
    let open = DeviceRules::from_oci(&rules).unwrap();
    assert!(open.allows_everything());
    device_filter::attach(&cg2.0, &open).unwrap();
    assert_eq!(sh_in(Some(&cg2.0), CHECKS, tmp.path()), expect_outside);
}

#[test]
fn attaching_to_a_missing_cgroup_names_it() {
    let reduced = DeviceRules::from_oci(&[rule(false, LinuxDeviceType::A, None, None, "rwm")]).unwrap();
    let e = device_filter::attach(Path::new("/sys/fs/cgroup/berth-no-such-cgroup"), &reduced).unwrap_err();
    assert!(e.to_string().contains("berth-no-such-cgroup"), "{e}");
}
