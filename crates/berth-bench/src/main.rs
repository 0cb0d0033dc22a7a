//! `berth-bench`: CRI benchmarks that make the very same calls against any
//! CRI endpoint (berth, containerd, CRI-O), alternating between two endpoints
//! run by run so that both see the same machine load, and printing the
//! ratio of each pair of runs.

mod cri;
mod report;
mod scenario;
mod spec;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use cri::{BENCH_LABEL, Endpoint, RUN_LABEL};
use report::{EndpointResult, Report};
use scenario::{Ctx, Prepared, Scenario};

#[derive(Parser)]
#[command(
    name = "berth-bench",
    version,
    about = "CRI benchmarks against one or two CRI endpoints"
)]
struct Cli {
    #[command(flatten)]
    opts: Opts,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct Opts {
    /// CRI endpoint, `[NAME=]unix:///path`; give two to compare them (the
    /// ratios are first / second). NAME defaults to the runtime's name.
    #[arg(long = "endpoint", short = 'e', global = true)]
    endpoints: Vec<String>,
    /// Measured samples per endpoint.
    #[arg(long, default_value_t = 10, global = true)]
    runs: usize,
    /// Unmeasured samples per endpoint before the measured ones.
    #[arg(long, default_value_t = 1, global = true)]
    warmup: usize,
    /// App image of the pod and container scenarios (pulled beforehand).
    #[arg(long, default_value = "127.0.0.1:5123/busybox:latest", global = true)]
    image: String,
    /// Write the results as JSON to this file as well (`-` for stdout
    /// instead of the text).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Pod log directories go below this one; what a run creates there is
    /// removed at its end.
    #[arg(long, default_value = "/tmp/berth-bench-logs", global = true)]
    log_dir: PathBuf,
    /// Seconds one CRI call may take before the run fails.
    #[arg(long, default_value_t = 300, global = true)]
    call_timeout: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// RunPodSandbox → StopPodSandbox → RemovePodSandbox.
    Pod,
    /// Create → Start → Stop (timeout 0) → Remove of a `sleep` container,
    /// all in one pod per endpoint.
    Container,
    /// RunPodSandbox → CreateContainer → StartContainer from nothing; the
    /// cleanup after each sample is not timed.
    Scratch,
    /// PullImage; before each sample RemoveImage and `--after-remove`, so
    /// every pull fetches and unpacks the whole image.
    Pull(PullArgs),
    /// Many pods with an app each started at once: per-pod p50 and p99
    /// from the common start, wall time until all run, teardown time.
    Density {
        #[arg(long, default_value_t = 50)]
        pods: usize,
    },
    /// Start pods with a `sleep` app each and leave them running (for
    /// memory figures); `down` removes them.
    Up {
        #[arg(long, default_value_t = 20)]
        pods: usize,
    },
    /// Stop and remove every pod any berth-bench run left on the endpoints
    /// (label berth-bench=1), and the log directories of `up`.
    Down,
}

#[derive(Args)]
struct PullArgs {
    /// The image pulled.
    #[arg(long, default_value = "127.0.0.1:5123/big:latest")]
    pull_image: String,
    /// `NAME=COMMAND`: a shell command run after RemoveImage on endpoint
    /// NAME until its content is gone (berth: `berth … gc`; containerd
    /// removes content itself when the last image using it goes).
    #[arg(long)]
    after_remove: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-bench: start async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let o = &cli.opts;
    let timeout = Duration::from_secs(o.call_timeout);
    anyhow::ensure!(
        (1..=2).contains(&o.endpoints.len()),
        "give one or two --endpoint, not {}",
        o.endpoints.len()
    );
    let mut endpoints = Vec::new();
    for spec in &o.endpoints {
        let (name, url) = split_endpoint(spec);
        endpoints.push(Endpoint::connect(name, url, timeout).await?);
    }
    anyhow::ensure!(
        endpoints.len() <= 2,
        "give one or two --endpoint, not {}",
        endpoints.len()
    );
    if let [a, b] = endpoints.as_mut_slice()
        && a.name == b.name
    {
        a.name.push_str("-1");
        b.name.push_str("-2");
    }
    let run_id = run_id();
    let mut pull_image = "127.0.0.1:5123/big:latest".to_string();
    let scenario = match &cli.command {
        Cmd::Pod => Scenario::Pod,
        Cmd::Container => Scenario::Container,
        Cmd::Scratch => Scenario::Scratch,
        Cmd::Pull(p) => {
            attach_after_remove(&mut endpoints, &p.after_remove)?;
            pull_image.clone_from(&p.pull_image);
            Scenario::Pull
        }
        Cmd::Density { pods } => Scenario::Density { pods: *pods },
        Cmd::Up { pods } => return up(&endpoints, o, &run_id, *pods).await,
        Cmd::Down => return down(&endpoints, &o.log_dir).await,
    };
    let ctx = Ctx {
        log_root: o.log_dir.join(&run_id),
        run_id,
        image: o.image.clone(),
        pull_image,
    };
    let result = measure(scenario, &endpoints, &ctx, o.runs, o.warmup).await;
    // Whatever failed, no pod of this run stays behind.
    let mut cleanup = Ok(());
    for ep in &endpoints {
        if let Err(e) = ep.remove_pods_labelled(RUN_LABEL, &ctx.run_id).await {
            cleanup = Err(e);
        }
    }
    remove_dir(&ctx.log_root);
    let results = result?;
    cleanup?;
    let report = Report {
        scenario: scenario.name(),
        title: scenario.title(&ctx),
        date: now(),
        runs: o.runs,
        warmup: o.warmup,
        endpoints: results,
    };
    emit(&report, o.json.as_deref())
}

/// Prepares every endpoint, then takes the samples A B A B …, then tears down.
async fn measure(
    scenario: Scenario,
    endpoints: &[Endpoint],
    ctx: &Ctx,
    runs: usize,
    warmup: usize,
) -> anyhow::Result<Vec<EndpointResult>> {
    let mut prepared: Vec<Prepared> = Vec::new();
    for ep in endpoints {
        prepared.push(scenario.prepare(ep, ctx).await?);
    }
    let mut samples = vec![Vec::with_capacity(runs); endpoints.len()];
    for seq in 0..warmup + runs {
        for (i, ep) in endpoints.iter().enumerate() {
            let s = scenario
                .sample(ep, ctx, &prepared[i], seq)
                .await
                .with_context(|| format!("{} sample {seq} on {}", scenario.name(), ep.name))?;
            if seq >= warmup {
                samples[i].push(s);
            }
        }
    }
    for (ep, p) in endpoints.iter().zip(prepared) {
        scenario.finish(ep, p).await?;
    }
    Ok(endpoints
        .iter()
        .zip(samples)
        .map(|(ep, samples)| EndpointResult {
            name: ep.name.clone(),
            url: format!("unix://{}", ep.socket.display()),
            runtime: ep.runtime.clone(),
            samples,
        })
        .collect())
}

fn emit(report: &Report, json: Option<&Path>) -> anyhow::Result<()> {
    let doc = serde_json::to_string_pretty(&report.json())?;
    match json {
        Some(p) if p == Path::new("-") => println!("{doc}"),
        Some(p) => {
            std::fs::write(p, doc + "\n")
                .with_context(|| format!("write JSON results to {}", p.display()))?;
            print!("{}", report.text());
        }
        None => print!("{}", report.text()),
    }
    Ok(())
}

/// Starts `pods` pods with an app each on every endpoint and leaves them.
async fn up(endpoints: &[Endpoint], o: &Opts, run_id: &str, pods: usize) -> anyhow::Result<()> {
    let run_label = format!("up-{run_id}");
    for ep in endpoints {
        ep.pull(&o.image).await?;
        let root = o.log_dir.join(&run_label).join(&ep.name);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..pods {
            let cfg = spec::pod_config(&spec::pod_name(run_id, "up", 0, i), &run_label, &root);
            spec::make_log_dir(&cfg)?;
            let (ep, image) = (ep.clone(), o.image.clone());
            tasks.spawn(async move { scenario::start_pod_with_app(&ep, &cfg, &image).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.context("pod start task")??;
        }
        println!("{}: {pods} pods running, label {RUN_LABEL}={run_label}", ep.name);
    }
    Ok(())
}

async fn down(endpoints: &[Endpoint], log_dir: &Path) -> anyhow::Result<()> {
    for ep in endpoints {
        let n = ep.remove_pods_labelled(BENCH_LABEL, "1").await?;
        println!("{}: removed {n} pods", ep.name);
    }
    if let Ok(entries) = std::fs::read_dir(log_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("up-") {
                remove_dir(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(log_dir);
    Ok(())
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("berth-bench: remove {}: {e}", dir.display());
    }
}

/// `NAME=unix:///path` or just the URL (a path never holds `=` before its
/// first `/`).
fn split_endpoint(spec: &str) -> (Option<String>, &str) {
    match spec.split_once('=') {
        Some((name, url)) if !name.contains('/') => (Some(name.to_string()), url),
        _ => (None, spec),
    }
}

fn attach_after_remove(endpoints: &mut [Endpoint], specs: &[String]) -> anyhow::Result<()> {
    for s in specs {
        let (name, cmd) = s
            .split_once('=')
            .with_context(|| format!("--after-remove {s:?}: give NAME=COMMAND"))?;
        let ep = endpoints
            .iter_mut()
            .find(|e| e.name == name)
            .with_context(|| format!("--after-remove {s:?}: no endpoint named {name:?}"))?;
        ep.after_remove = Some(cmd.to_string());
    }
    Ok(())
}

/// Short and unique enough to tell concurrent invocations' pods apart.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:08x}", (std::process::id() << 20) ^ nanos)
}

fn now() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "unknown date".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "berth-bench",
            "pull",
            "-e",
            "a=unix:///a",
            "--endpoint",
            "/b",
            "--runs",
            "3",
            "--after-remove",
            "a=true",
        ])
        .unwrap();
        assert_eq!(cli.opts.endpoints, ["a=unix:///a", "/b"]);
        assert_eq!(cli.opts.runs, 3);
        let Cmd::Pull(p) = cli.command else {
            panic!("not pull")
        };
        assert_eq!(p.after_remove, ["a=true"]);
    }

    #[test]
    fn endpoint_specs() {
        assert_eq!(
            split_endpoint("berth=unix:///run/b.sock"),
            (Some("berth".into()), "unix:///run/b.sock")
        );
        assert_eq!(split_endpoint("unix:///run/b.sock"), (None, "unix:///run/b.sock"));
        assert_eq!(split_endpoint("/run/a=b.sock"), (None, "/run/a=b.sock"));
    }

    #[test]
    fn run_ids_are_hostname_safe() {
        let id = run_id();
        assert_eq!(id.len(), 8);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
