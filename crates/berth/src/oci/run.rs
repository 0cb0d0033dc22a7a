//! `berth oci run`: create + start; in the foreground it waits, forwards
//! signals, deletes the container and returns its exit code.

use anyhow::{Context, Result};

use super::create::{InitArgs, build_init};
use super::{Ctx, bundle, delete, foreground};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Do not wait for the container; leave it running.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub init: InitArgs,
}

/// Returns the exit code to leave with: the container's (128+signal when
/// killed), or 0 when detached.
pub fn run(ctx: &Ctx, args: RunArgs) -> Result<i32> {
    let id = &args.init.id;
    let mut container = build_init(ctx, &args.init, args.detach)?;
    let pid = container
        .pid()
        .with_context(|| format!("container {id} has no init pid after create"))?;
    // Signals are blocked before start so that none is lost between the
    // container's exit and the wait (the init is our child: its SIGCHLD
    // would be discarded while unblocked).
    let waiter = (!args.detach)
        .then(foreground::Waiter::block_signals)
        .transpose()?;
    if let Err(e) = container.start() {
        let _ = delete::remove(&mut container, true);
        let _ = bundle::remove_shadow(&ctx.root, id);
        return Err(e).with_context(|| format!("start container {id}"));
    }
    let Some(waiter) = waiter else {
        return Ok(0);
    };
    let code = waiter
        .wait(pid)
        .with_context(|| format!("wait for container {id}"))?;
    // As runc: the container's exit code is the result; a failed cleanup
    // is reported but does not replace it.
    let cleanup = delete::remove(&mut container, true)
        .with_context(|| format!("delete container {id} after it exited"))
        .and_then(|()| bundle::remove_shadow(&ctx.root, id));
    if let Err(e) = cleanup {
        eprintln!("berth oci: {e:#}");
    }
    Ok(code)
}
