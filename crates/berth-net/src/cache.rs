//! The result cache: what ADD used and produced, so DEL and CHECK work
//! after a daemon restart and after the config files changed.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CniError;

pub(crate) const KIND: &str = "berthCniCacheV1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    pub netns: PathBuf,
    /// The whole list as ADD ran it.
    pub config: Value,
    pub result: Value,
    pub cni_args: Vec<(String, String)>,
    /// The runtimeConfig values ADD offered.
    pub capabilities: Map<String, Value>,
}

pub(crate) struct Cache<'a> {
    pub dir: &'a Path,
}

impl Cache<'_> {
    /// `<cache_dir>/results/<network>-<container_id>-<ifname>.json`; all
    /// three parts are validated names, so the path stays in the dir.
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join("results")
            .join(format!("{network}-{container_id}-{ifname}.json"))
    }

    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>, CniError> {
        let path = self.path(network, container_id, ifname);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CniError::Cache {
                    path,
                    step: "reading",
                    source,
                });
            }
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| CniError::BadCache {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if entry.kind != KIND || entry.container_id != container_id || entry.if_name != ifname {
            return Err(CniError::BadCache {
                path,
                reason: format!(
                    "holds kind {:?} for {} {}, not {container_id} {ifname}",
                    entry.kind, entry.container_id, entry.if_name
                ),
            });
        }
        Ok(Some(entry))
    }

    /// Writes the entry durably: temp file, fsync, rename, fsync of the dir,
    /// so a crash leaves either the old entry or the new one.
    pub fn write(&self, entry: &CacheEntry) -> Result<PathBuf, CniError> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let results = path.parent().expect("cache path has a parent");
        let err = |step: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| CniError::Cache {
                path: p,
                step,
                source,
            }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(results)
            .map_err(err("creating the dir", results))?;
        let bytes = serde_json::to_vec_pretty(entry).expect("cache entry serializes");
        let tmp = results.join(format!(
            ".{}.tmp-{}",
            path.file_name().expect("file name").to_string_lossy(),
            std::process::id()
        ));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err("creating", &tmp))?;
        let written = f.write_all(&bytes).and_then(|()| f.sync_all());
        if let Err(source) = written.and_then(|()| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(CniError::Cache {
                path,
                step: "writing",
                source,
            });
        }
        fs::File::open(results)
            .and_then(|d| d.sync_all())
            .map_err(err("syncing the dir", results))?;
        Ok(path)
    }

    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let path = self.path(network, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniError::Cache {
                path,
                step: "removing",
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_read_remove_round_trip_with_private_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cni");
        let cache = Cache { dir: &dir };
        let entry = CacheEntry {
            kind: KIND.into(),
            container_id: "ctr1".into(),
            if_name: "eth0".into(),
            network_name: "net1".into(),
            netns: "/run/x".into(),
            config: serde_json::json!({"name": "net1"}),
            result: serde_json::json!({"cniVersion": "1.0.0"}),
            cni_args: vec![("K".into(), "V".into())],
            capabilities: Map::new(),
        };
        let path = cache.write(&entry).unwrap();
        assert_eq!(path, dir.join("results/net1-ctr1-eth0.json"));
        let mode = fs::metadata(dir.join("results")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(cache.read("net1", "ctr1", "eth0").unwrap(), Some(entry));
        assert_eq!(
            fs::read_dir(dir.join("results")).unwrap().count(),
            1,
            "no temp file left"
        );
        cache.remove("net1", "ctr1", "eth0").unwrap();
        cache.remove("net1", "ctr1", "eth0").unwrap();
        assert_eq!(cache.read("net1", "ctr1", "eth0").unwrap(), None);
    }
}
