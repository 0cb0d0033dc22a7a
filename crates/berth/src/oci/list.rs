//! `berth oci list`: the containers under `--root`, as runc lists them — a
//! table (ID, PID, STATUS, BUNDLE, CREATED, OWNER), a JSON array of state
//! documents, or only the ids.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;
use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use super::Ctx;
use super::bundle::caller_bundle;
use super::state::{rootfs_of, status_name};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// `table` or `json`.
    #[arg(short = 'f', long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the container ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// One container as runc's `list -f json` prints it (its field order too).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Entry {
    oci_version: String,
    id: String,
    pid: i32,
    status: &'static str,
    bundle: PathBuf,
    rootfs: PathBuf,
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<HashMap<String, String>>,
    owner: String,
}

pub fn list(ctx: &Ctx, args: ListArgs) -> Result<()> {
    let entries = containers(&ctx.root)?;
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for e in &entries {
            writeln!(out, "{}", e.id)?;
        }
    } else {
        match args.format {
            // runc encodes a nil slice: `null` when there is none.
            ListFormat::Json if entries.is_empty() => writeln!(out, "null")?,
            ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&entries)?)?,
            ListFormat::Table => out.write_all(table(&entries).as_bytes())?,
        }
    }
    out.flush()?;
    Ok(())
}

/// The containers of `root` in id order. A root that does not exist holds
/// none; a container that cannot be loaded is reported and left out, as
/// runc does, so one broken state does not hide the others.
fn containers(root: &Path) -> Result<Vec<Entry>> {
    let dir = match std::fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read state root {}", root.display())),
    };
    let mut dirs = Vec::new();
    for item in dir {
        let item = item.with_context(|| format!("read state root {}", root.display()))?;
        // Not every directory is a container: berth's shadow bundles live
        // here, and a container being created has no state.json yet.
        if item.file_type().is_ok_and(|t| t.is_dir()) && item.path().join("state.json").exists() {
            dirs.push(item.path());
        }
    }
    dirs.sort();
    let mut users = None;
    let mut entries = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let uid = match std::fs::metadata(&dir) {
            Ok(m) => m.uid(),
            // Deleted meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("stat container {name}")),
        };
        let container = match Container::load(dir.clone()) {
            Ok(c) => c,
            Err(e) => {
                if dir.join("state.json").exists() {
                    eprintln!("load container {name}: {e}");
                }
                continue;
            }
        };
        let users = users.get_or_insert_with(passwd_names);
        entries.push(entry(&container, owner_name(users, uid)));
    }
    Ok(entries)
}

fn entry(container: &Container, owner: String) -> Entry {
    let state = &container.state;
    Entry {
        oci_version: state.oci_version.clone(),
        id: state.id.clone(),
        // runc shows no pid for a container whose process is gone.
        pid: match state.status {
            ContainerStatus::Stopped => 0,
            _ => state.pid.unwrap_or(0),
        },
        status: status_name(state.status),
        bundle: caller_bundle(&state.bundle),
        rootfs: rootfs_of(&state.bundle),
        created: state
            .created
            .map(|c| go_rfc3339_nano(c.timestamp(), c.timestamp_subsec_nanos()))
            .unwrap_or_default(),
        annotations: state.annotations.clone().filter(|a| !a.is_empty()),
        owner,
    }
}

/// A UTC time as Go's `time.RFC3339Nano` prints it (runc's CREATED):
/// nanoseconds with trailing zeros dropped, no fraction for a whole second.
fn go_rfc3339_nano(secs: i64, nanos: u32) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        + time::Duration::nanoseconds(nanos.into());
    let full = berth_runtime::logs::format_rfc3339nano(t);
    let (whole, fraction) = full
        .trim_end_matches('Z')
        .split_once('.')
        .expect("format_rfc3339nano writes a fraction");
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{whole}Z")
    } else {
        format!("{whole}.{fraction}Z")
    }
}

/// uid → user name from /etc/passwd, as runc's owner lookup reads it.
fn passwd_names() -> HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut names = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if let [name, _, uid, ..] = fields[..]
            && let Ok(uid) = uid.parse::<u32>()
        {
            // The first entry of a uid wins, as getpwuid's does.
            names.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    names
}

/// runc prints `#<uid>` for a uid without a user.
fn owner_name(users: &HashMap<u32, String>, uid: u32) -> String {
    users.get(&uid).cloned().unwrap_or_else(|| format!("#{uid}"))
}

/// runc's table: Go's tabwriter with a minimum cell width of 12 and a
/// padding of 3, the last column unpadded.
fn table(entries: &[Entry]) -> String {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for e in entries {
        rows.push([
            e.id.clone(),
            e.pid.to_string(),
            e.status.to_owned(),
            e.bundle.display().to_string(),
            e.created.clone(),
            e.owner.clone(),
        ]);
    }
    const MIN_WIDTH: usize = 12;
    const PADDING: usize = 3;
    let last = rows[0].len() - 1;
    let widths: Vec<usize> = (0..last)
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count() + PADDING)
                .max()
                .unwrap_or(0)
                .max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (cell, width) in row.iter().zip(&widths) {
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        out.push_str(&row[last]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, pid: i32, status: &'static str, bundle: &str, created: &str) -> Entry {
        Entry {
            oci_version: "1.0.2".into(),
            id: id.into(),
            pid,
            status,
            bundle: bundle.into(),
            rootfs: Path::new(bundle).join("rootfs"),
            created: created.into(),
            annotations: None,
            owner: "root".into(),
        }
    }

    #[test]
    fn table_is_laid_out_as_runcs_tabwriter() {
        // What runc 1.1 printed for two containers and for none.
        assert_eq!(
            table(&[]),
            "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
        );
        let rows = [
            entry(
                "rl-a",
                2050,
                "created",
                "/tmp/rlb.SPsz",
                "2026-12-04T16:48:21.815192061Z",
            ),
            entry(
                "rl-b",
                0,
                "stopped",
                "/tmp/rlb.SPsz",
                "2026-12-04T16:48:21.846148172Z",
            ),
        ];
        assert_eq!(
            table(&rows),
            "ID          PID         STATUS      BUNDLE          CREATED                          OWNER\n\
             rl-a        2050        created     /tmp/rlb.SPsz   2026-12-04T16:48:21.815192061Z   root\n\
             rl-b        0           stopped     /tmp/rlb.SPsz   2026-12-04T16:48:21.846148172Z   root\n"
        );
    }

    #[test]
    fn created_drops_trailing_zeros_as_go_does() {
        assert_eq!(
            go_rfc3339_nano(1_475_713_029, 669_794_202),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(
            go_rfc3339_nano(1_475_713_029, 669_000_000),
            "2016-10-06T00:17:09.669Z"
        );
        assert_eq!(go_rfc3339_nano(1_475_713_029, 0), "2016-10-06T00:17:09Z");
    }

    #[test]
    fn json_fields_are_runcs() {
        let v = serde_json::to_value(entry("a", 1, "running", "/b", "2016-10-06T00:17:09Z")).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner",
        ];
        let mut keys = keys;
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
    }

    #[test]
    fn owner_is_the_user_name_or_the_uid() {
        let users = HashMap::from([(0, "root".to_owned())]);
        assert_eq!(owner_name(&users, 0), "root");
        assert_eq!(owner_name(&users, 4242), "#4242");
    }
}
