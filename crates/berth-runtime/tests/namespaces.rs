//! Pinned namespaces and the pod's PID-namespace init against the real
//! kernel (needs root, `nsenter`, `ip`, `sh`).
//!
//! The init needs an executable that calls `run_init`. This test binary is
//! its own: started with the single argument `INIT_MARKER`, a constructor in
//! `.init_array` runs `run_init` before libtest's main exists, so the init
//! is a single-threaded process exactly like `berth pod-init` will be.

use std::ffi::{CStr, c_char, c_int};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_runtime::namespaces::{self, NsError, NsKind};
use berth_runtime::pod_init;

const INIT_MARKER: &str = "__berth_test_pod_init__";

extern "C" fn run_init_if_asked(argc: c_int, argv: *const *const c_char, _env: *const *const c_char) {
    if argc != 2 || argv.is_null() {
        return;
    }
    // SAFETY: glibc passes main's argc/argv to .init_array functions.
    let arg = unsafe { CStr::from_ptr(*argv.add(1)) };
    if arg.to_bytes() == INIT_MARKER.as_bytes() {
        let code = pod_init::run_init();
        // SAFETY: ends the process without running the test harness.
        unsafe { libc::_exit(code) };
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static RUN_INIT_IF_ASKED: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    run_init_if_asked;

/// A temp parent (which `pin` turns into a shared mount point) holding the
/// pin directory; everything is unmounted and removed on drop.
struct PinDir {
    parent: tempfile::TempDir,
    dir: PathBuf,
    init: Option<u32>,
}

impl PinDir {
    fn new() -> PinDir {
        let parent = tempfile::Builder::new()
            .prefix("berth-ns-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = parent.path().join("pod");
        PinDir {
            parent,
            dir,
            init: None,
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Some(pid) = self.init.take() {
            let _ = pod_init::stop_pid_init(pid);
        }
        let _ = namespaces::unpin(&self.dir);
        if mounted(self.parent.path()) {
            let _ = rustix::mount::unmount(self.parent.path(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn mounted(path: &Path) -> bool {
    let needle = path.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| m == needle || m.starts_with(&format!("{needle}/")))
        })
}

fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn arg(p: &Path, flag: &str) -> String {
    format!("{flag}={}", p.display())
}

#[test]
fn pin_uts_net_ipc_then_unpin() {
    let t = PinDir::new();
    let pinned = namespaces::pin(&t.dir, &NsKind::ALL, Some("podtest")).unwrap();
    assert_eq!(pinned.dir, t.dir);
    for kind in NsKind::ALL {
        assert!(namespaces::is_pinned(&t.dir, kind), "{kind:?} not pinned");
        assert_eq!(pinned.path(kind), Some(namespaces::path(&t.dir, kind)));
    }
    let uts = namespaces::path(&t.dir, NsKind::Uts);
    let net = namespaces::path(&t.dir, NsKind::Net);
    let ipc = namespaces::path(&t.dir, NsKind::Ipc);

    assert_eq!(
        run(&["nsenter", &arg(&uts, "--uts"), "hostname"]).trim(),
        "podtest"
    );

    let links = run(&["nsenter", &arg(&net, "--net"), "ip", "-o", "link"]);
    let lines: Vec<&str> = links.lines().collect();
    assert_eq!(lines.len(), 1, "{links}");
    assert!(lines[0].contains(": lo:"), "{links}");
    assert!(lines[0].contains(",UP,") || lines[0].contains(",UP>"), "{links}");

    // Two processes joining the pin share one IPC namespace, not the host's.
    let first = run(&["nsenter", &arg(&ipc, "--ipc"), "readlink", "/proc/self/ns/ipc"]);
    let second = run(&["nsenter", &arg(&ipc, "--ipc"), "readlink", "/proc/self/ns/ipc"]);
    assert_eq!(first, second);
    assert_ne!(
        first.trim(),
        fs::read_link("/proc/self/ns/ipc").unwrap().to_str().unwrap()
    );
    let shm = run(&[
        "nsenter",
        &arg(&ipc, "--ipc"),
        "sh",
        "-c",
        "ipcmk -M 4096 >/dev/null; ipcs -m | grep -c 4096",
    ]);
    assert_eq!(shm.trim(), "1");
    let seen = run(&[
        "nsenter",
        &arg(&ipc, "--ipc"),
        "sh",
        "-c",
        "ipcs -m | grep -c 4096 || true",
    ]);
    assert_eq!(seen.trim(), "1", "a second process does not see the segment");

    assert!(mounted(&t.dir));
    namespaces::unpin(&t.dir).unwrap();
    assert!(!mounted(&t.dir), "pins still mounted");
    assert!(!t.dir.exists());
    for kind in NsKind::ALL {
        assert!(!namespaces::is_pinned(&t.dir, kind));
    }
    namespaces::unpin(&t.dir).unwrap();
}

#[test]
fn failed_pin_undoes_everything() {
    let t = PinDir::new();
    // The pin files exist already: creating them is a step that fails.
    fs::create_dir(&t.dir).unwrap();
    fs::write(t.dir.join("ipc"), "").unwrap();
    let err = namespaces::pin(&t.dir, &[NsKind::Net, NsKind::Ipc], None).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            NsError::Pin {
                step: "create pin file",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains(t.dir.to_str().unwrap()), "{msg}");
    assert!(!t.dir.join("net").exists(), "net pin file left behind");
    assert!(
        t.dir.join("ipc").exists(),
        "a file pin did not create was removed"
    );
    assert!(!mounted(&t.dir));
}

fn nspid(pid: u32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line[6..].split_whitespace().map(|p| p.parse().unwrap()).collect()
}

fn children_of(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pid_init_holds_a_namespace_joined_to_the_pod_and_reaps() {
    let mut t = PinDir::new();
    namespaces::pin(&t.dir, &NsKind::ALL, Some("podinit")).unwrap();
    let join: Vec<PathBuf> = NsKind::ALL.iter().map(|k| namespaces::path(&t.dir, *k)).collect();
    let exe = std::env::current_exe().unwrap();
    let pid = pod_init::spawn_pid_init(&exe, &[INIT_MARKER], &join).unwrap();
    t.init = Some(pid);

    let ids = nspid(pid);
    assert_eq!(ids.first(), Some(&pid));
    assert_eq!(ids.last(), Some(&1), "{ids:?}");
    assert!(pod_init::is_namespace_init(pid));
    assert_eq!(fs::read_link(format!("/proc/{pid}/exe")).unwrap(), exe);
    for kind in NsKind::ALL {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{}", kind.name())).unwrap();
        let pinned = run(&[
            "nsenter",
            &arg(&namespaces::path(&t.dir, kind), &format!("--{}", kind.name())),
            "readlink",
            &format!("/proc/self/ns/{}", kind.name()),
        ]);
        assert_eq!(theirs.to_str().unwrap(), pinned.trim(), "{kind:?}");
    }

    let pidns = format!("/proc/{pid}/ns/pid");
    let inner = run(&["nsenter", &format!("--pid={pidns}"), "--", "sh", "-c", "echo $$"]);
    let inner: u32 = inner.trim().parse().unwrap();
    assert!(inner > 1, "{inner}");

    // An orphan is reparented to the init; once it exits it must be
    // reaped. It blocks opening a FIFO until the test opens the other end,
    // so nothing here depends on timing.
    let fifo = t.parent.path().join("orphan.fifo");
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let script = format!("cat {} >/dev/null 2>&1 </dev/null & exit 0", fifo.display());
    run(&["nsenter", &format!("--pid={pidns}"), "--", "sh", "-c", &script]);
    wait_until("the orphan to reach the init", || children_of(pid).len() == 1);
    drop(fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    wait_until("the init to reap the orphan", || children_of(pid).is_empty());

    // A process left running in the namespace dies with the init.
    let mut holder = Command::new("nsenter")
        .args([&format!("--pid={pidns}"), "--", "sleep", "1000"])
        .spawn()
        .unwrap();
    wait_until("sleep in the namespace", || {
        !children_of(pid).is_empty() || children_of(holder.id()).len() == 1
    });
    let sleeper = children_of(holder.id());
    assert_eq!(sleeper.len(), 1);
    pod_init::stop_pid_init(pid).unwrap();
    t.init = None;
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    assert!(state.as_deref().is_none_or(|s| s.contains(") Z")), "{state:?}");
    holder.wait().unwrap();
    assert!(!Path::new(&format!("/proc/{}", sleeper[0])).exists());
    pod_init::stop_pid_init(pid).unwrap();
}
