//! The monitor against a real runc-compatible runtime (root needed).
//!
//! The monitor executable is the `monitor` example of this crate, found next
//! to this test binary as `target/<profile>/examples/monitor` (`cargo test`
//! builds it; with `--test monitor` the first test builds it).
//! The runtime's argv comes from `BERTH_TEST_RUNTIME` (whitespace separated,
//! default `/usr/bin/runc`); every test adds its own `--root`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_runtime::logs::{LogOptions, Stream, copy_log, parse_line};
use berth_runtime::monitor::{
    AttachClient, AttachFrame, ExitRecord, MonitorConfig, MonitorError, Started, read_exit, spawn,
};

const HELPER_ENV: &str = "BERTH_TEST_SPAWN_HELPER_DIR";
/// Upper bound for anything the tests wait for; reaching it is a failure.
const PATIENCE: Duration = Duration::from_secs(30);

fn monitor_exe() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap();
            let path = profile_dir.join("examples/monitor");
            if !path.exists() {
                // `cargo test --test monitor` builds no examples.
                let mut cargo = Command::new(env!("CARGO"));
                cargo.args(["build", "--example", "monitor", "--manifest-path"]);
                cargo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
                if profile_dir.ends_with("release") {
                    cargo.arg("--release");
                }
                let status = cargo.status().unwrap();
                assert!(status.success() && path.exists(), "building {}", path.display());
            }
            path
        })
        .clone()
}

fn runtime_argv(root: &Path) -> Vec<String> {
    let base = std::env::var("BERTH_TEST_RUNTIME").unwrap_or_else(|_| "/usr/bin/runc".into());
    let mut argv: Vec<String> = base.split_whitespace().map(String::from).collect();
    argv.push("--root".into());
    argv.push(root.to_str().unwrap().into());
    argv
}

fn unique_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "berth-test-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A container with its bundle, monitor directory and runtime root in one
/// temporary directory; dropping it deletes the container and checks that
/// the monitor and the cgroup are gone.
struct Container {
    tmp: tempfile::TempDir,
    cfg: MonitorConfig,
    cgroup: String,
    monitor_pid: Option<u32>,
}

struct Opts<'a> {
    args: &'a [&'a str],
    tty: bool,
    stdin: bool,
    stdin_once: bool,
}

impl<'a> Opts<'a> {
    fn new(args: &'a [&'a str]) -> Self {
        Opts {
            args,
            tty: false,
            stdin: false,
            stdin_once: false,
        }
    }
}

impl Container {
    fn new(opts: Opts<'_>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let id = unique_id();
        let cgroup = format!("/{id}");
        let base = tmp.path();
        write_bundle(&base.join("bundle"), &opts, &cgroup);
        std::fs::create_dir(base.join("monitor")).unwrap();
        let cfg = MonitorConfig {
            id,
            bundle: base.join("bundle"),
            runtime: runtime_argv(&base.join("runtime-root")),
            log_path: base.join("container.log"),
            exit_file: base.join("exit.json"),
            socket: base.join("attach.sock"),
            pid_file: base.join("container.pid"),
            tty: opts.tty,
            stdin: opts.stdin,
            stdin_once: opts.stdin_once,
            // Where the kernel counts OOM kills: memory.events on v2,
            // memory.oom_control in the memory hierarchy on v1.
            oom_files: vec![if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                Path::new("/sys/fs/cgroup")
                    .join(cgroup.trim_start_matches('/'))
                    .join("memory.events")
            } else {
                Path::new("/sys/fs/cgroup/memory")
                    .join(cgroup.trim_start_matches('/'))
                    .join("memory.oom_control")
            }],
            restore: None,
        };
        Container {
            tmp,
            cfg,
            cgroup,
            monitor_pid: None,
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("monitor")
    }

    fn spawn(&mut self) -> Result<Started, MonitorError> {
        let started = spawn(&monitor_exe(), &["monitor"], &self.dir(), &self.cfg);
        if let Ok(s) = &started {
            self.monitor_pid = Some(s.monitor_pid);
        }
        started
    }

    fn runtime(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.cfg.runtime[0])
            .args(&self.cfg.runtime[1..])
            .args(args)
            .output()
            .unwrap()
    }

    fn start(&self) {
        let out = self.runtime(&["start", &self.cfg.id]);
        assert!(out.status.success(), "runtime start: {out:?}");
    }

    fn wait_exit(&self) -> ExitRecord {
        let mut rec = None;
        wait_for("the exit record", || {
            rec = read_exit(&self.cfg.exit_file).unwrap();
            rec.is_some()
        });
        rec.unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.cfg.log_path).unwrap_or_default()
    }

    fn records(&self) -> Vec<(Stream, bool, String)> {
        self.log_text()
            .lines()
            .map(|l| {
                let r = parse_line(l).unwrap();
                (r.stream, r.partial, r.text)
            })
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.runtime(&["delete", "--force", &self.cfg.id]);
        if let Some(pid) = self.monitor_pid {
            let until = Instant::now() + PATIENCE;
            while process_alive(pid) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !std::thread::panicking() {
                assert!(!process_alive(pid), "monitor {pid} still runs");
                assert!(!self.cfg.socket.exists(), "attach socket left behind");
            }
        }
        // Every v1 hierarchy, and /sys/fs/cgroup itself (the one v2 hierarchy).
        let left: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .filter_map(|e| Some(e.ok()?.path()))
            .chain([PathBuf::from("/sys/fs/cgroup")])
            .map(|h| h.join(self.cgroup.trim_start_matches('/')))
            .filter(|p| p.exists())
            .collect();
        for p in &left {
            let _ = std::fs::remove_dir(p);
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "cgroups left behind: {left:?}");
        }
    }
}

