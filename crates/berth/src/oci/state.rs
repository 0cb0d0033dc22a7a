//! `berth oci state`: the container's state as runc prints it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcontainer::container::{Container, ContainerStatus};
use serde::{Deserialize, Serialize};

use super::{Ctx, bundle, load_container};

/// runc's `state` document (`libcontainer/utils.go`'s containerState).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StateDoc {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 with nanoseconds (chrono's serde form, as runc's RFC3339Nano).
    pub created: serde_json::Value,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

pub fn state(ctx: &Ctx, id: &str) -> Result<()> {
    let container = load_container(ctx, id)?;
    let doc = state_doc(&container);
    let json =
        serde_json::to_string_pretty(&doc).with_context(|| format!("encode state of container {id}"))?;
    println!("{json}");
    Ok(())
}

fn state_doc(container: &Container) -> StateDoc {
    let state = &container.state;
    let status = status_name(state.status);
    let bundle = bundle::caller_bundle(&state.bundle);
    StateDoc {
        oci_version: state.oci_version.clone(),
        id: state.id.clone(),
        // runc reports no pid for a container whose process is gone.
        pid: match state.status {
            ContainerStatus::Stopped => 0,
            _ => state.pid.unwrap_or(0),
        },
        status,
        rootfs: rootfs_of(&state.bundle),
        bundle,
        created: state
            .created
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or_else(|| "".into()),
        owner: String::new(),
        annotations: state.annotations.clone().filter(|a| !a.is_empty()),
    }
}

pub(super) fn status_name(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

#[derive(Deserialize)]
struct RootProbe {
    root: Option<RootPath>,
}

#[derive(Deserialize)]
struct RootPath {
    path: PathBuf,
}

/// The rootfs named by the bundle's config, resolved against the bundle.
pub(super) fn rootfs_of(bundle: &Path) -> PathBuf {
    let probe: Option<RootProbe> = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok());
    match probe.and_then(|p| p.root) {
        Some(r) => bundle.join(r.path),
        None => bundle.join("rootfs"),
    }
}
