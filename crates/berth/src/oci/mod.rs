//! `berth oci`: the embedded OCI runtime, a runc-compatible command line on
//! youki's `libcontainer`.
//!
//! It runs before anything else in `main()`: libcontainer clones the
//! container's processes from this one, which is only sound while no other
//! thread exists. Keep this module free of threads and of tokio.

mod bundle;
mod checkpoint;
mod create;
mod delete;
mod devices;
mod direct;
mod exec;
mod features;
mod foreground;
mod kill;
mod list;
mod log;
mod ps;
mod resources;
mod restore;
mod run;
mod start;
mod state;
mod update;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use libcgroups::common::{AnyCgroupManager, CgroupConfig};
use libcontainer::container::Container;

/// Where container state lives when `--root` is not given.
const DEFAULT_ROOT: &str = "/run/berth/oci";

#[derive(Parser, Debug)]
#[command(
    name = "berth oci",
    about = "berth's embedded OCI runtime (runc-compatible command line)"
)]
struct OciCli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    verb: Verb,
}

/// runc's global flags; they come before the verb.
#[derive(clap::Args, Debug)]
struct GlobalOpts {
    /// Directory for container state.
    #[arg(long, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Also write log lines (and the final error) to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Format of the lines written to --log.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages.
    #[arg(long)]
    debug: bool,
    /// Manage cgroups through systemd instead of cgroupfs.
    #[arg(long)]
    systemd_cgroup: bool,
    /// The CRIU binary `checkpoint` and `restore` run.
    #[arg(long, default_value = "criu")]
    criu: PathBuf,
    /// Accepted for runc compatibility; rootless mode is detected, not asked for.
    #[arg(long, hide = true)]
    rootless: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Create a container (its process waits for `start`).
    Create(create::CreateArgs),
    /// Start a created container.
    Start(IdArg),
    /// Create and start a container; wait for it unless --detach.
    Run(run::RunArgs),
    /// Print a container's state as JSON.
    State(IdArg),
    /// Send a signal to a container's init (or all) processes.
    Kill(kill::KillArgs),
    /// Delete a container and its resources.
    Delete(delete::DeleteArgs),
    /// List the containers under --root.
    List(list::ListArgs),
    /// Run a new process inside a running container.
    Exec(exec::ExecArgs),
    /// List the processes of a container.
    Ps(ps::PsArgs),
    /// Change a container's cgroup resources.
    Update(update::UpdateArgs),
    /// Print the features this runtime supports as JSON.
    Features,
    /// Checkpoint a running container with CRIU.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Restore a container from a CRIU checkpoint.
    Restore(restore::RestoreArgs),
}

#[derive(clap::Args, Debug)]
struct IdArg {
    /// Container id.
    id: String,
}

/// Settings every verb needs.
struct Ctx {
    root: PathBuf,
    systemd_cgroup: bool,
    criu: PathBuf,
}

impl Ctx {
    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

/// Entry point for `berth oci ...`; argv[1] is "oci".
/// Runs the command line `args`, whose first item is the program name
/// (`oci` under `berth oci`, so clap's usage lines read `berth oci ...`).
pub fn main_from(args: Vec<OsString>) -> ExitCode {
    let cli = match OciCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let log_file = log::init(cli.global.log.as_deref(), cli.global.log_format, cli.global.debug);
    let ctx = Ctx {
        root: cli.global.root,
        systemd_cgroup: cli.global.systemd_cgroup,
        criu: cli.global.criu,
    };
    match dispatch(&ctx, cli.verb) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("berth oci: {msg}");
            if let Some(file) = log_file {
                log::write_error(&file, &msg);
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch(ctx: &Ctx, verb: Verb) -> Result<ExitCode> {
    let ok = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match verb {
        Verb::Create(a) => ok(create::create(ctx, a)),
        Verb::Start(a) => ok(start::start(ctx, &a.id)),
        Verb::Run(a) => run::run(ctx, a).map(exit_code),
        Verb::State(a) => ok(state::state(ctx, &a.id)),
        Verb::Kill(a) => ok(kill::kill(ctx, a)),
        Verb::Delete(a) => ok(delete::delete(ctx, a)),
        Verb::List(a) => ok(list::list(ctx, a)),
        Verb::Exec(a) => exec::exec(ctx, a).map(exit_code),
        Verb::Ps(a) => ok(ps::ps(ctx, a)),
        Verb::Update(a) => ok(update::update(ctx, a)),
        Verb::Features => ok(features::features()),
        Verb::Checkpoint(a) => ok(checkpoint::checkpoint(ctx, a)),
        Verb::Restore(a) => ok(restore::restore(ctx, a)),
    }
}

/// Exit statuses above 255 cannot be returned; the shell convention
/// (128+signal) already keeps them in range.
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

/// Loads a container's state, failing with a message naming the container
/// when it does not exist.
fn load_container(ctx: &Ctx, id: &str) -> Result<Container> {
    let dir = ctx.container_dir(id);
    if !dir.join("state.json").exists() {
        anyhow::bail!("container {id} does not exist");
    }
    Container::load(dir).with_context(|| format!("load state of container {id}"))
}

/// The cgroup manager of an existing container, built from the cgroup path
/// recorded at create time.
fn cgroup_manager(container: &Container) -> Result<AnyCgroupManager> {
    let id = container.id();
    let config = container
        .spec()
        .with_context(|| format!("load recorded config of container {id}"))?;
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.to_owned(),
    })
    .with_context(|| format!("open cgroups of container {id}"))
}

/// Makes the state root exist with owner-only access (as runc does: it
/// holds sockets that control containers).
fn ensure_root(root: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("create state root {}", root.display()))?;
    root.canonicalize()
        .with_context(|| format!("resolve state root {}", root.display()))
}
