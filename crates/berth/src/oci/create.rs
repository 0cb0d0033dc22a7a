//! `berth oci create`: sets the container up; its process waits for `start`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;

use berth_runtime::cgroup::Cgroups;

use super::{Ctx, bundle, devices, direct, ensure_root, resources};

/// Flags shared by `create` and `run` (runc's names).
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Bundle directory (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master (SCM_RIGHTS) when the spec
    /// asks for a terminal.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's init pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE instead of pivot_root (for ramdisk roots).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: libcontainer creates no session
    /// keyring, so there is never a new one.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many file descriptors beyond stdio (3..3+N) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container id.
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub init: InitArgs,
}

pub fn create(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    build_init(ctx, &args.init, true)?;
    Ok(())
}

/// Creates the container's processes (they wait for `start`). The caller's
/// stdio is inherited by the container process unless a console socket
/// carries a pty.
pub fn build_init(ctx: &Ctx, args: &InitArgs, detach: bool) -> Result<Container> {
    let id = &args.id;
    let builder = ContainerBuilder::new(id.clone(), SyscallType::default())
        .validate_id()
        .with_context(|| format!("create container {id}"))?;
    let root = ensure_root(&ctx.root)?;
    // Checked here, not only by libcontainer: preparing the bundle must not
    // touch the shadow bundle of an existing container with this id.
    if root.join(id).exists() {
        anyhow::bail!("create container {id}: container {id} already exists");
    }
    let bundle = bundle::prepare(&root, id, &args.bundle, ctx.systemd_cgroup)?;
    let built = match direct::plan(&bundle.dir, ctx.systemd_cgroup) {
        Ok(plan) => direct::create(&root, &bundle.dir, args, detach, plan)
            .with_context(|| format!("create container {id}")),
        Err(reason) => {
            tracing::debug!(container = %id, %reason, "created through libcontainer");
            fallback_create(builder, ctx, args, detach, &root, &bundle.dir)
        }
    };
    built.inspect_err(|_| {
        // Neither path removes our shadow bundle on failure.
        if bundle.shadowed {
            let _ = bundle::remove_shadow(&root, id);
        }
    })
}

/// libcontainer's create with berth's device control around it: refused
/// up front where the rules cannot be enforced, and on cgroup v2 the
/// rules attached before the container is handed back.
fn fallback_create(
    builder: ContainerBuilder,
    ctx: &Ctx,
    args: &InitArgs,
    detach: bool,
    root: &Path,
    bundle: &Path,
) -> Result<Container> {
    let id = &args.id;
    // berth's own path refuses these too (and so falls back here);
    // libcontainer would join them to the cgroup path unchecked.
    let spec = Spec::load(bundle.join("config.json"))
        .with_context(|| format!("read the config of container {id}"))?;
    resources::check_file_names(spec.linux().as_ref().and_then(|l| l.resources().as_ref()))
        .map_err(|e| anyhow::anyhow!("create container {id}: {e}"))?;
    let cgroups = Cgroups::detect().with_context(|| format!("create container {id}"))?;
    let control = devices::prepare_spec(&spec, id, &cgroups)?;
    let mut container = libcontainer_create(builder, ctx, args, detach, root, bundle)?;
    if let Err(e) = control.enforce(&container) {
        if let Err(d) = container.delete(true) {
            tracing::warn!(container = %id, error = %d, "delete a container whose device rules failed");
        }
        return Err(e);
    }
    Ok(container)
}

/// libcontainer's own create, for configs berth's path leaves to it.
fn libcontainer_create(
    builder: ContainerBuilder,
    ctx: &Ctx,
    args: &InitArgs,
    detach: bool,
    root: &Path,
    bundle: &Path,
) -> Result<Container> {
    let id = &args.id;
    builder
        .with_root_path(root)
        .and_then(|b| b.with_pid_file(args.pid_file.as_ref()))
        .map(|b| {
            b.with_console_socket(args.console_socket.as_ref())
                .with_preserved_fds(args.preserve_fds)
                .as_init(bundle)
                .with_systemd(ctx.systemd_cgroup)
                .with_detach(detach)
                .with_no_pivot(args.no_pivot)
        })
        .and_then(|b| b.build())
        .with_context(|| format!("create container {id}"))
}
