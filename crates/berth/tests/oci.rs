//! `berth oci`: the runc-compatible CLI on libcontainer, driven as a caller
//! drives runc. The lifecycle tests run against `berth oci` and against
//! Debian's runc with the same argv, which is what proves the CLI
//! compatible. Needs root (namespaces, cgroups).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

const RUNC: &str = "/usr/bin/runc";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "true", "sleep", "echo", "cat", "ps", "mknod", "head", "grep",
];

/// A runtime's argv prefix with its own state root.
struct Runtime {
    argv: Vec<String>,
    root: tempfile::TempDir,
}

impl Runtime {
    fn berth() -> Self {
        let root = tempdir("berth-test-root-");
        let argv = vec![
            env!("CARGO_BIN_EXE_berth").to_owned(),
            "oci".to_owned(),
            "--root".to_owned(),
            root.path().to_str().unwrap().to_owned(),
        ];
        Self { argv, root }
    }

    fn runc() -> Option<Self> {
        if !Path::new(RUNC).exists() {
            eprintln!("{RUNC} is not installed; skipping the runc half");
            return None;
        }
        let root = tempdir("berth-test-runc-root-");
        let argv = vec![
            RUNC.to_owned(),
            "--root".to_owned(),
            root.path().to_str().unwrap().to_owned(),
        ];
        Some(Self { argv, root })
    }

    /// Every runtime the lifecycle tests run against.
    fn all() -> Vec<Self> {
        let mut v = vec![Self::berth()];
        v.extend(Self::runc());
        v
    }

    fn name(&self) -> &str {
        if self.argv[0] == RUNC { "runc" } else { "berth oci" }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]).args(args).stdin(Stdio::null());
        c
    }

    /// Runs a verb to its exit. stdout and stderr go through files, not
    /// pipes: a created container inherits them, and a pipe would stay
    /// open (and `output()` wait) as long as the container lives.
    fn output(&self, args: &[&str]) -> Output {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = self
            .cmd(args)
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .expect("spawn runtime");
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    /// Runs a verb that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}): {}",
            self.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    fn wait_stopped(&self, id: &str) {
        self.wait_status(id, "stopped");
    }

    /// Polls `state` until the container has `status`. Bounded by a count,
    /// not a time: the assertion is about the state, never the duration.
    /// A missing container (not yet created) counts as not there yet.
    fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..1000 {
            let out = self.output(&["state", id]);
            if out.status.success() {
                let st: Value = serde_json::from_slice(&out.stdout).expect("state is JSON");
                if st["status"] == status {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{}: container {id} never reached {status}", self.name());
    }
}

fn read_all(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut buf = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut buf).unwrap();
    buf
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// A unique id; also the name of the container's cgroup.
fn unique_id(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "berth-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A busybox bundle in a temp dir running `args`.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new(args: &[&str], cgroups_path: Option<&str>) -> Self {
        let dir = tempdir("berth-test-bundle-");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let config = config_json(args, cgroups_path);
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

/// A minimal spec: mount, pid, ipc and uts namespaces (no network one).
fn config_json(args: &[&str], cgroups_path: Option<&str>) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
    });
    if let Some(p) = cgroups_path {
        linux["cgroupsPath"] = p.into();
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "GREETING=hello"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "berth-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": linux,
    })
}

/// A container that is deleted (--force) however the test ends, after
/// which no cgroup of its name may be left.
struct Container<'a> {
    rt: &'a Runtime,
    id: String,
    bundle: Bundle,
}

impl<'a> Container<'a> {
    /// A bundle running `args` with the cgroup `/<id>`.
    fn new(rt: &'a Runtime, tag: &str, args: &[&str]) -> Self {
        let id = unique_id(tag);
        let bundle = Bundle::new(args, Some(&format!("/{id}")));
        Self { rt, id, bundle }
    }

    fn create(&self) {
        self.rt.ok(&["create", "--bundle", self.bundle.path(), &self.id]);
    }

