//! `berth oci update`: changes a container's cgroup resources, from a
//! resources JSON (runc's `--resources`, `-` for stdin) or from flags.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::LinuxResources;
use serde_json::{Map, Value, json};

use super::{Ctx, cgroup_manager, load_container};

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, or `-` for stdin; flags are then ignored.
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g accepted).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory reservation (soft limit) in bytes.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes; -1 for unlimited.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds per period; -1 for unlimited.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPUs the container may use (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks; -1 for unlimited.
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Container id.
    pub id: String,
}

pub fn update(ctx: &Ctx, args: UpdateArgs) -> Result<()> {
    let id = &args.id;
    let resources = match &args.resources {
        Some(path) => read_resources(path),
        None => resources_from_flags(&args),
    }
    .with_context(|| format!("update container {id}"))?;
    let container = load_container(ctx, id)?;
    cgroup_manager(&container)?
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .with_context(|| format!("update cgroups of container {id}"))
}

fn read_resources(path: &PathBuf) -> Result<LinuxResources> {
    let mut raw = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("read resources from stdin")?;
    } else {
        raw = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    }
    serde_json::from_slice(&raw).context("parse resources JSON")
}

/// Builds the spec's `linux.resources` shape from the flags that were given.
fn resources_from_flags(args: &UpdateArgs) -> Result<LinuxResources> {
    let mut res = Map::new();
    let mut memory = Map::new();
    insert_bytes(&mut memory, "limit", args.memory.as_deref())?;
    insert_bytes(&mut memory, "reservation", args.memory_reservation.as_deref())?;
    insert_bytes(&mut memory, "swap", args.memory_swap.as_deref())?;
    insert_section(&mut res, "memory", memory);
    let mut cpu = Map::new();
    insert_some(&mut cpu, "shares", args.cpu_shares.map(Value::from));
    insert_some(&mut cpu, "quota", args.cpu_quota.map(Value::from));
    insert_some(&mut cpu, "period", args.cpu_period.map(Value::from));
    insert_some(&mut cpu, "cpus", args.cpuset_cpus.clone().map(Value::from));
    insert_some(&mut cpu, "mems", args.cpuset_mems.clone().map(Value::from));
    insert_section(&mut res, "cpu", cpu);
    if let Some(limit) = args.pids_limit {
        res.insert("pids".into(), json!({ "limit": limit }));
    }
    if let Some(weight) = args.blkio_weight {
        res.insert("blockIO".into(), json!({ "weight": weight }));
    }
    serde_json::from_value(Value::Object(res)).context("build resources from flags")
}

fn insert_some(map: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        map.insert(key.into(), v);
    }
}

fn insert_section(res: &mut Map<String, Value>, key: &str, section: Map<String, Value>) {
    if !section.is_empty() {
        res.insert(key.into(), Value::Object(section));
    }
}

fn insert_bytes(map: &mut Map<String, Value>, key: &str, v: Option<&str>) -> Result<()> {
    if let Some(v) = v {
        map.insert(key.into(), parse_bytes(v)?.into());
    }
    Ok(())
}

/// Byte counts as runc takes them: plain, with a k/m/g/t suffix (binary
/// units, optional trailing `b`), or -1 for unlimited.
fn parse_bytes(s: &str) -> Result<i64> {
    let bad = || format!("{s:?} is not a byte count");
    let lower = s.trim().to_ascii_lowercase();
    if lower == "-1" {
        return Ok(-1);
    }
    let digits = lower.trim_end_matches('b');
    let (num, shift) = match digits.chars().last() {
        Some('k') => (&digits[..digits.len() - 1], 10),
        Some('m') => (&digits[..digits.len() - 1], 20),
        Some('g') => (&digits[..digits.len() - 1], 30),
        Some('t') => (&digits[..digits.len() - 1], 40),
        _ => (digits, 0),
    };
    let n: i64 = num.trim().parse().with_context(bad)?;
    n.checked_mul(1 << shift).with_context(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_suffixes() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("2kb").unwrap(), 2048);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
    }
}
