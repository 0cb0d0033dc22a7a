//! The helper processes of a VM (QEMU, virtiofsd) as children the host side
//! owns: each in a process group of its own, so a terminal's Ctrl-C reaches
//! only the caller, which then stops them in order, and stopping one reaches
//! the processes it forked (virtiofsd's sandboxed child). They also die with
//! the thread that started them (`PR_SET_PDEATHSIG`), so a caller killed
//! with SIGKILL leaves no VM behind.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Makes `cmd` start as a process group leader that dies with its parent.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes one
    // async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(std::io::Error::from)
        });
    }
    cmd
}

/// Stops a child started with [`own_group`]: `signal` to its whole group,
/// SIGKILL to the group after `grace`, then reaps it. A child that already
/// exited is only reaped (its group may still hold processes it forked,
/// which get SIGKILL).
pub fn stop(child: &mut Child, signal: Signal, grace: Duration) -> std::io::Result<()> {
    let pgid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    if child.try_wait()?.is_none() {
        let _ = rustix::process::kill_process_group(pgid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Whatever is left in the group (the leader after the grace period, or
    // forked helpers of a leader that already exited) goes now.
    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    child.wait()?;
    Ok(())
}