    fn create_and_start(&self) {
        self.create();
        self.rt.ok(&["start", &self.id]);
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.rt.output(&["delete", "--force", &self.id]);
        let left = cgroups_named(&self.id);
        if !std::thread::panicking() {
            assert!(
                left.is_empty(),
                "{}: cgroups left behind: {left:?}",
                self.rt.name()
            );
        }
    }
}

/// A pure cgroup v2 host: /sys/fs/cgroup is the unified hierarchy itself.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The mounted hierarchies: /sys/fs/cgroup on v2; on v1 (and hybrid) each
/// directory below it.
fn hierarchies() -> Vec<PathBuf> {
    if cgroup_v2() {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// The directory of cgroup `cg` (relative) where `controller`'s files are:
/// /sys/fs/cgroup/<controller>/<cg> on v1, /sys/fs/cgroup/<cg> on v2.
fn cgroup_dir(controller: &str, cg: &str) -> PathBuf {
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(cg)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(cg)
    }
}

fn read_cgroup(controller: &str, cg: &str, file: &str) -> String {
    let p = cgroup_dir(controller, cg).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_owned()
}

/// cpu.shares 512 as a v2 cpu.weight. Runtimes convert it two ways: the
/// linear 1 + (512 - 2) * 9999 / 262142 = 20 (runc before 1.3, berth's own
/// cgroup driver) and the quadratic one that maps 1024 to 100 (crun, runc
/// 1.3 and later, libcontainer 0.7, i.e. `berth oci`): 59.
fn assert_weight_of_512_shares(weight: &str) {
    assert!(
        weight == "20" || weight == "59",
        "cpu.weight {weight} for 512 shares"
    );
}

/// Directories <hierarchy>/<name>, in any hierarchy.
fn cgroups_named(name: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(name))
        .filter(|p| p.exists())
        .collect()
}

/// Every test ends with nothing under /sys/fs/cgroup/*/berth-test-<tag>-*
/// of this process (tests run in parallel: each checks its own tags).
fn assert_no_test_cgroups(tags: &[&str]) {
    for tag in tags {
        assert_no_cgroups_tagged(tag);
    }
}

fn assert_no_cgroups_tagged(tag: &str) {
    let prefix = format!("berth-test-{tag}-{}-", std::process::id());
    let mut left = Vec::new();
    for h in hierarchies() {
        for e in std::fs::read_dir(&h).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && e.path().is_dir() {
                left.push(e.path());
            }
        }
    }
    // Also the default /berth/<id> cgroups berth makes for specs without a path.
    for h in hierarchies() {
        for e in std::fs::read_dir(h.join("berth")).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                left.push(e.path());
            }
        }
    }
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn run_returns_exit_code_and_output() {
    for rt in Runtime::all() {
        {
            let c = Container::new(&rt, "run", &["sh", "-c", "echo out-$GREETING; exit 3"]);
            let out = rt.output(&["run", "--bundle", c.bundle.path(), &c.id]);
            assert_eq!(out.status.code(), Some(3), "{}: {out:?}", rt.name());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "out-hello\n",
                "{}",
                rt.name()
            );
            // Foreground run deletes the container when it exits.
            assert!(!rt.output(&["state", &c.id]).status.success(), "{}", rt.name());
        }
        assert_no_test_cgroups(&["run"]);
    }
}

#[test]
fn run_reports_killing_signal_as_128_plus() {
    for rt in Runtime::all() {
        {
            // Killed from outside: a pid-1 shell cannot SIGKILL itself.
            let c = Container::new(&rt, "sig", &["sleep", "1000"]);
            let err = tempfile::tempfile().unwrap();
            let mut child = rt
                .cmd(&["run", "--bundle", c.bundle.path(), &c.id])
                .stdout(Stdio::null())
                .stderr(err.try_clone().unwrap())
                .spawn()
                .unwrap();
            rt.wait_status(&c.id, "running");
            let killed = rt.output(&["kill", &c.id, "KILL"]);
            let status = child.wait().unwrap();
            let stderr = String::from_utf8(read_all(err)).unwrap();
            // Say how the container ended when it was gone before the kill
            // (seen once under heavy load; the run's own stderr tells why).
            assert!(
                killed.status.success(),
                "{}: kill failed: {}; the run ended {status}: {stderr}",
                rt.name(),
                String::from_utf8_lossy(&killed.stderr)
            );
            assert_eq!(status.code(), Some(128 + 9), "{}: {status}: {stderr}", rt.name());
        }
        assert_no_test_cgroups(&["sig"]);
    }
}

