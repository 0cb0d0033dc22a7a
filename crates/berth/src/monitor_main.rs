//! `berth-monitor`: the processes berth keeps for each container (the
//! monitor) and for a pod sharing one PID namespace (its init), as a small
//! static binary of their own. Exec'ing the full `berth` binary for them
//! would cost its relocations and libraries in every one: ~2.8 MiB of RSS
//! per container instead of well under 1 MiB.
//!
//! Usage: `berth-monitor DIR` (see `berth_runtime::monitor`),
//! `berth-monitor --pod-init` (see `berth_runtime::pod_init`),
//! `berth-monitor --exec-wait PIDFILE -- ARGV…` (see
//! `berth_runtime::monitor::exec_wait`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let code = match args.next() {
        Some(a) if a == "--pod-init" => berth_runtime::pod_init::run_init(),
        Some(a) if a == "--exec-wait" => berth_runtime::monitor::exec_wait::main(args),
        Some(dir) if args.next().is_none() => berth_runtime::monitor::run(std::path::Path::new(&dir)),
        _ => {
            eprintln!("usage: berth-monitor DIR | --pod-init | --exec-wait PIDFILE -- ARGV…");
            2
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
