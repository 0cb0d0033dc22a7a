//! `berth oci delete`: removes a stopped (or, with --force, any) container:
//! its processes, cgroups, state and shadow bundle.

use anyhow::{Context, Result};

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
    container
        .delete(args.force)
        .with_context(|| format!("delete container {id}"))?;
    bundle::remove_shadow(&ctx.root, id)
}
