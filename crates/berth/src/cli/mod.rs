//! The command line. Each command group lives in its own module.

mod image;
mod progress;

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
    /// Manage images: pull, push, list, inspect, remove, tag, import, export.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Remove blobs and snapshots that nothing references, in any namespace.
    Gc {
        #[arg(long)]
        json: bool,
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
        Command::Image(cmd) => image::run(&ctx, cmd),
        Command::Gc { json } => {
            let stats = ctx.store()?.gc()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!(
                    "removed {} blobs and {} snapshots, freed {}",
                    stats.blobs_removed,
                    stats.snapshots_removed,
                    image::human_size(stats.bytes_freed)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A tokio runtime for the commands that talk to the network.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start async runtime")
}