#[test]
fn create_start_kill_delete_lifecycle() {
    for rt in Runtime::all() {
        {
            let c = Container::new(&rt, "life", &["sleep", "1000"]);
            c.create();
            let st = rt.state(&c.id);
            assert_eq!(st["status"], "created", "{}: {st}", rt.name());
            assert_eq!(st["id"], c.id.as_str());
            let bundle = Path::new(c.bundle.path()).canonicalize().unwrap();
            assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{}", rt.name());
            assert_eq!(
                st["rootfs"],
                bundle.join("rootfs").to_str().unwrap(),
                "{}",
                rt.name()
            );
            assert!(st["created"].as_str().is_some_and(|s| s.contains('T')), "{st}");
            let pid = st["pid"].as_i64().unwrap();
            assert!(pid > 0);

            rt.ok(&["start", &c.id]);
            let st = rt.state(&c.id);
            assert_eq!(st["status"], "running", "{}: {st}", rt.name());
            assert_eq!(st["pid"].as_i64(), Some(pid));
            // `start` returns once the init was told to go; its execve of
            // the program may still be under way on a loaded machine.
            let mut comm = String::new();
            for _ in 0..500 {
                comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
                if comm.trim() == "sleep" {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert_eq!(comm.trim(), "sleep", "{}", rt.name());

            rt.ok(&["kill", &c.id, "KILL"]);
            rt.wait_stopped(&c.id);

            rt.ok(&["delete", &c.id]);
            let out = rt.output(&["state", &c.id]);
            assert!(
                !out.status.success(),
                "{}: state after delete succeeded",
                rt.name()
            );
            assert!(cgroups_named(&c.id).is_empty(), "{}", rt.name());
        }
        assert_no_test_cgroups(&["life"]);
    }
}

#[test]
fn kill_accepts_signal_names_and_numbers() {
    for rt in Runtime::all() {
        {
            // TERM is ignored by a pid-1 shell without a handler; the
            // trap makes it exit with a code we can tell apart.
            let c = Container::new(
                &rt,
                "term",
                &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            );
            c.create_and_start();
            // A SIGTERM before the trap is set would be dropped (the
            // kernel's rule for a namespace's init): wait for the handler.
            let pid = rt.state(&c.id)["pid"].as_i64().unwrap();
            for _ in 0..1000 {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let caught = status
                    .lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                    .unwrap_or(0);
                if caught & (1 << (libc::SIGTERM - 1)) != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            rt.ok(&["kill", &c.id, "SIGTERM"]);
            rt.wait_stopped(&c.id);
            rt.ok(&["delete", &c.id]);

            let c = Container::new(&rt, "num", &["sleep", "1000"]);
            c.create_and_start();
            rt.ok(&["kill", &c.id, "9"]);
            rt.wait_stopped(&c.id);
        }
        assert_no_test_cgroups(&["term", "num"]);
    }
}

#[test]
fn exec_returns_exec_exit_code() {
    for rt in Runtime::all() {
        {
            let c = Container::new(&rt, "exec", &["sleep", "1000"]);
            c.create_and_start();
            let out = rt.output(&["exec", &c.id, "sh", "-c", "echo in-$GREETING-$EXTRA; exit 7"]);
            assert_eq!(out.status.code(), Some(7), "{}: {out:?}", rt.name());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "in-hello-\n",
                "{}",
                rt.name()
            );

            let out = rt.output(&[
                "exec",
                "--env",
                "EXTRA=x",
                "--cwd",
                "/tmp",
                &c.id,
                "sh",
                "-c",
                "echo $EXTRA $(pwd)",
            ]);
            assert!(out.status.success(), "{}: {out:?}", rt.name());
            assert_eq!(String::from_utf8_lossy(&out.stdout), "x /tmp\n", "{}", rt.name());

            // The exec'd process is in the container's pid namespace.
            let out = rt.output(&["exec", &c.id, "sh", "-c", "echo $$"]);
            assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "", "{}", rt.name());
            assert_eq!(rt.state(&c.id)["status"], "running");
        }
        assert_no_test_cgroups(&["exec"]);
    }
}

#[test]
fn ps_json_lists_init_pid() {
    for rt in Runtime::all() {
        {
            let c = Container::new(&rt, "ps", &["sleep", "1000"]);
            c.create_and_start();
            let pid = rt.state(&c.id)["pid"].as_i64().unwrap();
            let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &c.id])).unwrap();
            assert_eq!(pids, vec![pid], "{}", rt.name());
        }
        assert_no_test_cgroups(&["ps"]);
    }
}

