//! Running one plugin binary: a fresh environment per call (never the
//! daemon's own, and never `std::env::set_var`, which is unsound while
//! other threads run), the config on stdin, stdout and stderr read fully,
//! and a deadline after which the plugin's whole process group is killed.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use crate::error::{CniError, PluginErrorBody, PluginFailure};

/// PATH for plugins: they exec helpers such as iptables by name.
const PLUGIN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long to wait for stdout/stderr to close after the plugin exited: a
/// helper it left behind may still hold the pipes.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// One invocation's CNI_* parameters.
#[derive(Clone, Debug, Default)]
pub(crate) struct Invocation<'a> {
    pub command: &'static str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
}

pub(crate) struct Exec<'a> {
    pub bin_dirs: &'a [PathBuf],
    pub timeout: Duration,
}

struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Exec<'_> {
    /// Where `plugin_type` lives: the first bin dir holding an executable
    /// file of that name.
    pub fn find(&self, plugin_type: &str) -> Result<PathBuf, CniError> {
        if !is_plain_name(plugin_type) {
            return Err(CniError::PluginNotFound {
                plugin: plugin_type.to_string(),
                searched: self.bin_dirs.to_vec(),
            });
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| is_executable(p))
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: plugin_type.to_string(),
                searched: self.bin_dirs.to_vec(),
            })
    }

    /// Runs the plugin and returns its stdout when it exited 0.
    pub fn run(&self, plugin_type: &str, inv: &Invocation<'_>, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
        let path = self.find(plugin_type)?;
        let out = self.spawn_and_wait(plugin_type, &path, inv, stdin)?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let body = serde_json::from_str::<PluginErrorBody>(stdout.trim())
            .ok()
            .filter(|b| b.code != 0 || !b.msg.is_empty());
        Err(CniError::Plugin {
            plugin: plugin_type.to_string(),
            command: inv.command,
            failure: Box::new(PluginFailure {
                status: describe_status(out.status),
                body,
                stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
        })
    }

    fn command(&self, path: &Path, inv: &Invocation<'_>) -> Command {
        let cni_path = self
            .bin_dirs
            .iter()
            .map(|d| d.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":");
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .env("CNI_COMMAND", inv.command)
            .env("CNI_CONTAINERID", inv.container_id)
            .env("CNI_NETNS", inv.netns)
            .env("CNI_IFNAME", inv.ifname)
            .env("CNI_ARGS", inv.args)
            .env("CNI_PATH", cni_path)
            .env("PATH", PLUGIN_PATH)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills the helpers it
            // started (iptables, the IPAM plugin) along with it.
            .process_group(0);
        cmd
    }

    fn spawn_and_wait(
        &self,
        plugin: &str,
        path: &Path,
        inv: &Invocation<'_>,
        stdin: &[u8],
    ) -> Result<Output, CniError> {
        let io_err = |step: &'static str| {
            move |source| CniError::Io {
                plugin: plugin.to_string(),
                command: inv.command,
                step,
                source,
            }
        };
        let deadline = Instant::now() + self.timeout;
        let mut child = spawn_retrying(&mut self.command(path, inv)).map_err(|source| CniError::Spawn {
            plugin: plugin.to_string(),
            command: inv.command,
            path: path.to_path_buf(),
            source,
        })?;
        let timed_out = || CniError::Timeout {
            plugin: plugin.to_string(),
            command: inv.command,
            timeout: self.timeout,
        };
        let pumped = Pipes::new(&mut child, stdin)
            .and_then(|pipes| pipes.pump(pid_of(&child), deadline))
            .map_err(io_err("talking to the plugin"));
        let (status, stdout, stderr) = match pumped {
            Ok(Pumped::Done {
                status,
                stdout,
                stderr,
            }) => (status, stdout, stderr),
            Ok(Pumped::TimedOut) => {
                kill_group(&mut child);
                return Err(timed_out());
            }
            Ok(Pumped::PipesHeld) => {
                // A helper the plugin left behind still holds its pipes;
                // the plugin itself is still unreaped, so its process
                // group id cannot have been reused.
                let _ = rustix::process::kill_process_group(pid_of(&child), Signal::KILL);
                reap_later(child);
                return Err(timed_out());
            }
            Err(e) => {
                kill_group(&mut child);
                return Err(e);
            }
        };
        reap_later(child);
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// The plugin's three pipes, driven from the calling thread with poll:
/// no helper threads per call, and a plugin that reads no stdin or floods
/// stdout cannot block us past the deadline.
struct Pipes<'a> {
    stdin: Option<OwnedFd>,
    input: &'a [u8],
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

enum Pumped {
    /// The plugin exited and closed its output.
    Done {
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// The deadline passed with the plugin still running.
    TimedOut,
    /// The plugin exited but something it started still holds its output
    /// pipes after the grace period.
    PipesHeld,
}

impl<'a> Pipes<'a> {
    fn new(child: &mut Child, input: &'a [u8]) -> std::io::Result<Pipes<'a>> {
        let fd = |f: Option<OwnedFd>| -> std::io::Result<Option<OwnedFd>> {
            let f = f.expect("the plugin's stdio is piped");
            rustix::io::ioctl_fionbio(&f, true)?;
            Ok(Some(f))
        };
        Ok(Pipes {
            stdin: fd(child.stdin.take().map(OwnedFd::from))?,
            input,
            stdout: fd(child.stdout.take().map(OwnedFd::from))?,
            stderr: fd(child.stderr.take().map(OwnedFd::from))?,
        })
    }

    /// Feeds stdin and collects stdout and stderr until the plugin has
    /// exited and closed both, or a deadline passes. The plugin is left
    /// unreaped: its exit status is read with WNOWAIT.
    fn pump(mut self, pid: Pid, deadline: Instant) -> std::io::Result<Pumped> {
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut status = None;
        // After the exit: how long the output may stay open.
        let mut pipes_deadline = deadline;
        if self.input.is_empty() {
            self.stdin = None;
        }
        loop {
            if let Some(status) = status
                && self.stdout.is_none()
                && self.stderr.is_none()
            {
                return Ok(Pumped::Done {
                    status,
                    stdout: out,
                    stderr: err,
                });
            }
            let now = Instant::now();
            let until = if status.is_some() {
                pipes_deadline
            } else {
                deadline
            };
            let left = until.saturating_duration_since(now);
            if left.is_zero() {
                return Ok(if status.is_some() {
                    Pumped::PipesHeld
                } else {
                    Pumped::TimedOut
                });
            }
            let ts = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = Vec::with_capacity(4);
            let wanted = [
                (self.stdin.as_ref(), PollFlags::OUT),
                (self.stdout.as_ref(), PollFlags::IN),
                (self.stderr.as_ref(), PollFlags::IN),
                (status.is_none().then_some(&pidfd), PollFlags::IN),
            ];
            let mut slots = [None; 4];
            for (i, (fd, flags)) in wanted.iter().enumerate() {
                if let Some(fd) = fd {
                    slots[i] = Some(fds.len());
                    fds.push(PollFd::new(*fd, *flags));
                }
            }
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready: Vec<bool> = slots
                .iter()
                .map(|s| s.is_some_and(|i| !fds[i].revents().is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                self.feed();
            }
            if ready[1] {
                drain(&mut self.stdout, &mut out)?;
            }
            if ready[2] {
                drain(&mut self.stderr, &mut err)?;
            }
            if ready[3] {
                status = exit_status(&pidfd)?;
                if status.is_some() {
                    // Nobody reads stdin any more.
                    self.stdin = None;
                    pipes_deadline =
                        Instant::now() + deadline.saturating_duration_since(Instant::now()).max(PIPE_GRACE);
                }
            }
        }
    }

    /// Writes what the pipe takes; closes stdin once all is written or the
    /// plugin closed its end (a plugin may ignore its input).
    fn feed(&mut self) {
        let Some(fd) = &self.stdin else { return };
        match rustix::io::write(fd, self.input) {
            Ok(n) => {
                self.input = &self.input[n..];
                if self.input.is_empty() {
                    self.stdin = None;
                }
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(_) => self.stdin = None,
        }
    }
}

/// Reads what is there; on EOF (or an error) closes the pipe.
fn drain(pipe: &mut Option<OwnedFd>, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let Some(fd) = pipe else { return Ok(()) };
    let mut chunk = [0u8; 16 << 10];
    loop {
        match rustix::io::read(&*fd, &mut chunk) {
            Ok(0) => {
                *pipe = None;
                return Ok(());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::AGAIN) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                *pipe = None;
                return Err(e.into());
            }
        }
    }
}

/// The plugin's exit status once it has exited, leaving it a zombie
/// (WNOWAIT): reaping is left to `reap_later`.
fn exit_status(pidfd: &OwnedFd) -> std::io::Result<Option<ExitStatus>> {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    let Some(st) = rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), options)? else {
        return Ok(None);
    };
    // The wait(2) status encoding, which ExitStatus is built from.
    let raw = match (st.exit_status(), st.terminating_signal()) {
        (Some(code), _) => (code & 0xff) << 8,
        (None, Some(sig)) => sig | if st.dumped() { 0x80 } else { 0 },
        _ => return Ok(None),
    };
    Ok(Some(ExitStatus::from_raw(raw)))
}

/// Reaps an exited plugin on a background thread. Reaping costs the
/// kernel real time (it prunes the process's /proc dentries: from tens of
/// microseconds up to over a millisecond a plugin on a busy host), which
/// need not sit between one plugin and the next.
fn reap_later(child: Child) {
    static REAPER: OnceLock<Option<mpsc::Sender<Child>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Child>();
        thread::Builder::new()
            .name("cni-reaper".into())
            .spawn(move || {
                // Background work: the next plugin of a chain, on the
                // critical path of a pod start, comes first. (On Linux the
                // nice value of PID 0 is this thread's alone.)
                let _ = rustix::process::setpriority_process(None, 19);
                for mut c in rx {
                    let _ = c.wait();
                }
            })
            .ok()
            .map(|_| tx)
    });
    let child = match reaper {
        Some(tx) => match tx.send(child) {
            Ok(()) => return,
            Err(mpsc::SendError(c)) => c,
        },
        None => child,
    };
    let mut child = child;
    let _ = child.wait();
}

/// Spawns, retrying briefly on ETXTBSY: a plugin binary that was just
/// written (an upgrade, a test) can still be open for writing in a child
/// another thread forked, until that child execs.
fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(child.id() as i32).expect("a child's pid is positive")
}

fn kill_group(child: &mut Child) {
    let _ = rustix::process::kill_process_group(pid_of(child), Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// A plugin type is a file name in a bin dir, never a path.
pub(crate) fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
