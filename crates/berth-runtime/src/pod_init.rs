//! The init of a pod's shared PID namespace. A PID namespace dies with its
//! PID 1, so a pod whose containers share one needs a process that lives as
//! long as the pod, reaps the orphans reparented to it and does nothing
//! else: `berth pod-init`, started by [`spawn_pid_init`], running
//! [`run_init`].

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::namespaces::{NsError, cpath, pipe, read_full};

/// Steps of the forked children, reported with errno over the pipe.
const STEPS: [&str; 8] = [
    "ok",
    "setns into a pod namespace",
    "unshare(CLONE_NEWPID)",
    "fork the init",
    "setsid",
    "redirect stdio to /dev/null",
    "exec",
    "become root of the pod's user namespace",
];

/// How long `stop_pid_init` waits for the init to disappear.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts `exe args…` as PID 1 of a new PID namespace, after joining the
/// namespace files in `join` (the pod's pinned net/ipc/uts), and returns
/// its PID on the host. The init is detached: its parent exits at once, so
/// it is reparented to the host's init (or the nearest subreaper) and the
/// caller need not reap it. Containers join `/proc/<pid>/ns/pid`.
pub fn spawn_pid_init(exe: &Path, args: &[&str], join: &[PathBuf]) -> Result<u32, NsError> {
    let err = |step: &'static str| {
        move |source: io::Error| NsError::Init {
            exe: exe.to_owned(),
            step,
            source,
        }
    };
    let c_exe = cpath(exe).map_err(err("prepare the path"))?;
    let c_args: Vec<CString> = std::iter::once(Ok(c_exe.clone()))
        .chain(args.iter().map(|a| CString::new(*a).map_err(io::Error::other)))
        .collect::<io::Result<_>>()
        .map_err(err("prepare the arguments"))?;
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut ns_files: Vec<File> = join
        .iter()
        .map(File::open)
        .collect::<io::Result<_>>()
        .map_err(err("open a namespace file to join"))?;
    // A user namespace is joined first: it owns the others, and joining
    // them takes the capabilities one has in it.
    let is_user = |f: &File| unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) } == libc::CLONE_NEWUSER;
    ns_files.sort_by_key(|f| !is_user(f));
    let in_userns = ns_files.first().is_some_and(is_user);
    let ns_fds: Vec<libc::c_int> = ns_files.iter().map(|f| f.as_raw_fd()).collect();
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(err("open /dev/null"))?;
    let (report_r, report_w) = pipe().map_err(err("create a pipe"))?;
    let child = ForkArgs {
        ns_fds: &ns_fds,
        in_userns,
        exe: &c_exe,
        argv: &argv,
        devnull: devnull.as_raw_fd(),
        report: report_w.as_raw_fd(),
    };
    // SAFETY: the child branch only makes async-signal-safe calls on memory
    // prepared above, and ends in _exit or exec.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(err("fork")(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; never returns.
        unsafe { intermediate_main(&child) }
    }
    drop(report_w);
    let result = read_report(&report_r);
    reap(pid);
    result.map_err(|(step, source)| NsError::Init {
        exe: exe.to_owned(),
        step,
        source,
    })
}

/// The first message is the intermediate's (the init's PID, or the step it
/// failed at). Then EOF means the init has exec'd: its copy of the pipe is
/// close-on-exec. A second message is the init's report of a failed exec.
fn read_report(fd: &OwnedFd) -> Result<u32, (&'static str, io::Error)> {
    let decode = |m: [u8; 8]| {
        (
            u32::from_ne_bytes(m[..4].try_into().unwrap()),
            i32::from_ne_bytes(m[4..].try_into().unwrap()),
        )
    };
    let step_err = |step: u32, errno: i32| {
        (
            STEPS.get(step as usize).copied().unwrap_or("pod init child"),
            io::Error::from_raw_os_error(errno),
        )
    };
    let mut msg = [0u8; 8];
    read_full(fd.as_raw_fd(), &mut msg).map_err(|e| ("read the init's pid", e))?;
    let (step, value) = decode(msg);
    if step != 0 {
        return Err(step_err(step, value));
    }
    match read_full(fd.as_raw_fd(), &mut msg) {
        Ok(()) => {
            let (step, errno) = decode(msg);
            Err(step_err(step, errno))
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(value as u32),
        Err(e) => Err(("wait for the init's exec", e)),
    }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: reaps our own child; status is a valid out pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

/// ioctl(2) on a namespace file: its CLONE_NEW* type.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

struct ForkArgs<'a> {
    ns_fds: &'a [libc::c_int],
    /// The first of `ns_fds` is a user namespace: become its root.
    in_userns: bool,
    exe: &'a CString,
    argv: &'a [*const libc::c_char],
    devnull: libc::c_int,
    report: libc::c_int,
}

unsafe fn send(fd: libc::c_int, step: u32, value: i32) {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&step.to_ne_bytes());
    msg[4..].copy_from_slice(&value.to_ne_bytes());
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

unsafe fn errno() -> i32 {
    unsafe { *libc::__errno_location() }
}

/// Joins the pod's namespaces, makes the new PID namespace (which only the
/// next child enters), forks the init into it, reports its PID and exits.
unsafe fn intermediate_main(a: &ForkArgs) -> ! {
    unsafe {
        for &fd in a.ns_fds {
            if libc::setns(fd, 0) != 0 {
                send(a.report, 1, errno());
                libc::_exit(1);
            }
        }
        // Root of the pod's user namespace, not the host's root seen from
        // it (unmapped): the init then runs as the pod's own ids.
        if a.in_userns
            && (libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(0, 0, 0) != 0
                || libc::setresuid(0, 0, 0) != 0)
        {
            send(a.report, 7, errno());
            libc::_exit(1);
        }
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            send(a.report, 2, errno());
            libc::_exit(1);
        }
        match libc::fork() {
            -1 => {
                send(a.report, 3, errno());
                libc::_exit(1)
            }
            0 => init_exec(a),
            pid => {
                send(a.report, 0, pid);
                libc::_exit(0)
            }
        }
    }
}