/// Running, and not a zombie waiting for a parent that does not reap.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

fn parent_pid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(") ")
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn write_bundle(bundle: &Path, opts: &Opts<'_>, cgroup: &str) {
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for tool in [
        "sh", "cat", "echo", "stty", "sleep", "head", "tr", "printf", "true",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.tty,
            "user": {"uid": 0, "gid": 0},
            "args": opts.args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "monitor-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "cgroupsPath": cgroup
        }
    });
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

fn connect(c: &Container) -> AttachClient {
    let client = AttachClient::connect(&c.cfg.socket).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client
}

/// Reads frames until `done` says the collected output suffices.
fn read_until(client: &mut AttachClient, what: &str, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut seen = Vec::new();
    while !done(&seen) {
        match client.recv().unwrap() {
            Some(AttachFrame::Stdout(d)) | Some(AttachFrame::Stderr(d)) => seen.extend(d),
            other => panic!(
                "waiting for {what}, got {other:?} after {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    seen
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn output_streams_and_exit_code_are_recorded() {
    let mut c = Container::new(Opts::new(&["sh", "-c", "echo out; echo err >&2; exit 3"]));
    let started = c.spawn().unwrap();
    assert!(started.container_pid > 0);
    assert!(read_exit(&c.cfg.exit_file).unwrap().is_none());
    c.start();
    let rec = c.wait_exit();
    assert_eq!((rec.code, rec.signal, rec.oom_killed), (3, None, false));
    assert_eq!(
        c.records(),
        [
            (Stream::Stdout, false, "out".to_string()),
            (Stream::Stderr, false, "err".to_string())
        ]
    );
}

#[test]
fn long_line_becomes_partial_records_and_copy_log_rejoins_it() {
    let script = "x=$(head -c 40960 /dev/zero | tr '\\000' x); echo \"$x\"";
    let mut c = Container::new(Opts::new(&["sh", "-c", script]));
    c.spawn().unwrap();
    c.start();
    assert_eq!(c.wait_exit().code, 0);
    let shape: Vec<(Stream, bool, usize)> =
        c.records().into_iter().map(|(s, p, t)| (s, p, t.len())).collect();
    assert_eq!(
        shape,
        [
            (Stream::Stdout, true, 16384),
            (Stream::Stdout, true, 16384),
            (Stream::Stdout, false, 8192)
        ]
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    copy_log(
        &c.cfg.log_path,
        &mut out,
        &mut err,
        &LogOptions::default(),
        &|| true,
    )
    .unwrap();
    assert_eq!(out, format!("{}\n", "x".repeat(40960)).into_bytes());
    assert!(err.is_empty());
}

#[test]
fn stdin_through_attach_is_echoed_to_attach_and_log() {
    let mut opts = Opts::new(&["cat"]);
    opts.stdin = true;
    let mut c = Container::new(opts);
    c.spawn().unwrap();
    let mut client = connect(&c);
    let mut writer = client.try_clone().unwrap();
    c.start();
    writer.send_stdin(b"hello monitor\n").unwrap();
    read_until(&mut client, "the echo", |s| contains(s, "hello monitor\n"));
    writer.close_stdin().unwrap();
    assert_eq!(client.recv().unwrap(), Some(AttachFrame::Exit(0)));
    assert_eq!(client.recv().unwrap(), None);
    assert_eq!(c.wait_exit().code, 0);
    assert_eq!(
        c.records(),
        [(Stream::Stdout, false, "hello monitor".to_string())]
    );
}

#[test]
fn stdin_once_closes_stdin_when_the_first_client_leaves() {
    let mut opts = Opts::new(&["sh", "-c", "cat; echo eof"]);
    opts.stdin = true;
    opts.stdin_once = true;
    let mut c = Container::new(opts);
    c.spawn().unwrap();
    let mut first = connect(&c);
    let mut watcher = connect(&c);
    c.start();
    first.send_stdin(b"a\n").unwrap();
    read_until(&mut watcher, "the echo", |s| contains(s, "a\n"));
    drop(first);
    read_until(&mut watcher, "eof", |s| contains(s, "eof\n"));
    assert_eq!(c.wait_exit().code, 0);
}

#[test]
fn tty_output_and_resize() {
    let mut opts = Opts::new(&["sh", "-c", "read x; stty size; exit 5"]);
    opts.tty = true;
    opts.stdin = true;
    let mut c = Container::new(opts);
    c.spawn().unwrap();
    let mut client = connect(&c);
    c.start();
    client.resize(33, 77).unwrap();
    client.send_stdin(b"go\n").unwrap();
    read_until(&mut client, "stty size", |s| contains(s, "33 77"));
    assert_eq!(c.wait_exit().code, 5);
    let records = c.records();
    assert!(records.iter().all(|(s, _, _)| *s == Stream::Stdout));
    assert!(
        records
            .iter()
            .any(|(_, p, t)| !p && t.trim_end_matches('\r') == "33 77"),
        "{records:?}"
    );
}

#[test]
fn killed_container_records_signal() {
    let mut c = Container::new(Opts::new(&["sleep", "1000"]));
    c.spawn().unwrap();
    c.start();
    let out = c.runtime(&["kill", &c.cfg.id, "KILL"]);
    assert!(out.status.success(), "runtime kill: {out:?}");
    let rec = c.wait_exit();
    assert_eq!((rec.code, rec.signal), (137, Some(9)));
    assert!(!rec.exited_at.is_empty());
}

#[test]
fn create_failure_names_container_and_carries_runtime_message() {
    let mut c = Container::new(Opts::new(&["/no/such/program"]));
    match c.spawn() {
        Err(e @ MonitorError::Create { .. }) => {
            let text = e.to_string();
            let MonitorError::Create { id, status, message } = e else {
                unreachable!()
            };
            assert_eq!(id, c.cfg.id);
            assert!(text.contains(&c.cfg.id), "{text}");
            assert!(status.is_some_and(|s| s != 0), "{status:?}");
            assert!(message.contains("/no/such/program"), "{message}");
        }
        other => panic!("expected a create error, got {other:?}"),
    }
    // The monitor gave up and left no socket behind.
    let pid: u32 = std::fs::read_to_string(c.dir().join("monitor.pid"))
        .unwrap()
        .parse()
        .unwrap();
    wait_for("the monitor to exit", || !process_alive(pid));
    assert!(!c.cfg.socket.exists());
}

/// Not a test of its own: `monitor_outlives_its_starter` runs the test
/// binary with this test selected, as a starter process that exits.
#[test]
fn spawn_helper_process() {
    let Some(base) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let base = PathBuf::from(base);
    let cfg: MonitorConfig =
        serde_json::from_slice(&std::fs::read(base.join("helper-config.json")).unwrap()).unwrap();
    let started = spawn(&monitor_exe(), &["monitor"], &base.join("monitor"), &cfg).unwrap();
    std::fs::write(
        base.join("started"),
        format!("{} {}", started.monitor_pid, started.container_pid),
    )
    .unwrap();
}

#[test]
fn monitor_outlives_its_starter() {
    let mut c = Container::new(Opts::new(&["sh", "-c", "echo one; sleep 1; echo two"]));
    std::fs::write(
        c.tmp.path().join("helper-config.json"),
        serde_json::to_vec(&c.cfg).unwrap(),
    )
    .unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["spawn_helper_process", "--exact", "--test-threads=1"])
        .env(HELPER_ENV, c.tmp.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::fs::read_to_string(c.tmp.path().join("started")).unwrap();
    let monitor_pid: u32 = started.split(' ').next().unwrap().parse().unwrap();
    c.monitor_pid = Some(monitor_pid);
    assert!(process_alive(monitor_pid));
    assert_ne!(parent_pid(monitor_pid), std::process::id());
    c.start();
    assert_eq!(c.wait_exit().code, 0);
    assert_eq!(
        c.records(),
        [
            (Stream::Stdout, false, "one".to_string()),
            (Stream::Stdout, false, "two".to_string())
        ]
    );
}

#[test]
fn log_reopen_after_rename() {
    let mut opts = Opts::new(&["sh", "-c", "read a; echo one; read b; echo two"]);
    opts.stdin = true;
    let mut c = Container::new(opts);
    c.spawn().unwrap();
    let mut client = connect(&c);
    c.start();
    client.send_stdin(b"1\n").unwrap();
    read_until(&mut client, "one", |s| contains(s, "one\n"));
    wait_for("one in the log", || c.log_text().contains("one"));
    let rotated = c.tmp.path().join("container.log.1");
    std::fs::rename(&c.cfg.log_path, &rotated).unwrap();
    let mut control = connect(&c);
    control.reopen_log().unwrap();
    client.send_stdin(b"2\n").unwrap();
    assert_eq!(c.wait_exit().code, 0);
    assert_eq!(c.records(), [(Stream::Stdout, false, "two".to_string())]);
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains(" stdout F one\n") && !old.contains("two"), "{old}");
}

#[test]
fn monitor_rss_of_a_running_container() {
    let mut c = Container::new(Opts::new(&["sleep", "1000"]));
    let started = c.spawn().unwrap();
    c.start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", started.monitor_pid)).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", started.monitor_pid)).unwrap();
    eprintln!("monitor VmRSS: {rss_kib} KiB\n{rollup}");
    // A generous bound for a debug build of the example: it catches
    // buffering whole outputs or a runaway allocation, not the final figure.
    assert!(rss_kib < 8 * 1024, "monitor VmRSS {rss_kib} KiB");
}
