//! The command line. Each command group lives in its own module.

mod daemon;
mod image;
mod images_for_pods;
mod manifest;
mod pod;
mod progress;
mod run;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use berth_api::Namespace;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A pod-native container runtime for Kubernetes and for people"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options that come before the subcommand.
#[derive(Args)]
pub struct Global {
    /// Tenant namespace of images, pods and containers.
    #[arg(long, short = 'n', global = true, env = "BERTH_NAMESPACE", default_value = Namespace::DEFAULT)]
    pub namespace: String,
    /// Persistent state directory [default: from config, /var/lib/berth].
    #[arg(long, global = true, env = "BERTH_ROOT")]
    pub root: Option<PathBuf>,
    /// Runtime state directory [default: from config, /run/berth].
    #[arg(long, global = true, env = "BERTH_STATE")]
    pub state: Option<PathBuf>,
    /// Config file [default: /etc/berth/config.toml].
    #[arg(long, global = true, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace); BERTH_LOG overrides it.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve CRI v1 (kubelet, crictl) on a Unix socket.
    Daemon(daemon::DaemonArgs),
    /// Manage images: pull, push, list, inspect, remove, tag, import, export.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Run a pod: one image, several apps (--app), or a Pod manifest (-f).
    Run(Box<run::RunArgs>),
    /// List pods.
    Ps(pod::PsArgs),
    /// Show a pod and its apps.
    Status {
        pod: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command in an app of a running pod.
    Exec(pod::ExecArgs),
    /// Print an app's output.
    Logs(pod::LogsArgs),
    /// Stop pods: the stop signal, then SIGKILL after the grace period.
    Stop {
        #[arg(required = true)]
        pods: Vec<String>,
        /// Grace period in seconds.
        #[arg(short = 't', long, default_value_t = 10)]
        timeout: u64,
    },
    /// Remove pods (their apps, logs and writable layers).
    Rm {
        #[arg(required = true)]
        pods: Vec<String>,
        /// Stop running pods first.
        #[arg(short, long)]
        force: bool,
    },
    /// CPU, memory and process counts of running apps.
    Stats {
        pod: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove pods that exited longer ago than the grace period, then
    /// blobs and snapshots that nothing references, in every namespace.
    Gc {
        #[arg(long)]
        json: bool,
        /// Exited pods younger than this are kept (seconds, or with s, m, h).
        #[arg(long, default_value = "1h")]
        grace: String,
    },
}

/// What every command needs: the resolved config, namespace and open store.
pub struct Ctx {
    pub config: Config,
    pub namespace: Namespace,
}

impl Ctx {
    fn new(g: &Global) -> anyhow::Result<Ctx> {
        let mut config = Config::load(g.config.as_deref())?;
        if let Some(r) = &g.root {
            config.root = r.clone();
        }
        if let Some(s) = &g.state {
            config.state = s.clone();
        }
        let namespace = g.namespace.parse().context("--namespace")?;
        Ok(Ctx { config, namespace })
    }

    pub fn store(&self) -> anyhow::Result<Arc<berth_store::Store>> {
        let store = berth_store::Store::open(&self.config.root)
            .with_context(|| format!("open store at {}", self.config.root.display()))?;
        Ok(Arc::new(store))
    }

    pub fn runtime(&self) -> anyhow::Result<berth_runtime::Runtime> {
        let opts = self.config.runtime_options()?;
        let network = std::sync::Arc::new(crate::pod_network::CniNetwork::new(&self.config));
        Ok(berth_runtime::Runtime::new(self.store()?, opts)?.with_network(network))
    }

    pub fn images(&self, creds: Option<&str>) -> anyhow::Result<berth_image::Images> {
        let creds = creds
            .map(|c| {
                c.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
                    .context("--creds must be USER:PASSWORD")
            })
            .transpose()?;
        let client = berth_registry::Client::new(berth_registry::ClientConfig {
            certs_dir: self.config.registry.certs_dir.clone(),
            docker_config: self
                .config
                .registry
                .docker_config
                .clone()
                .or_else(berth_registry::auth::default_docker_config_path),
            creds,
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        })?;
        Ok(berth_image::Images::new(self.store()?, client))
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(&cli.global)?;
    match cli.command {
        Command::Daemon(a) => daemon::run(&ctx, a),
        Command::Image(cmd) => image::run(&ctx, cmd),
        Command::Run(a) => run::run(&ctx, *a),
        Command::Ps(a) => pod::ps(&ctx, a),
        Command::Status { pod, json } => pod::status(&ctx, &pod, json),
        Command::Exec(a) => pod::exec(&ctx, a),
        Command::Logs(a) => pod::logs(&ctx, a),
        Command::Stop { pods, timeout } => pod::stop(&ctx, &pods, timeout),
        Command::Rm { pods, force } => pod::rm(&ctx, &pods, force),
        Command::Stats { pod, json } => pod::stats(&ctx, pod.as_deref(), json),
        Command::Gc { json, grace } => {
            let grace = parse_duration(&grace).context("--grace")?;
            let pods = pod::gc_pods(&ctx.runtime()?, grace)?;
            let stats = ctx.store()?.gc()?;
            if json {
                let mut v = serde_json::to_value(stats)?;
                v["pods_removed"] = pods.into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "removed {pods} pods, {} blobs and {} snapshots, freed {}",
                    stats.blobs_removed,
                    stats.snapshots_removed,
                    image::human_size(stats.bytes_freed)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `90`, `90s`, `15m`, `2h`.
fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => anyhow::bail!("{s:?}: unknown unit {unit:?} (use s, m, h, d)"),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// A tokio runtime for the commands that talk to the network.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start async runtime")
}
