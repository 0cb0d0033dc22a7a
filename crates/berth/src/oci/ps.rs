//! `berth oci ps`: the processes in the container's cgroup.

use std::process::Command;

use anyhow::{Context, Result};
use clap::ValueEnum;
use libcgroups::common::CgroupManager;

use super::{Ctx, cgroup_manager, load_container};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsFormat {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// `table` (ps(1) lines) or `json` (an array of pids).
    #[arg(short = 'f', long, value_enum, default_value_t = PsFormat::Table)]
    pub format: PsFormat,
    /// Container id.
    pub id: String,
    /// Options for ps(1) in table format (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

pub fn ps(ctx: &Ctx, args: PsArgs) -> Result<()> {
    let id = &args.id;
    let container = load_container(ctx, id)?;
    let pids: Vec<i32> = cgroup_manager(&container)?
        .get_all_pids()
        .with_context(|| format!("list processes of container {id}"))?
        .iter()
        .map(|p| p.as_raw())
        .collect();
    match args.format {
        PsFormat::Json => println!("{}", serde_json::to_string(&pids)?),
        PsFormat::Table => print_table(&pids, &args.ps_options)
            .with_context(|| format!("list processes of container {id}"))?,
    }
    Ok(())
}

/// Runs ps(1) and keeps its header and the lines of the container's pids.
fn print_table(pids: &[i32], options: &[String]) -> Result<()> {
    let options = if options.is_empty() {
        &["-ef".to_owned()][..]
    } else {
        options
    };
    let out = Command::new("ps").args(options).output().context("run ps")?;
    if !out.status.success() {
        anyhow::bail!("ps failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}
