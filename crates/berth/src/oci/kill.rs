//! `berth oci kill`: sends a signal to the container's init process, or to
//! every process in its cgroup with --all.

use anyhow::{Context, Result};
use libcontainer::signal::Signal;

use super::{Ctx, load_container};

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name (KILL, SIGTERM) or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn kill(ctx: &Ctx, args: KillArgs) -> Result<()> {
    let id = &args.id;
    let signal = Signal::try_from(args.signal.as_str())
        .with_context(|| format!("kill container {id}: bad signal {}", args.signal))?;
    let mut container = load_container(ctx, id)?;
    match container.kill(signal, args.all) {
        Ok(()) => Ok(()),
        // libcontainer saves the container's state after signalling it; a
        // foreground `run` that reaped the container meanwhile has deleted
        // that state. The signal went out (or there was nothing left to
        // signal): success, as with runc, not "no state file".
        Err(_) if !container.root.exists() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("kill container {id} (status {})", container.status())),
    }
}
