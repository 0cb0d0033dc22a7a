use std::collections::HashSet;
use std::time::Duration;

use rusqlite::params;

use crate::{Resource, Store, StoreError, now_nanos};

/// What one collection freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcStats {
    pub blobs_removed: u64,
    pub snapshots_removed: u64,
    pub bytes_freed: u64,
    pub leases_expired: u64,
}

/// Staging dirs and ingest files younger than this may belong to a pull in
/// another process, so they are left alone.
const STALE_AFTER: Duration = Duration::from_secs(3600);

impl Store {
    /// Mark and sweep: everything reachable from an image (in any namespace)
    /// a live lease or a pod or container is kept; every other blob and snapshot is removed.
    ///
    /// The write lock is held from marking to the end of the sweep, so a
    /// writer that leases a resource first (see [`Store::lease_add`]) either
    /// protects it in time or finds it gone and fetches it again.
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        let mut stats = GcStats::default();
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin gc"))?;
        stats.leases_expired = tx
            .execute("DELETE FROM leases WHERE expires < ?1", params![now_nanos()])
            .map_err(StoreError::db("expire leases"))? as u64;

        let mut roots: Vec<String> = Vec::new();
        for sql in [
            "SELECT DISTINCT 'blob:' || digest FROM images",
            "SELECT DISTINCT resource FROM lease_resources",
            // Containers keep their image's snapshots even after the image is removed.
            "SELECT DISTINCT resource FROM object_resources",
        ] {
            let mut stmt = tx.prepare(sql).map_err(StoreError::db("read gc roots"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(StoreError::db("read gc roots"))?;
            for r in rows {
                roots.push(r.map_err(StoreError::db("read gc roots"))?);
            }
        }

        let mut live: HashSet<String> = HashSet::new();
        {
            let mut children = tx
                .prepare_cached("SELECT child FROM refs WHERE parent = ?1")
                .map_err(StoreError::db("walk refs"))?;
            while let Some(r) = roots.pop() {
                if !live.insert(r.clone()) {
                    continue;
                }
                let kids = children
                    .query_map(params![r], |row| row.get::<_, String>(0))
                    .map_err(StoreError::db("walk refs"))?;
                for k in kids {
                    roots.push(k.map_err(StoreError::db("walk refs"))?);
                }
            }
        }

        for digest in self.content().list()? {
            let res = Resource::Blob(digest.clone());
            if !live.contains(&res.encode()) {
                stats.bytes_freed += self.content().remove(&digest)?;
                stats.blobs_removed += 1;
                forget(&tx, &res)?;
            }
        }

        let snaps: Vec<(i64, String, i64)> = {
            let mut stmt = tx
                .prepare("SELECT id, key, size FROM snapshots")
                .map_err(StoreError::db("list snapshots"))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(StoreError::db("list snapshots"))?
                .collect::<Result<_, _>>()
                .map_err(StoreError::db("list snapshots"))?
        };
        let mut known_ids = HashSet::new();
        for (id, key, size) in snaps {
            let res = Resource::Snapshot(key);
            if live.contains(&res.encode()) {
                known_ids.insert(id);
                continue;
            }
            self.remove_snapshot_dir(id)?;
            tx.execute("DELETE FROM snapshots WHERE id = ?1", params![id])
                .map_err(StoreError::db("delete snapshot"))?;
            forget(&tx, &res)?;
            stats.snapshots_removed += 1;
            stats.bytes_freed += size as u64;
        }
        self.sweep_snapshot_leftovers(&known_ids)?;
        self.content().clean_ingest(STALE_AFTER)?;
        tx.commit().map_err(StoreError::db("commit gc"))?;
        Ok(stats)
    }

    /// Directories under snapshots/ that no row names (a crash between rename
    /// and commit) and old staging dirs (a crashed unpack).
    fn sweep_snapshot_leftovers(&self, known: &HashSet<i64>) -> Result<(), StoreError> {
        let base = self.root().join("snapshots");
        let rd = std::fs::read_dir(&base).map_err(|e| StoreError::io("list", &base, e))?;
        for entry in rd.flatten() {
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.parse::<i64>().ok())
                && !known.contains(&id)
            {
                self.remove_snapshot_dir(id)?;
            }
        }
        let staging = base.join("staging");
        if let Ok(rd) = std::fs::read_dir(&staging) {
            for entry in rd.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| t.elapsed().unwrap_or_default() > STALE_AFTER)
                    .unwrap_or(false);
                if stale {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// Drops the outgoing edges of a collected resource.
fn forget(tx: &rusqlite::Transaction<'_>, res: &Resource) -> Result<(), StoreError> {
    tx.execute("DELETE FROM refs WHERE parent = ?1", params![res.encode()])
        .map_err(StoreError::db(format!("forget refs of {}", res.encode())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageRecord;
    use berth_api::Digest;
    use berth_api::Namespace;
    use std::collections::BTreeMap;

    fn ns(s: &str) -> Namespace {
        s.parse().unwrap()
    }

    /// manifest -> (config, layer); config -> snapshot of the layer.
    fn fake_image(s: &Store, tag: u8) -> (Digest, Digest, Digest, String) {
        let c = s.content();
        let layer = c.write_all(&[tag; 100], None).unwrap();
        let config = c.write_all(format!("config{tag}").as_bytes(), None).unwrap();
        let manifest = c.write_all(format!("manifest{tag}").as_bytes(), None).unwrap();
        let key = format!("sha256:diff{tag}");
        let lease = s.create_lease(&ns("default"), Duration::from_secs(60)).unwrap();
        let st = s.stage_snapshot().unwrap();
        s.commit_snapshot(&lease, st, &key, 100).unwrap();
        s.add_refs(
            &Resource::Blob(manifest.clone()),
            &[Resource::Blob(config.clone()), Resource::Blob(layer.clone())],
        )
        .unwrap();
        s.add_refs(
            &Resource::Blob(config.clone()),
            &[Resource::Snapshot(key.clone())],
        )
        .unwrap();
        s.delete_lease(&lease).unwrap();
        (manifest, config, layer, key)
    }

    fn record(name: &str, d: &Digest) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            media_type: "m".into(),
            digest: d.clone(),
            size: 1,
            created: 0,
            updated: 0,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn keeps_what_any_namespace_references_and_frees_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (m, c, l, key) = fake_image(&s, 1);
        s.put_image(&ns("a"), &record("img", &m)).unwrap();
        s.put_image(&ns("b"), &record("img", &m)).unwrap();
        let (m2, _, _, key2) = fake_image(&s, 2); // never named: garbage

        let st = s.gc().unwrap();
        assert_eq!(st.blobs_removed, 3);
        assert_eq!(st.snapshots_removed, 1);
        assert!(!s.content().exists(&m2));
        assert!(s.snapshot(&key2).unwrap().is_none());
        for d in [&m, &c, &l] {
            assert!(s.content().exists(d));
        }

        s.delete_image(&ns("a"), "img").unwrap();
        assert_eq!(s.gc().unwrap(), GcStats::default(), "still used by namespace b");
        let snap = s.snapshot(&key).unwrap().unwrap();
        assert!(snap.path.exists());

        s.delete_image(&ns("b"), "img").unwrap();
        let st = s.gc().unwrap();
        assert_eq!((st.blobs_removed, st.snapshots_removed), (3, 1));
        assert!(!snap.path.exists());
        assert!(s.content().list().unwrap().is_empty());
    }

    #[test]
    fn leased_resources_survive_until_the_lease_ends() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let lease = s.create_lease(&ns("a"), Duration::from_secs(60)).unwrap();
        let d = s.content().write_all(b"in flight", None).unwrap();
        s.lease_add(&lease, &Resource::Blob(d.clone())).unwrap();
        assert_eq!(s.gc().unwrap().blobs_removed, 0);
        s.delete_lease(&lease).unwrap();
        assert_eq!(s.gc().unwrap().blobs_removed, 1);
        assert!(!s.content().exists(&d));
    }

    #[test]
    fn expired_leases_protect_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let lease = s.create_lease(&ns("a"), Duration::ZERO).unwrap();
        let d = s.content().write_all(b"abandoned", None).unwrap();
        s.lease_add(&lease, &Resource::Blob(d.clone())).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let st = s.gc().unwrap();
        assert_eq!((st.leases_expired, st.blobs_removed), (1, 1));
    }

    #[test]
    fn orphan_snapshot_dirs_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let orphan = dir.path().join("snapshots/999");
        std::fs::create_dir_all(orphan.join("x")).unwrap();
        s.gc().unwrap();
        assert!(!orphan.exists());
        assert!(dir.path().join("snapshots/staging").exists());
    }
}
