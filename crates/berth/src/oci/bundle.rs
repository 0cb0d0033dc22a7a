//! Bundle preparation: what berth changes in a runc-compatible config before
//! libcontainer reads it.
//!
//! - berth always gives libcontainer an explicit cgroups path. libcontainer's
//!   own default (`:youki:<id>`) is a systemd-style name that the cgroupfs
//!   driver would turn into a stray top-level cgroup.
//! - `linux.rootfsPropagation` `rshared`/`rslave`/`rprivate`/`runbindable`
//!   (valid for runc, and what berth's spec generation writes) become the
//!   plain names: libcontainer 0.7 knows only those and always adds MS_REC.
//!
//! libcontainer reads `config.json` from the bundle itself and offers no way
//! to hand it a spec, so a config that needs either change is rewritten
//! into a shadow bundle under the state root (`<root>/@bundles/<id>`, a
//! name no container id can take). The shadow stays until `delete`, because
//! `exec` re-reads the bundle's config; `state` reports the caller's bundle.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// Shadow bundles live here, beside the container directories. `@` is not
/// allowed in container ids, so this never collides with one.
const SHADOW_DIR: &str = "@bundles";
/// Symlink inside a shadow bundle pointing back to the caller's bundle.
const ORIGIN_LINK: &str = "origin";

/// Only the fields we look at; serde skips the rest of config.json.
#[derive(Deserialize)]
struct Probe {
    linux: Option<ProbeLinux>,
}

#[derive(Deserialize)]
struct ProbeLinux {
    #[serde(rename = "cgroupsPath")]
    cgroups_path: Option<String>,
    #[serde(rename = "rootfsPropagation")]
    rootfs_propagation: Option<String>,
}

/// What a shadow bundle changes in the caller's config.
struct Fixes {
    /// Set as `linux.cgroupsPath` (the config names none).
    cgroups_path: Option<String>,
    /// Replaces `linux.rootfsPropagation`.
    rootfs_propagation: Option<&'static str>,
}

/// The name libcontainer accepts for a recursive propagation runc accepts;
/// `None` when `value` needs no change (or is unknown: libcontainer then
/// reports it, naming the value).
fn plain_propagation(value: &str) -> Option<&'static str> {
    match value {
        "rshared" => Some("shared"),
        "rslave" => Some("slave"),
        "rprivate" => Some("private"),
        "runbindable" => Some("unbindable"),
        _ => None,
    }
}

/// The cgroups path berth uses when the spec names none.
pub fn default_cgroups_path(id: &str, systemd: bool) -> String {
    if systemd {
        format!("system.slice:berth:{id}")
    } else {
        format!("/berth/{id}")
    }
}

/// The bundle directory libcontainer should read.
pub struct Prepared {
    pub dir: PathBuf,
    /// Whether `dir` is a shadow bundle berth wrote (and must remove).
    pub shadowed: bool,
}

/// Returns the caller's bundle when its config names a cgroups path, else a
/// shadow copy that does.
pub fn prepare(root: &Path, id: &str, bundle: &Path, systemd: bool) -> Result<Prepared> {
    let bundle = bundle
        .canonicalize()
        .with_context(|| format!("resolve bundle {} of container {id}", bundle.display()))?;
    let config_path = bundle.join("config.json");
    let raw = std::fs::read(&config_path)
        .with_context(|| format!("read {} for container {id}", config_path.display()))?;
    let probe: Probe = serde_json::from_slice(&raw)
        .with_context(|| format!("parse {} for container {id}", config_path.display()))?;
    let linux = probe.linux;
    let has_path = linux
        .as_ref()
        .and_then(|l| l.cgroups_path.as_deref())
        .is_some_and(|p| !p.is_empty());
    let fixes = Fixes {
        cgroups_path: (!has_path).then(|| default_cgroups_path(id, systemd)),
        rootfs_propagation: linux
            .as_ref()
            .and_then(|l| l.rootfs_propagation.as_deref())
            .and_then(plain_propagation),
    };
    if fixes.cgroups_path.is_none() && fixes.rootfs_propagation.is_none() {
        return Ok(Prepared {
            dir: bundle,
            shadowed: false,
        });
    }
    let dir = write_shadow(root, id, &bundle, &raw, &fixes)?;
    Ok(Prepared { dir, shadowed: true })
}

