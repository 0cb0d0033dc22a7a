//! `berth-monitor --exec-wait PIDFILE -- RUNTIME-EXEC-ARGV…`: waits for an
//! exec that the runtime started detached.
//!
//! A tty exec needs the runtime's `--console-socket`, which runc and its
//! peers accept only with `--detach`: the runtime then exits at once and the
//! exec'd process is reparented to the nearest child subreaper. The daemon
//! cannot be that subreaper (it would inherit every orphan of its
//! descendants, monitors included, and its process library reaps only its
//! own children), so this small process is: it runs the runtime's exec,
//! waits for the process the runtime left behind and reports on stdout one
//! line: `exit CODE` (128+signal when killed) or `error MESSAGE` when the
//! runtime failed (its stderr passes through).

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use rustix::process::{Pid, WaitOptions, set_child_subreaper, waitpid};

/// The waiter's command line after `--exec-wait`: `PIDFILE -- ARGV…`.
pub fn main(mut args: impl Iterator<Item = OsString>) -> i32 {
    let pid_file = args.next();
    let dashes = args.next();
    match (pid_file, dashes) {
        (Some(pid_file), Some(d)) if d == "--" => {
            let argv: Vec<_> = args.collect();
            run(Path::new(&pid_file), &argv)
        }
        _ => {
            eprintln!("usage: --exec-wait PIDFILE -- ARGV…");
            2
        }
    }
}

/// Runs `argv` and waits as described in the module docs; returns the
/// waiter's own exit status (0 when a report was written).
pub fn run(pid_file: &Path, argv: &[OsString]) -> i32 {
    let line = match wait(pid_file, argv) {
        Ok(code) => format!("exit {code}\n"),
        Err(message) => format!("error {}\n", message.replace('\n', " ")),
    };
    match std::io::stdout().write_all(line.as_bytes()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn wait(pid_file: &Path, argv: &[OsString]) -> Result<i32, String> {
    let (program, args) = argv.split_first().ok_or("no runtime command given")?;
    set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| format!("become child subreaper: {e}"))?;
    let status = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("run {}: {e}", program.to_string_lossy()))?;
    if !status.success() {
        return Err(format!("{} exec failed ({status})", program.to_string_lossy()));
    }
    let text = std::fs::read_to_string(pid_file).map_err(|e| format!("read {}: {e}", pid_file.display()))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{}: {text:?} is not a pid", pid_file.display()))?;
    // The wait may last as long as the exec'd process does.
    super::memory::release_startup_pages();
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, s))) if s.exited() => return Ok(s.exit_status().unwrap_or(0)),
            Ok(Some((_, s))) if s.signaled() => return Ok(128 + s.terminating_signal().unwrap_or(0)),
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("wait for exec'd process {}: {e}", pid.as_raw_nonzero())),
        }
    }
}
