//! Waiting for a foreground process (`run`, `exec`) as runc does: signals
//! sent to berth are forwarded to it, and the exit code is the process'
//! own, or 128+signal when a signal ended it.

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SigSet;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Holds all signals blocked from creation until the process is reaped.
pub struct Waiter {
    set: SigSet,
}

impl Waiter {
    /// Blocks every signal so that each one is queued for `wait`, including
    /// a SIGCHLD arriving before `wait` is entered.
    pub fn block_signals() -> Result<Self> {
        let set = SigSet::all();
        set.thread_block().context("block signals")?;
        Ok(Self { set })
    }

    /// Waits for `pid` to end, reaping other children on the way, and
    /// forwarding every other signal to it.
    pub fn wait(self, pid: Pid) -> Result<i32> {
        loop {
            // Reap before sleeping: the process may have ended already.
            if let Some(code) = reap(pid)? {
                return Ok(code);
            }
            match self.set.wait().context("wait for a signal")? {
                Signal::SIGCHLD => {}
                // Go runtimes use SIGURG internally; runc drops it too.
                Signal::SIGURG | Signal::SIGWINCH => {}
                sig => match kill(pid, sig) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => tracing::warn!(%pid, ?sig, %e, "forward signal"),
                },
            }
        }
    }
}

/// Reaps every exited child; returns `pid`'s exit code once it is among them.
fn reap(pid: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(Some(128 + sig as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => {}
            // No child left: the process was reaped elsewhere; nothing to wait for.
            Err(Errno::ECHILD) => anyhow::bail!("process {pid} is not a child of this process"),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}