#[test]
fn update_pids_limit_reaches_cgroup() {
    for rt in Runtime::all() {
        {
            let c = Container::new(&rt, "upd", &["sleep", "1000"]);
            c.create_and_start();
            rt.ok(&["update", "--pids-limit", "42", &c.id]);
            assert_eq!(read_cgroup("pids", &c.id, "pids.max"), "42", "{}", rt.name());
        }
        assert_no_test_cgroups(&["upd"]);
    }
}

#[test]
fn update_resources_from_stdin() {
    let rt = Runtime::berth();
    {
        let c = Container::new(&rt, "updr", &["sleep", "1000"]);
        c.create_and_start();
        let mut child = rt
            .cmd(&["update", "--resources", "-", &c.id])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"pids":{"limit":17},"cpu":{"shares":512}}"#)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(read_cgroup("pids", &c.id, "pids.max"), "17");
        if cgroup_v2() {
            assert_weight_of_512_shares(&read_cgroup("cpu", &c.id, "cpu.weight"));
        } else {
            assert_eq!(read_cgroup("cpu", &c.id, "cpu.shares"), "512");
        }
    }
    assert_no_test_cgroups(&["updr"]);
}

#[test]
fn delete_missing_fails_naming_it_unless_forced() {
    let rt = Runtime::berth();
    let id = unique_id("missing");
    let out = rt.output(&["delete", &id]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("berth oci: "), "{err}");
    assert!(err.contains(&id), "{err}");
    rt.ok(&["delete", "--force", &id]);
    if let Some(runc) = Runtime::runc() {
        assert!(!runc.output(&["delete", &id]).status.success());
        runc.ok(&["delete", "--force", &id]);
    }
}

#[test]
fn errors_go_to_log_file_as_json() {
    let rt = Runtime::berth();
    let id = unique_id("log");
    let log = rt.root.path().join("log.json");
    let out = rt.output(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        &id,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains(&id), "{last}");
    assert!(last["time"].is_string());
}

#[test]
fn spec_without_cgroups_path_gets_berth_cgroup() {
    let rt = Runtime::berth();
    let id = unique_id("nocg");
    {
        let bundle = Bundle::new(&["sleep", "1000"], None);
        let c = Container {
            rt: &rt,
            id: id.clone(),
            bundle,
        };
        c.create_and_start();
        let max = cgroup_dir("pids", &format!("berth/{id}"));
        assert!(max.is_dir(), "{} missing", max.display());
        let st = rt.state(&id);
        let bundle = Path::new(c.bundle.path()).canonicalize().unwrap();
        assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{st}");
        // exec joins the same cgroup.
        let out = rt.output(&["exec", &id, "cat", "/proc/self/cgroup"]);
        let cg = String::from_utf8_lossy(&out.stdout);
        let line = if cgroup_v2() {
            format!("0::/berth/{id}")
        } else {
            format!(":pids:/berth/{id}")
        };
        assert!(cg.contains(&line), "{cg}");
        rt.ok(&["delete", "--force", &id]);
        assert!(!max.exists());
        assert!(!rt.root.path().join("@bundles").join(&id).exists());
    }
    assert_no_test_cgroups(&["nocg"]);
    // The default parent is left empty by this test: remove it where no
    // other container (another test's, or a real berth's) is in it.
    for h in hierarchies() {
        let _ = std::fs::remove_dir(h.join("berth"));
    }
}

