//! Network config files: `.conflist` lists, and single-plugin `.conf` /
//! `.json` files wrapped as one-plugin lists.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::CniError;
use crate::exec::is_plain_name;

/// Spec versions this client reads results of and may hand to plugins,
/// newest last.
const KNOWN_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

const EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// A parsed network configuration list.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    /// CHECK is skipped when the list sets `disableCheck`.
    pub disable_check: bool,
    /// Each plugin's config object, as in the file.
    pub plugins: Vec<Value>,
    /// The file it came from (empty for lists built in memory).
    pub source: PathBuf,
    raw: Value,
}

impl NetworkList {
    /// Parses a config file's bytes; `path` names it in errors and its
    /// extension says whether it is a list.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<NetworkList, CniError> {
        let bad = |reason: String| CniError::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let is_list_file = path.extension().is_some_and(|e| e == "conflist");
        let raw = if value.get("plugins").is_some() || is_list_file {
            value
        } else {
            wrap_single(value).map_err(bad)?
        };
        NetworkList::from_value(raw, path.to_path_buf())
    }

    /// Validates a list given as JSON (`{"cniVersion","name","plugins"}`).
    pub fn from_value(raw: Value, source: PathBuf) -> Result<NetworkList, CniError> {
        let bad = |reason: String| CniError::BadConfig {
            path: source.clone(),
            reason,
        };
        let obj = raw.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"name\" string".into()))?;
        if !is_valid_network_name(name) {
            return Err(bad(format!(
                "network name {name:?} is not valid (letters, digits, '_', '.', '-', starting with a letter or digit)"
            )));
        }
        let cni_version = pick_version(obj).map_err(bad)?;
        let plugins = obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no \"plugins\" array".into()))?;
        if plugins.is_empty() {
            return Err(bad("\"plugins\" is empty".into()));
        }
        for (i, p) in plugins.iter().enumerate() {
            let ty = p
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("plugin {i} has no \"type\" string")))?;
            if !is_plain_name(ty) {
                return Err(bad(format!("plugin {i} type {ty:?} is not a file name")));
            }
        }
        Ok(NetworkList {
            name: name.to_string(),
            disable_check: obj.get("disableCheck").and_then(Value::as_bool).unwrap_or(false),
            plugins: plugins.clone(),
            cni_version,
            source,
            raw,
        })
    }

    /// The list as JSON, as read (what the cache records).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    pub(crate) fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index]["type"]
            .as_str()
            .expect("validated in from_value")
    }
}

/// A single plugin config becomes a list holding it.
fn wrap_single(value: Value) -> Result<Value, String> {
    let obj = value.as_object().ok_or("not a JSON object")?;
    let mut list = Map::new();
    for key in ["cniVersion", "name", "disableCheck"] {
        if let Some(v) = obj.get(key) {
            list.insert(key.to_string(), v.clone());
        }
    }
    list.insert("plugins".into(), Value::Array(vec![value.clone()]));
    Ok(Value::Object(list))
}

/// The list's version: the newest of `cniVersions` (CNI 1.1) this client
/// knows, else `cniVersion`.
fn pick_version(obj: &Map<String, Value>) -> Result<String, String> {
    if let Some(list) = obj.get("cniVersions").and_then(Value::as_array) {
        let best = list
            .iter()
            .filter_map(Value::as_str)
            .filter(|v| KNOWN_VERSIONS.contains(v))
            .max_by_key(|v| version_key(v));
        if let Some(v) = best {
            return Ok(v.to_string());
        }
    }
    let v = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or("no \"cniVersion\" string")?;
    if version_key(v).is_none() {
        return Err(format!("cniVersion {v:?} is not a version"));
    }
    Ok(v.to_string())
}

/// `major.minor.patch` as numbers, for comparing versions.
pub(crate) fn version_key(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let key = (
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    );
    Some(key)
}

pub(crate) fn at_least(v: &str, min: (u32, u32, u32)) -> bool {
    version_key(v).is_some_and(|k| k >= min)
}

pub(crate) fn is_valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The config files of one dir, sorted by name; a missing dir has none.
pub(crate) fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CniError::ConfDir {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CniError::ConfDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub(crate) fn load_file(path: &Path) -> Result<NetworkList, CniError> {
    let bytes = std::fs::read(path).map_err(|e| CniError::BadConfig {
        path: path.to_path_buf(),
        reason: format!("reading it failed: {e}"),
    })?;
    NetworkList::from_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_conf_is_wrapped() {
        let conf = br#"{"cniVersion":"0.4.0","name":"one","type":"bridge","bridge":"cni0"}"#;
        let l = NetworkList::from_bytes(Path::new("/x/10-one.conf"), conf).unwrap();
        assert_eq!(l.name, "one");
        assert_eq!(l.cni_version, "0.4.0");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugin_type(0), "bridge");
    }

    #[test]
    fn rejects_path_like_plugin_types_and_bad_names() {
        let conf = br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#;
        let err = NetworkList::from_bytes(Path::new("/x/a.conflist"), conf).unwrap_err();
        assert!(err.to_string().contains("/x/a.conflist"), "{err}");
        let conf = br#"{"cniVersion":"1.0.0","name":"../n","plugins":[{"type":"bridge"}]}"#;
        assert!(NetworkList::from_bytes(Path::new("/x/a.conflist"), conf).is_err());
        let conf = br#"{"cniVersion":"1.0.0","name":"n"}"#;
        assert!(NetworkList::from_bytes(Path::new("/x/a.conflist"), conf).is_err());
    }

    #[test]
    fn picks_newest_known_of_cni_versions() {
        let conf = br#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","9.0.0"],"name":"n","plugins":[{"type":"bridge"}]}"#;
        let l = NetworkList::from_bytes(Path::new("/x/a.conflist"), conf).unwrap();
        assert_eq!(l.cni_version, "1.1.0");
    }
}
