//! Running one plugin binary: a fresh environment per call (never the
//! daemon's own, and never `std::env::set_var`, which is unsound while
//! other threads run), the config on stdin, stdout and stderr read fully,
//! and a deadline after which the plugin's whole process group is killed.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal};

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
        // Feed stdin from a thread: a plugin that does not read it must not
        // block us past the deadline once the pipe buffer is full.
        let mut pipe_in = child.stdin.take().expect("stdin is piped");
        let input = stdin.to_vec();
        thread::spawn(move || {
            let _ = pipe_in.write_all(&input);
        });
        let stdout = read_in_thread(child.stdout.take().expect("stdout is piped"));
        let stderr = read_in_thread(child.stderr.take().expect("stderr is piped"));

        let exited = wait_until(&child, deadline).map_err(io_err("waiting for the plugin"))?;
        if !exited {
            kill_group(&mut child);
            return Err(CniError::Timeout {
                plugin: plugin.to_string(),
                command: inv.command,
                timeout: self.timeout,
            });
        }
        let status = child.wait().map_err(io_err("reaping the plugin"))?;
        let grace = deadline.saturating_duration_since(Instant::now()).max(PIPE_GRACE);
        let (stdout, stderr) = match (stdout.recv_timeout(grace), stderr.recv_timeout(grace)) {
            (Ok(out), Ok(err)) => (out, err),
            _ => {
                // A helper the plugin left behind still holds its pipes.
                let _ = rustix::process::kill_process_group(pid_of(&child), Signal::KILL);
                return Err(CniError::Timeout {
                    plugin: plugin.to_string(),
                    command: inv.command,
                    timeout: self.timeout,
                });
            }
        };
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
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

fn read_in_thread<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(child.id() as i32).expect("a child's pid is positive")
}

/// Waits for the child to exit, up to `deadline`; the child stays unreaped,
/// so its pid (and process group id) cannot be reused meanwhile.
fn wait_until(child: &Child, deadline: Instant) -> std::io::Result<bool> {
    let pidfd = rustix::process::pidfd_open(pid_of(child), PidfdFlags::empty())?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
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
