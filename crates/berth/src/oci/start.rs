//! `berth oci start`: lets a created container's process exec its program.

use anyhow::{Context, Result};

use super::{Ctx, load_container};

pub fn start(ctx: &Ctx, id: &str) -> Result<()> {
    let mut container = load_container(ctx, id)?;
    container.start().with_context(|| format!("start container {id}"))
}
