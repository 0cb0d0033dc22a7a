//! Starting a monitor from any process, including a multi-threaded daemon.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{MonitorConfig, MonitorError, SYNC_FD_ENV, SyncReport, write_config};

/// The fd number the sync pipe has in the monitor.
const SYNC_FD: i32 = 3;

/// A monitor whose container is in state "created".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub monitor_pid: u32,
    pub container_pid: u32,
}

/// Writes `DIR/monitor.json`, starts `EXE monitor DIR` detached and waits
/// until the runtime's `create` finished. On success the caller runs the
/// runtime's `start`.
pub fn spawn(exe: &Path, args: &[&str], dir: &Path, cfg: &MonitorConfig) -> Result<Started, MonitorError> {
    write_config(dir, cfg)?;
    let spawn_err = |source| MonitorError::Spawn {
        id: cfg.id.clone(),
        source,
    };
    // CLOEXEC so that processes forked concurrently by other threads of the
    // caller never inherit it; the child gets its own copy at SYNC_FD.
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| spawn_err(e.into()))?;
    let write_fd = write_end.as_raw_fd();
    // The monitor changes to `/`; a relative DIR would then point elsewhere.
    let dir = std::path::absolute(dir).map_err(spawn_err)?;
    let dir = dir.as_path();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env(SYNC_FD_ENV, SYNC_FD.to_string());
    // SAFETY: the closure only makes async-signal-safe calls (setsid, dup2,
    // fcntl) and reads errno, as required between fork and exec in a
    // possibly multi-threaded process.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rc = if write_fd == SYNC_FD {
                libc::fcntl(SYNC_FD, libc::F_SETFD, 0)
            } else {
                libc::dup2(write_fd, SYNC_FD)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut intermediate = cmd.spawn().map_err(spawn_err)?;
    drop(write_end);
    let mut report = Vec::new();
    let read = std::fs::File::from(read_end).read_to_end(&mut report);
    // The monitor forks at start and its first process exits right away.
    let status = intermediate.wait().map_err(spawn_err)?;
    read.map_err(spawn_err)?;
    if report.is_empty() {
        let detail = std::fs::read_to_string(dir.join("monitor.err"))
            .unwrap_or_else(|_| format!("its first process ended with {status}"));
        return Err(MonitorError::MonitorLost {
            id: cfg.id.clone(),
            detail,
        });
    }
    match serde_json::from_slice(&report) {
        Ok(SyncReport::Created {
            monitor_pid,
            container_pid,
        }) => Ok(Started {
            monitor_pid,
            container_pid,
        }),
        Ok(SyncReport::Failed { status, message }) => Err(MonitorError::Create {
            id: cfg.id.clone(),
            status,
            message,
        }),
        Err(e) => Err(MonitorError::MonitorLost {
            id: cfg.id.clone(),
            detail: format!("unreadable report: {e}"),
        }),
    }
}
