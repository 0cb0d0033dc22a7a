use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use crate::{Lease, Resource, Store, StoreError, now_nanos};

/// A committed snapshot: one unpacked layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: i64,
    /// The layer's uncompressed digest (its diff_id).
    pub key: String,
    /// Bytes of regular files in it.
    pub size: u64,
    /// The directory, usable as an overlay lowerdir.
    pub path: PathBuf,
}

/// A directory a layer is being unpacked into. Removed on drop unless committed.
pub struct Staging {
    dir: Option<PathBuf>,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir.as_deref().expect("staging dir present until commit")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take()
            && let Err(e) = remove_tree(&dir)
        {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove staging snapshot");
        }
    }
}

fn remove_tree(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

impl Store {
    fn snapshot_dir(&self, id: i64) -> PathBuf {
        self.root().join("snapshots").join(id.to_string())
    }

    /// A fresh, empty directory on the same filesystem as the snapshots.
    pub fn stage_snapshot(&self) -> Result<Staging, StoreError> {
        let base = self.root().join("snapshots/staging");
        let dir = tempfile::Builder::new()
            .prefix("s-")
            .tempdir_in(&base)
            .map_err(|e| StoreError::io("create staging snapshot in", &base, e))?
            .keep();
        Ok(Staging { dir: Some(dir) })
    }

    pub fn snapshot(&self, key: &str) -> Result<Option<SnapshotInfo>, StoreError> {
        let conn = self.db.lock();
        let row = conn
            .query_row(
                "SELECT id, size FROM snapshots WHERE key = ?1",
                params![key],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(StoreError::db(format!("read snapshot {key}")))?;
        Ok(row.map(|(id, size)| SnapshotInfo {
            id,
            key: key.to_string(),
            size: size as u64,
            path: self.snapshot_dir(id),
        }))
    }

    /// Publishes a staged layer under `key`, protected by `lease` until an
    /// image refers to it. If another writer committed the same key first,
    /// that one wins and the staging directory is discarded.
    pub fn commit_snapshot(
        &self,
        lease: &Lease,
        staging: Staging,
        key: &str,
        size: u64,
    ) -> Result<SnapshotInfo, StoreError> {
        self.lease_add(lease, &Resource::Snapshot(key.to_string()))?;
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin"))?;
        let existing: Option<(i64, i64)> = tx
            .query_row(
                "SELECT id, size FROM snapshots WHERE key = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(StoreError::db(format!("read snapshot {key}")))?;
        if let Some((id, size)) = existing {
            drop(tx);
            drop(staging);
            return Ok(SnapshotInfo {
                id,
                key: key.into(),
                size: size as u64,
                path: self.snapshot_dir(id),
            });
        }
        tx.execute(
            "INSERT INTO snapshots(key, size, created) VALUES (?1, ?2, ?3)",
            params![key, size as i64, now_nanos()],
        )
        .map_err(StoreError::db(format!("record snapshot {key}")))?;
        let id = tx.last_insert_rowid();
        let target = self.snapshot_dir(id);
        // A directory at this id can only be the leftover of a commit that
        // crashed before its transaction landed.
        remove_tree(&target).map_err(|e| StoreError::io("remove stale snapshot", &target, e))?;
        let mut staging = staging;
        let src = staging.dir.take().expect("staging dir");
        if let Err(e) = std::fs::rename(&src, &target) {
            staging.dir = Some(src);
            return Err(StoreError::io("publish snapshot at", &target, e));
        }
        tx.commit()
            .map_err(StoreError::db(format!("commit snapshot {key}")))?;
        Ok(SnapshotInfo {
            id,
            key: key.into(),
            size,
            path: target,
        })
    }

    /// Every committed snapshot.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>, StoreError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare("SELECT id, key, size FROM snapshots ORDER BY id")
            .map_err(StoreError::db("list snapshots"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })
            .map_err(StoreError::db("list snapshots"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db("list snapshots"))?;
        Ok(rows
            .into_iter()
            .map(|(id, key, size)| SnapshotInfo {
                id,
                key,
                size: size as u64,
                path: self.snapshot_dir(id),
            })
            .collect())
    }

    pub(crate) fn remove_snapshot_dir(&self, id: i64) -> Result<(), StoreError> {
        let dir = self.snapshot_dir(id);
        remove_tree(&dir).map_err(|e| StoreError::io("remove snapshot", &dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn commit_moves_staging_into_place_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let lease = s
            .create_lease(&"default".parse().unwrap(), Duration::from_secs(60))
            .unwrap();
        let st = s.stage_snapshot().unwrap();
        std::fs::write(st.path().join("f"), b"x").unwrap();
        let staged = st.path().to_path_buf();
        let info = s.commit_snapshot(&lease, st, "sha256:k", 1).unwrap();
        assert!(!staged.exists());
        assert_eq!(std::fs::read(info.path.join("f")).unwrap(), b"x");
        assert_eq!(s.snapshot("sha256:k").unwrap(), Some(info.clone()));

        let st2 = s.stage_snapshot().unwrap();
        let staged2 = st2.path().to_path_buf();
        let again = s.commit_snapshot(&lease, st2, "sha256:k", 1).unwrap();
        assert_eq!(again.id, info.id);
        assert!(!staged2.exists(), "losing staging dir is discarded");
        assert_eq!(s.list_snapshots().unwrap().len(), 1);
    }

    #[test]
    fn dropped_staging_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let st = s.stage_snapshot().unwrap();
        let p = st.path().to_path_buf();
        std::fs::create_dir(p.join("d")).unwrap();
        drop(st);
        assert!(!p.exists());
    }
}