/// In the new namespace as PID 1: leave the caller's session and terminal,
/// drop its stdio and signal mask, become `exe`.
unsafe fn init_exec(a: &ForkArgs) -> ! {
    unsafe {
        if libc::setsid() < 0 {
            send(a.report, 4, errno());
            libc::_exit(1);
        }
        for fd in 0..3 {
            if libc::dup2(a.devnull, fd) < 0 {
                send(a.report, 5, errno());
                libc::_exit(1);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execv(a.exe.as_ptr(), a.argv.as_ptr());
        send(a.report, 6, errno());
        libc::_exit(127)
    }
}

/// The init's main loop: with every signal blocked it waits for them one at
/// a time, reaps all exited children on SIGCHLD and exits 0 on SIGTERM or
/// SIGINT. Nothing in the loop allocates. Returns the exit code.
pub fn run_init() -> i32 {
    // SAFETY: plain libc calls on stack-owned signal sets.
    unsafe {
        // Holding no directory keeps any mount it lived on unmountable.
        libc::chdir(c"/".as_ptr());
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        if libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()) != 0 {
            return 1;
        }
        // Children that exited before the mask was set sent their SIGCHLD
        // to a default (discarding) disposition: reap them now.
        reap_all();
        let mut info: libc::siginfo_t = std::mem::zeroed();
        loop {
            match libc::sigwaitinfo(&all, &mut info) {
                libc::SIGCHLD => reap_all(),
                libc::SIGTERM | libc::SIGINT => return 0,
                _ => {}
            }
        }
    }
}

fn reap_all() {
    let mut status = 0;
    // SAFETY: waitpid with a valid out pointer.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// Kills a pod's init (and with it every process of its PID namespace)
/// and waits until it is gone. A PID that no longer names a PID-namespace
/// init (exited, possibly reused) is left alone: stopping is idempotent.
pub fn stop_pid_init(pid: u32) -> Result<(), NsError> {
    if !is_namespace_init(pid) {
        return Ok(());
    }
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(NsError::Stop {
                pid,
                step: "SIGKILL",
                source: e,
            });
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        // When the caller is its parent or subreaper, reaping is ours.
        // SAFETY: waitpid with a null status pointer is allowed.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
        if !is_alive(pid) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NsError::Stop {
                pid,
                step: "wait for exit",
                source: io::ErrorKind::TimedOut.into(),
            });
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Whether /proc/<pid>/status says the process is PID 1 of a nested
/// PID namespace (its last NSpid is 1 and it has more than one).
pub fn is_namespace_init(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("NSpid:"))?;
            let ids: Vec<&str> = line["NSpid:".len()..].split_whitespace().collect();
            Some(ids.len() > 1 && ids.last() == Some(&"1"))
        })
        .unwrap_or(false)
}

/// Gone, or a zombie its parent has not reaped yet: either way nothing of
/// it runs any more.
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_init_is_not_a_namespace_init() {
        assert!(!is_namespace_init(std::process::id()));
        assert!(!is_namespace_init(u32::MAX));
        stop_pid_init(u32::MAX).unwrap();
    }

    #[test]
    fn a_missing_exe_reports_the_exec_step() {
        let err = spawn_pid_init(Path::new("/nonexistent/berth"), &[], &[]).unwrap_err();
        match err {
            NsError::Init { step, source, .. } => {
                assert_eq!(step, "exec");
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("unexpected {other}"),
        }
    }
}
