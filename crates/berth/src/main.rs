//! berth: the binary. One process per invocation; no daemon is needed for
//! any command here.

mod cli;
mod config;
mod oci;
mod pod_network;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before anything else: libcontainer forks from this process, which is
    // only sound while it has a single thread.
    if std::env::args_os().nth(1).is_some_and(|a| a == "oci") {
        return oci::main_from(std::env::args_os().skip(1).collect());
    }
    // The per-container processes: no argument parsing, no logging setup,
    // as little memory as they can (`berth monitor DIR`, `berth pod-init`).
    let mut args = std::env::args_os().skip(1);
    match args.next().as_deref().and_then(|a| a.to_str()) {
        Some("monitor") => {
            let Some(dir) = args.next() else {
                eprintln!("usage: berth monitor DIR");
                return ExitCode::FAILURE;
            };
            if dir == "--exec-wait" {
                return exit_code(berth_runtime::monitor::exec_wait::main(args));
            }
            return exit_code(berth_runtime::monitor::run(std::path::Path::new(&dir)));
        }
        Some("pod-init") => return exit_code(berth_runtime::pod_init::run_init()),
        _ => {}
    }
    let args = cli::Cli::parse();
    init_logging(args.global.log_level.as_deref());
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .ok()
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level.unwrap_or("warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