fn write_shadow(root: &Path, id: &str, bundle: &Path, raw: &[u8], fixes: &Fixes) -> Result<PathBuf> {
    let mut spec: serde_json::Value = serde_json::from_slice(raw)
        .with_context(|| format!("parse config.json of bundle {}", bundle.display()))?;
    let obj = spec
        .as_object_mut()
        .with_context(|| format!("config.json of bundle {} is not an object", bundle.display()))?;
    let linux = obj
        .entry("linux")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .with_context(|| {
            format!(
                "linux in config.json of bundle {} is not an object",
                bundle.display()
            )
        })?;
    if let Some(path) = &fixes.cgroups_path {
        linux.insert("cgroupsPath".into(), path.as_str().into());
    }
    if let Some(propagation) = fixes.rootfs_propagation {
        linux.insert("rootfsPropagation".into(), propagation.into());
    }
    // A relative root would now resolve against the shadow directory.
    if let Some(root_path) = obj
        .get_mut("root")
        .and_then(|r| r.get_mut("path"))
        .filter(|p| p.as_str().is_some_and(|s| !s.starts_with('/')))
    {
        let abs = bundle.join(root_path.as_str().unwrap_or_default());
        *root_path = abs.to_string_lossy().into_owned().into();
    }
    let shadow = shadow_dir(root, id);
    if shadow.exists() {
        std::fs::remove_dir_all(&shadow)
            .with_context(|| format!("remove stale shadow bundle {}", shadow.display()))?;
    }
    std::fs::create_dir_all(&shadow)
        .with_context(|| format!("create shadow bundle {} for container {id}", shadow.display()))?;
    std::os::unix::fs::symlink(bundle, shadow.join(ORIGIN_LINK))
        .with_context(|| format!("link shadow bundle of container {id} to its origin"))?;
    std::fs::write(shadow.join("config.json"), serde_json::to_vec(&spec)?)
        .with_context(|| format!("write shadow config.json of container {id}"))?;
    Ok(shadow)
}

fn shadow_dir(root: &Path, id: &str) -> PathBuf {
    root.join(SHADOW_DIR).join(id)
}

/// The bundle the caller gave, for a bundle path recorded in state.
pub fn caller_bundle(recorded: &Path) -> PathBuf {
    let is_shadow = recorded
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == SHADOW_DIR);
    if is_shadow && let Ok(origin) = std::fs::read_link(recorded.join(ORIGIN_LINK)) {
        return origin;
    }
    recorded.to_owned()
}

/// Removes a container's shadow bundle, if it has one.
pub fn remove_shadow(root: &Path, id: &str) -> Result<()> {
    let shadow = shadow_dir(root, id);
    match std::fs::remove_dir_all(&shadow) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove shadow bundle {} of container {id}", shadow.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_with_cgroups_path_is_used_in_place() {
        let root = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"cgroupsPath":"/x/c1"}}"#,
        )
        .unwrap();
        let prepared = prepare(root.path(), "c1", bundle.path(), false).unwrap();
        assert!(!prepared.shadowed);
        assert_eq!(prepared.dir, bundle.path().canonicalize().unwrap());
        assert!(!root.path().join(SHADOW_DIR).exists());
    }

    #[test]
    fn config_without_cgroups_path_gets_shadow_with_berth_path() {
        let root = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{}}"#,
        )
        .unwrap();
        let prepared = prepare(root.path(), "c1", bundle.path(), false).unwrap();
        assert!(prepared.shadowed);
        let dir = prepared.dir;
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(spec["linux"]["cgroupsPath"], "/berth/c1");
        let canon = bundle.path().canonicalize().unwrap();
        assert_eq!(spec["root"]["path"], canon.join("rootfs").to_str().unwrap());
        assert_eq!(caller_bundle(&dir), canon);
        remove_shadow(root.path(), "c1").unwrap();
        assert!(!dir.exists());
        remove_shadow(root.path(), "c1").unwrap();
    }

    #[test]
    fn recursive_rootfs_propagation_gets_shadow_with_plain_name() {
        let root = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        for (given, want) in [
            ("rshared", "shared"),
            ("rslave", "slave"),
            ("rprivate", "private"),
            ("runbindable", "unbindable"),
        ] {
            std::fs::write(
                bundle.path().join("config.json"),
                format!(
                    r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"linux":{{"cgroupsPath":"/x/c1","rootfsPropagation":"{given}"}}}}"#
                ),
            )
            .unwrap();
            let prepared = prepare(root.path(), "c1", bundle.path(), false).unwrap();
            assert!(prepared.shadowed, "{given}");
            let spec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(prepared.dir.join("config.json")).unwrap()).unwrap();
            assert_eq!(spec["linux"]["rootfsPropagation"], want);
            // The caller's cgroups path is kept, not replaced by berth's.
            assert_eq!(spec["linux"]["cgroupsPath"], "/x/c1");
            remove_shadow(root.path(), "c1").unwrap();
        }
        // The caller's own config is never rewritten.
        let own: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(own["linux"]["rootfsPropagation"], "runbindable");
    }

    #[test]
    fn plain_rootfs_propagation_is_used_in_place() {
        let root = tempfile::tempdir().unwrap();
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"cgroupsPath":"/x/c1","rootfsPropagation":"slave"}}"#,
        )
        .unwrap();
        let prepared = prepare(root.path(), "c1", bundle.path(), false).unwrap();
        assert!(!prepared.shadowed);
    }
}