#[test]
fn create_twice_fails_and_keeps_first() {
    let rt = Runtime::berth();
    {
        let c = Container::new(&rt, "twice", &["sleep", "1000"]);
        c.create();
        let out = rt.output(&["create", "--bundle", c.bundle.path(), &c.id]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
        assert_eq!(rt.state(&c.id)["status"], "created");
    }
    assert_no_test_cgroups(&["twice"]);
}

#[test]
fn pid_file_holds_init_pid() {
    for rt in Runtime::all() {
        {
            let c = Container::new(&rt, "pidf", &["sleep", "1000"]);
            let pid_file = c.bundle.dir.path().join("pid");
            rt.ok(&[
                "create",
                "--pid-file",
                pid_file.to_str().unwrap(),
                "--bundle",
                c.bundle.path(),
                &c.id,
            ]);
            let written: i64 = std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert_eq!(Some(written), rt.state(&c.id)["pid"].as_i64(), "{}", rt.name());
        }
        assert_no_test_cgroups(&["pidf"]);
    }
}

#[test]
fn features_is_a_features_document() {
    let rt = Runtime::berth();
    let doc: Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(doc["ociVersionMin"], "1.0.0");
    let ns = doc["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.iter().any(|n| n == "pid"));
    assert_eq!(doc["linux"]["cgroup"]["v1"], true);
}

/// A bundle of [`Container::new`] with `edit` applied to its config.
fn container_with<'a>(
    rt: &'a Runtime,
    tag: &str,
    args: &[&str],
    edit: impl FnOnce(&mut Value),
) -> Container<'a> {
    let c = Container::new(rt, tag, args);
    let path = c.bundle.dir.path().join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    c
}

