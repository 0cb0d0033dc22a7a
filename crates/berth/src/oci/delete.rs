//! `berth oci delete`: removes a stopped (or, with --force, any) container:
//! its processes, cgroups, state and shadow bundle.

use anyhow::{Context, Result};
use berth_runtime::cgroup::Cgroups;
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};

use super::{Ctx, bundle, load_container};

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Kill the container first if it is running; a missing container is
    /// then no error.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

pub fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<()> {
    let id = &args.id;
    if args.force && !ctx.container_dir(id).exists() {
        // Idempotent, as CRI callers expect; a shadow bundle could only be
        // left by a create that died half-way.
        return bundle::remove_shadow(&ctx.root, id);
    }
    let mut container = load_container(ctx, id)?;
    remove(&mut container, args.force)?;
    bundle::remove_shadow(&ctx.root, id)
}

/// Deletes a loaded container: berth's own way when its cgroup is a plain
/// cgroupfs path and nothing else needs undoing, else libcontainer's.
pub fn remove(container: &mut Container, force: bool) -> Result<()> {
    let id = container.id().to_owned();
    let config = container.spec().ok();
    let cgroup_path = config.as_ref().and_then(plain_cgroup_path);
    match (
        cgroup_path,
        container.systemd() || container.intel_rdt_dir().is_some(),
    ) {
        (Some(path), false) => remove_directly(container, &path, force),
        _ => container
            .delete(force)
            .with_context(|| format!("delete container {id}")),
    }
}

/// The cgroupfs path of a container without poststop hooks (those need
/// libcontainer's delete to run them).
fn plain_cgroup_path(config: &YoukiConfig) -> Option<String> {
    let poststop = config
        .hooks
        .as_ref()
        .and_then(|h| h.poststop().as_ref())
        .is_some_and(|p| !p.is_empty());
    let path = config.cgroup_path.to_str()?;
    (!poststop && path.starts_with('/')).then(|| path.to_owned())
}

/// libcontainer's delete rebuilds its cgroup manager, which on cgroup v1
/// reads the mount table once per controller; berth's driver reads it once,
/// and its removal also kills whatever is left in the cgroup.
fn remove_directly(container: &mut Container, cgroup_path: &str, force: bool) -> Result<()> {
    let id = container.id().to_owned();
    container
        .refresh_status()
        .with_context(|| format!("delete container {id}: read its status"))?;
    match container.status() {
        // As runc and crun: a created container is deleted without --force.
        ContainerStatus::Stopped | ContainerStatus::Created => {}
        _ if force => {}
        status => anyhow::bail!("delete container {id}: it is {status}; stop it first or use --force"),
    }
    Cgroups::detect()
        .and_then(|c| c.remove(cgroup_path))
        .with_context(|| format!("delete container {id}: remove cgroup {cgroup_path}"))?;
    std::fs::remove_dir_all(&container.root)
        .with_context(|| format!("delete container {id}: remove {}", container.root.display()))
}