/// What berth's own create path sets up (cgroup limits, device rules, the
/// rlimits and the device access the container sees) matches runc.
#[test]
fn limits_device_rules_and_rlimits_reach_the_container() {
    for rt in Runtime::all() {
        {
            let c = container_with(
                &rt,
                "lim",
                &[
                    "sh",
                    "-c",
                    "echo ok > /dev/null && grep 'open files' /proc/self/limits; sleep 1000",
                ],
                |cfg| {
                    cfg["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
                    cfg["linux"]["resources"]["cpu"] =
                        json!({"shares": 512, "quota": 50000, "period": 100000});
                    cfg["linux"]["resources"]["pids"] = json!({"limit": 99});
                    cfg["process"]["rlimits"] =
                        json!([{"type": "RLIMIT_NOFILE", "hard": 1234, "soft": 1000}]);
                },
            );
            let log = c.bundle.dir.path().join("out");
            let out = std::fs::File::create(&log).unwrap();
            let status = rt
                .cmd(&["create", "--bundle", c.bundle.path(), &c.id])
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "{}: {}",
                rt.name(),
                std::fs::read_to_string(&log).unwrap()
            );
            let read = |controller: &str, file: &str| read_cgroup(controller, &c.id, file);
            let name = rt.name();
            if cgroup_v2() {
                assert_eq!(read("memory", "memory.max"), "67108864", "{name}");
                assert_weight_of_512_shares(&read("cpu", "cpu.weight"));
                assert_eq!(read("cpu", "cpu.max"), "50000 100000", "{name}");
                // device rules are a BPF program on v2: the device tests check them
            } else {
                assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864", "{name}");
                assert_eq!(read("cpu", "cpu.shares"), "512", "{name}");
                assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000", "{name}");
                let devices = read("devices", "devices.list");
                assert!(devices.lines().any(|l| l == "c 1:3 rwm"), "{name}: {devices}");
                assert!(!devices.lines().any(|l| l.starts_with("a ")), "{name}: {devices}");
            }
            assert_eq!(read("pids", "pids.max"), "99", "{name}");
            let pid = rt.state(&c.id)["pid"].as_i64().unwrap();
            let procs = read("memory", "cgroup.procs");
            assert!(
                procs.lines().any(|p| p == pid.to_string()),
                "{name}: init {pid} not in {procs}"
            );
            rt.ok(&["start", &c.id]);
            // The shell writes its line before sleeping; poll the file.
            let mut text = String::new();
            for _ in 0..500 {
                text = std::fs::read_to_string(&log).unwrap();
                if text.contains("open files") {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let limits: Vec<&str> = text.split_whitespace().collect();
            assert!(limits.windows(2).any(|w| w == ["1000", "1234"]), "{name}: {text}");
        }
        assert_no_test_cgroups(&["lim"]);
    }
}

/// A create that fails inside the container's init reports why, naming the
/// program, and leaves neither state nor cgroup behind.
#[test]
fn a_missing_program_fails_create_naming_it_and_leaves_nothing() {
    for rt in Runtime::all() {
        {
            let c = Container::new(&rt, "nope", &["/bin/no-such-program"]);
            let out = rt.output(&["create", "--bundle", c.bundle.path(), &c.id]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{}", rt.name());
            assert!(err.contains("no-such-program"), "{}: {err}", rt.name());
            assert!(!rt.root.path().join(&c.id).exists(), "{}: state left", rt.name());
            assert!(
                cgroups_named(&c.id).is_empty(),
                "{}: {:?}",
                rt.name(),
                cgroups_named(&c.id)
            );
        }
        assert_no_test_cgroups(&["nope"]);
    }
}

/// Hooks are libcontainer's to run: such a config takes its create path,
/// and the hook runs; a plain config takes berth's own.
#[test]
fn a_config_with_hooks_takes_libcontainers_path() {
    let rt = Runtime::berth();
    {
        let marker = rt.root.path().join("hooked");
        let c = container_with(&rt, "hook", &["true"], |cfg| {
            cfg["hooks"] = json!({"createRuntime": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("echo hooked > {}", marker.display())],
            }]});
        });
        let log = rt.root.path().join("hook.log");
        let logged = |c: &Container| {
            let _ = std::fs::remove_file(&log);
            rt.ok(&[
                "--log",
                log.to_str().unwrap(),
                "--debug",
                "run",
                "--bundle",
                c.bundle.path(),
                &c.id,
            ]);
            std::fs::read_to_string(&log).unwrap_or_default()
        };
        let text = logged(&c);
        assert!(
            text.contains("created through libcontainer") && text.contains("hooks"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "hooked\n");

        let plain = Container::new(&rt, "hook", &["true"]);
        let text = logged(&plain);
        // berth's own path, on cgroup v1 and v2 alike.
        assert!(!text.contains("created through libcontainer"), "{text}");
    }
    assert_no_test_cgroups(&["hook"]);
}

/// A loop device over a file that starts with [`LOOP_MAGIC`], detached
/// however the test ends: a block device a container can make a node of
/// but must not open. (This machine's own disk is closed even to the host's
/// root, so it would prove nothing here.)
struct LoopDevice {
    dev: String,
    major: u32,
    minor: u32,
    _file: tempfile::NamedTempFile,
}

const LOOP_MAGIC: &str = "berth-loop-device";

impl LoopDevice {
    fn new() -> LoopDevice {
        use std::io::Write;
        let mut file = tempfile::Builder::new()
            .prefix("berth-test-loop-backing-")
            .tempfile()
            .unwrap();
        file.write_all(LOOP_MAGIC.as_bytes()).unwrap();
        file.as_file().set_len(1 << 20).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let rdev = std::os::unix::fs::MetadataExt::rdev(&std::fs::metadata(&dev).unwrap());
        LoopDevice {
            dev,
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            _file: file,
        }
    }

    /// Makes a node of the device and reads its first bytes; prints
    /// "mknod ok|denied" and "read <bytes>|denied" (only EPERM from the
    /// device rules is a denial).
    fn probe(&self) -> String {
        let (major, minor, n) = (self.major, self.minor, LOOP_MAGIC.len());
        format!(
            "if mknod /tmp/disk b {major} {minor}; then echo mknod ok; else echo mknod denied; fi; \
             if head -c {n} /tmp/disk > /tmp/out 2> /tmp/err; then echo \"read $(cat /tmp/out)\"; \
             elif grep -q 'not permitted' /tmp/err; then echo read denied; else echo \"read error $(cat /tmp/err)\"; fi"
        )
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

const DENIED: &str = "mknod ok\nread denied\n";
const OPENED: &str = "mknod ok\nread berth-loop-device\n";

fn with_mknod(cfg: &mut Value) {
    for set in ["bounding", "effective", "permitted"] {
        cfg["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push("CAP_MKNOD".into());
    }
}

/// The escape of the device rules: a container that may mknod may not
/// open the node it made — on berth's own create path, on libcontainer's
/// (taken for a config with hooks) and under runc, on cgroup v1 and v2.
/// A privileged container's rules ("a *:* rwm") open it.
#[test]
fn a_default_container_can_make_a_block_device_node_but_never_open_it() {
    let hook = json!({"createRuntime": [{"path": "/bin/true"}]});
    let disk = LoopDevice::new();
    for rt in Runtime::all() {
        for (how, hooks, privileged, want) in [
            ("own path", false, false, DENIED),
            ("libcontainer path", true, false, DENIED),
            ("privileged", false, true, OPENED),
        ] {
            if hooks && rt.name() == "runc" {
                continue;
            }
            let name = format!("{} ({how})", rt.name());
            {
                let c = container_with(&rt, "dev", &["sh", "-c", &disk.probe()], |cfg| {
                    with_mknod(cfg);
                    if hooks {
                        cfg["hooks"] = hook.clone();
                    }
                    if privileged {
                        cfg["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
                    }
                });
                let out = rt.ok(&["run", "--bundle", c.bundle.path(), &c.id]);
                assert_eq!(out, want, "{name}");
            }
            assert_no_test_cgroups(&["dev"]);
        }
    }
}

/// A seccomp filter that fails bpf(2) with EPERM: a kernel that cannot
/// load or attach device programs.
fn deny_bpf() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0), // seccomp_data.nr
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_bpf as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Fail closed: on a host that offers no way to enforce device rules, no
/// container that is not privileged is made. On cgroup v1 the runtime runs
/// in a mount namespace where the devices hierarchy is unmounted; on v2 it
/// runs under a seccomp filter that fails bpf(2).
#[test]
fn a_host_that_cannot_enforce_device_rules_gets_no_unprivileged_container() {
    use std::os::unix::process::CommandExt;
    let rt = Runtime::berth();
    let disk = LoopDevice::new();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let filter = deny_bpf();
    let spawn = |c: &Container| {
        let mut cmd = rt.cmd(&["run", "--bundle", c.bundle.path(), &c.id]);
        // The closure must be Send: carry the filter's address as a number.
        let (len, addr) = (filter.len() as u16, filter.as_ptr() as usize);
        // SAFETY: only async-signal-safe syscalls between fork and exec;
        // `prog` and the filter it points to outlive the spawn.
        unsafe {
            cmd.pre_exec(move || {
                let r = if v2 {
                    let prog = libc::sock_fprog {
                        len,
                        filter: addr as *mut libc::sock_filter,
                    };
                    libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _)
                } else {
                    let mut r = libc::unshare(libc::CLONE_NEWNS);
                    if r == 0 {
                        r = libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        );
                    }
                    if r == 0 {
                        r = libc::umount2(c"/sys/fs/cgroup/devices".as_ptr(), libc::MNT_DETACH);
                    }
                    r
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd.output().unwrap()
    };
    {
        let c = container_with(&rt, "closed", &["sh", "-c", &disk.probe()], with_mknod);
        let out = spawn(&c);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "created: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            err.contains(&c.id) && err.contains("device rules cannot be enforced"),
            "{err}"
        );
        assert!(!rt.root.path().join(&c.id).exists(), "state left");
        assert!(cgroups_named(&c.id).is_empty(), "{:?}", cgroups_named(&c.id));

        let c = container_with(&rt, "closed", &["sh", "-c", &disk.probe()], |cfg| {
            with_mknod(cfg);
            cfg["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        });
        let out = spawn(&c);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), OPENED);
    }
    assert_no_test_cgroups(&["closed"]);
}

/// The start offset of each whitespace-separated cell of a table line.
fn cell_starts(line: &str) -> Vec<usize> {
    let b = line.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] != b' ' && (i == 0 || b[i - 1] == b' '))
        .collect()
}

#[test]
fn list_shows_what_runc_list_shows() {
    let mut empty = Vec::new();
    for rt in Runtime::all() {
        // No container yet (and a root that does not exist): a header, `null`.
        let missing = rt.root.path().join("missing");
        let missing = missing.to_str().unwrap();
        let mut argv = rt.argv.clone();
        argv[rt.argv.len() - 1] = missing.to_owned();
        let table = Command::new(&argv[0])
            .args(&argv[1..])
            .arg("list")
            .output()
            .unwrap();
        assert!(table.status.success(), "{}", rt.name());
        empty.push((
            String::from_utf8(table.stdout).unwrap(),
            rt.ok(&["list", "-f", "json"]),
            rt.ok(&["list", "-q"]),
        ));

        let created = Container::new(&rt, "list", &["sleep", "1000"]);
        created.create();
        let running = Container::new(&rt, "list", &["sleep", "1000"]);
        running.create_and_start();
        let stopped = Container::new(&rt, "list", &["true"]);
        stopped.create_and_start();
        rt.wait_stopped(&stopped.id);

        let json: Value = serde_json::from_str(&rt.ok(&["list", "-f", "json"])).unwrap();
        let list = json.as_array().unwrap();
        let mut ids = vec![&created.id, &running.id, &stopped.id];
        ids.sort();
        let listed: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(listed, ids, "{}: {json}", rt.name());
        for (c, status) in [
            (&created, "created"),
            (&running, "running"),
            (&stopped, "stopped"),
        ] {
            let e = list.iter().find(|e| e["id"] == c.id.as_str()).unwrap();
            let st = rt.state(&c.id);
            assert_eq!(e["status"], status, "{}: {e}", rt.name());
            let pid = if status == "stopped" {
                json!(0)
            } else {
                st["pid"].clone()
            };
            assert_eq!(e["pid"], pid, "{}: {e}", rt.name());
            for field in ["ociVersion", "bundle", "rootfs"] {
                assert_eq!(e[field], st[field], "{}: {field}", rt.name());
            }
            assert_eq!(e["owner"], "root", "{}", rt.name());
            let t = e["created"].as_str().unwrap();
            assert!(
                t.contains('T') && t.ends_with('Z') && !t.ends_with("0Z"),
                "{}: {t}",
                rt.name()
            );
            let mut keys: Vec<&String> = e.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "bundle",
                    "created",
                    "id",
                    "ociVersion",
                    "owner",
                    "pid",
                    "rootfs",
                    "status"
                ],
                "{}",
                rt.name()
            );
        }

        // The table holds the same, aligned under its header.
        let table = rt.ok(&["list"]);
        let mut lines = table.lines();
        let header = lines.next().unwrap();
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>(),
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        );
        for (line, e) in lines.zip(list) {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let want = ["id", "pid", "status", "bundle", "created", "owner"].map(|k| {
                e[k].as_str()
                    .map(String::from)
                    .unwrap_or_else(|| e[k].to_string())
            });
            assert_eq!(cells, want, "{}: {table}", rt.name());
            assert_eq!(cell_starts(line), cell_starts(header), "{}: {table}", rt.name());
            assert!(!line.ends_with(' '), "{}: {table:?}", rt.name());
        }
        assert_eq!(
            rt.ok(&["list", "-q"]).lines().collect::<Vec<_>>(),
            ids,
            "{}",
            rt.name()
        );
        assert_eq!(
            rt.ok(&["list", "-q", "-f", "json"]).lines().collect::<Vec<_>>(),
            ids
        );
    }
    // Byte for byte the same where nothing differs between the runtimes.
    if empty.len() == 2 {
        assert_eq!(empty[0], empty[1]);
    }
    assert_eq!(
        empty[0].0,
        "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
    );
    assert_eq!(empty[0].1, "null\n");
    assert_no_test_cgroups(&["list"]);
}
