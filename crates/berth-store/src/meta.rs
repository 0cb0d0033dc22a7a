use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use berth_api::{Digest, Namespace};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError, now_nanos};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS namespaces(
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images(
    namespace  TEXT NOT NULL REFERENCES namespaces(name),
    name       TEXT NOT NULL,
    media_type TEXT NOT NULL,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created    INTEGER NOT NULL,
    updated    INTEGER NOT NULL,
    labels     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY(namespace, name)
);
CREATE INDEX IF NOT EXISTS images_by_digest ON images(digest);
CREATE TABLE IF NOT EXISTS snapshots(
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT NOT NULL UNIQUE,
    size    INTEGER NOT NULL,
    created INTEGER NOT NULL
);
-- Edges of the reference graph that gc walks: a manifest refers to its
-- config and layers, a config to its layers' snapshots. Set when a parent is
-- committed, so gc never has to parse image formats.
CREATE TABLE IF NOT EXISTS refs(
    parent TEXT NOT NULL,
    child  TEXT NOT NULL,
    PRIMARY KEY(parent, child)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases(
    id        TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    created   INTEGER NOT NULL,
    expires   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_resources(
    lease    TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    PRIMARY KEY(lease, resource)
) WITHOUT ROWID;
"#;

/// Something gc can collect.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Blob(Digest),
    /// A snapshot by its key (the layer's uncompressed digest).
    Snapshot(String),
}

impl Resource {
    pub(crate) fn encode(&self) -> String {
        match self {
            Resource::Blob(d) => format!("blob:{d}"),
            Resource::Snapshot(k) => format!("snapshot:{k}"),
        }
    }

    pub(crate) fn decode(s: &str) -> Result<Resource, StoreError> {
        if let Some(d) = s.strip_prefix("blob:") {
            return Digest::from_str(d)
                .map(Resource::Blob)
                .map_err(|e| StoreError::Corrupt(format!("resource {s:?}: {e}")));
        }
        if let Some(k) = s.strip_prefix("snapshot:") {
            return Ok(Resource::Snapshot(k.to_string()));
        }
        Err(StoreError::Corrupt(format!("resource {s:?} has an unknown kind")))
    }
}

/// An image: a name in a namespace pointing at a manifest or index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Unix time in nanoseconds.
    pub created: i64,
    pub updated: i64,
    pub labels: BTreeMap<String, String>,
}

/// Keeps resources alive while they are not yet referenced by an image
/// (during a pull, an import, a container's life).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
}

pub(crate) struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db, StoreError> {
        let conn = Connection::open(path).map_err(StoreError::db(format!("open {}", path.display())))?;
        // Another berth process may hold the write lock for a moment (a pull
        // committing, gc sweeping): wait for it rather than fail.
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(StoreError::db("set busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(StoreError::db("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(StoreError::db("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(StoreError::db("enable foreign keys"))?;
        conn.execute_batch(SCHEMA)
            .map_err(StoreError::db("create schema"))?;
        conn.execute_batch(crate::objects::SCHEMA)
            .map_err(StoreError::db("create schema"))?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ensure_namespace(conn: &Connection, ns: &Namespace) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO namespaces(name, created) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![ns.as_str(), now_nanos()],
    )
    .map_err(StoreError::db(format!("create namespace {ns}")))?;
    Ok(())
}

fn row_to_image(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, i64, i64, i64, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

type ImageRow = (String, String, String, i64, i64, i64, String);

fn image_from_row(r: ImageRow) -> Result<ImageRecord, StoreError> {
    let (name, media_type, digest, size, created, updated, labels) = r;
    Ok(ImageRecord {
        digest: digest
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("image {name:?}: {e}")))?,
        labels: serde_json::from_str(&labels)
            .map_err(|e| StoreError::Corrupt(format!("image {name:?} labels: {e}")))?,
        name,
        media_type,
        size: size as u64,
        created,
        updated,
    })
}

const IMAGE_COLS: &str = "name, media_type, digest, size, created, updated, labels";

impl Store {
    /// Creates or updates an image record. Keeps `created` of an existing one.
    pub fn put_image(&self, ns: &Namespace, img: &ImageRecord) -> Result<(), StoreError> {
        let conn = self.db.lock();
        ensure_namespace(&conn, ns)?;
        let labels = serde_json::to_string(&img.labels).expect("labels serialize");
        conn.execute(
            "INSERT INTO images(namespace, name, media_type, digest, size, created, updated, labels)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
             ON CONFLICT(namespace, name) DO UPDATE SET
                media_type = excluded.media_type, digest = excluded.digest, size = excluded.size,
                updated = excluded.updated, labels = excluded.labels",
            params![
                ns.as_str(),
                img.name,
                img.media_type,
                img.digest.as_str(),
                img.size as i64,
                now_nanos(),
                labels
            ],
        )
        .map_err(StoreError::db(format!(
            "store image {:?} in namespace {ns}",
            img.name
        )))?;
        Ok(())
    }

    pub fn get_image(&self, ns: &Namespace, name: &str) -> Result<ImageRecord, StoreError> {
        let conn = self.db.lock();
        let row = conn
            .query_row(
                &format!("SELECT {IMAGE_COLS} FROM images WHERE namespace = ?1 AND name = ?2"),
                params![ns.as_str(), name],
                row_to_image,
            )
            .optional()
            .map_err(StoreError::db(format!("read image {name:?}")))?;
        match row {
            Some(r) => image_from_row(r),
            None => Err(StoreError::ImageNotFound {
                namespace: ns.to_string(),
                name: name.to_string(),
            }),
        }
    }

    /// Images of a namespace, sorted by name.
    pub fn list_images(&self, ns: &Namespace) -> Result<Vec<ImageRecord>, StoreError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {IMAGE_COLS} FROM images WHERE namespace = ?1 ORDER BY name"
            ))
            .map_err(StoreError::db("list images"))?;
        let rows = stmt
            .query_map(params![ns.as_str()], row_to_image)
            .map_err(StoreError::db("list images"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db("list images"))?;
        rows.into_iter().map(image_from_row).collect()
    }

    /// Removes an image name. Its content stays until gc finds it unreferenced.
    pub fn delete_image(&self, ns: &Namespace, name: &str) -> Result<(), StoreError> {
        let conn = self.db.lock();
        let n = conn
            .execute(
                "DELETE FROM images WHERE namespace = ?1 AND name = ?2",
                params![ns.as_str(), name],
            )
            .map_err(StoreError::db(format!("delete image {name:?}")))?;
        if n == 0 {
            return Err(StoreError::ImageNotFound {
                namespace: ns.to_string(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Namespaces that have ever held something.
    pub fn list_namespaces(&self) -> Result<Vec<Namespace>, StoreError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare("SELECT name FROM namespaces ORDER BY name")
            .map_err(StoreError::db("list namespaces"))?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(StoreError::db("list namespaces"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db("list namespaces"))?;
        names
            .into_iter()
            .map(|n| n.parse().map_err(|e| StoreError::Corrupt(format!("{e}"))))
            .collect()
    }

    /// Records that `parent` refers to each of `children` (gc keeps them alive together).
    pub fn add_refs(&self, parent: &Resource, children: &[Resource]) -> Result<(), StoreError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(StoreError::db("begin"))?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO refs(parent, child) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
                .map_err(StoreError::db("add refs"))?;
            let p = parent.encode();
            for c in children {
                stmt.execute(params![p, c.encode()])
                    .map_err(StoreError::db(format!("add ref {p} -> {}", c.encode())))?;
            }
        }
        tx.commit().map_err(StoreError::db("commit refs"))
    }

    /// Direct children of a resource in the reference graph.
    pub fn refs_of(&self, parent: &Resource) -> Result<Vec<Resource>, StoreError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare_cached("SELECT child FROM refs WHERE parent = ?1 ORDER BY child")
            .map_err(StoreError::db("read refs"))?;
        let kids = stmt
            .query_map(params![parent.encode()], |r| r.get::<_, String>(0))
            .map_err(StoreError::db("read refs"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db("read refs"))?;
        kids.iter().map(|k| Resource::decode(k)).collect()
    }

    /// Starts a lease that protects what is added to it for `ttl`, or until deleted.
    pub fn create_lease(&self, ns: &Namespace, ttl: Duration) -> Result<Lease, StoreError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:x}-{:x}-{seq:x}", now_nanos(), std::process::id());
        let conn = self.db.lock();
        let now = now_nanos();
        conn.execute(
            "INSERT INTO leases(id, namespace, created, expires) VALUES (?1, ?2, ?3, ?4)",
            params![id, ns.as_str(), now, now + ttl.as_nanos() as i64],
        )
        .map_err(StoreError::db(format!("create lease in namespace {ns}")))?;
        Ok(Lease { id })
    }

    /// Protects `res` with the lease. Call it before checking whether the
    /// resource exists, so a concurrent gc cannot remove it in between.
    pub fn lease_add(&self, lease: &Lease, res: &Resource) -> Result<(), StoreError> {
        let conn = self.db.lock();
        let n = conn
            .execute(
                "INSERT INTO lease_resources(lease, resource)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM leases WHERE id = ?1)
                 ON CONFLICT DO NOTHING",
                params![lease.id, res.encode()],
            )
            .map_err(StoreError::db(format!(
                "add {} to lease {}",
                res.encode(),
                lease.id
            )))?;
        if n == 0 {
            let exists: bool = conn
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM leases WHERE id = ?1)",
                    params![lease.id],
                    |r| r.get(0),
                )
                .map_err(StoreError::db("read lease"))?;
            if !exists {
                return Err(StoreError::LeaseNotFound(lease.id.clone()));
            }
        }
        Ok(())
    }

    /// Ends a lease; what it protected is now kept only by other references.
    pub fn delete_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let conn = self.db.lock();
        conn.execute("DELETE FROM leases WHERE id = ?1", params![lease.id])
            .map_err(StoreError::db(format!("delete lease {}", lease.id)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        s.parse().unwrap()
    }

    fn img(name: &str, d: u8) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::from_sha256(&[d; 32]),
            size: 10,
            created: 0,
            updated: 0,
            labels: BTreeMap::from([("a".into(), "b".into())]),
        }
    }

    #[test]
    fn images_are_per_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_image(&ns("a"), &img("x:1", 1)).unwrap();
        s.put_image(&ns("b"), &img("x:1", 2)).unwrap();
        assert_eq!(
            s.get_image(&ns("a"), "x:1").unwrap().digest,
            Digest::from_sha256(&[1; 32])
        );
        assert_eq!(
            s.get_image(&ns("b"), "x:1").unwrap().digest,
            Digest::from_sha256(&[2; 32])
        );
        s.delete_image(&ns("a"), "x:1").unwrap();
        assert!(s.get_image(&ns("a"), "x:1").unwrap_err().is_not_found());
        assert_eq!(s.list_images(&ns("b")).unwrap().len(), 1);
        let err = s.delete_image(&ns("a"), "x:1").unwrap_err();
        assert!(
            err.to_string().contains("\"x:1\"") && err.to_string().contains("namespace a"),
            "{err}"
        );
    }

    #[test]
    fn put_keeps_created_and_updates_target() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_image(&ns("a"), &img("x", 1)).unwrap();
        let first = s.get_image(&ns("a"), "x").unwrap();
        s.put_image(&ns("a"), &img("x", 2)).unwrap();
        let second = s.get_image(&ns("a"), "x").unwrap();
        assert_eq!(first.created, second.created);
        assert_eq!(second.digest, Digest::from_sha256(&[2; 32]));
        assert_eq!(second.labels.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn two_handles_on_one_root_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path()).unwrap();
        let b = Store::open(dir.path()).unwrap();
        a.put_image(&ns("default"), &img("x", 1)).unwrap();
        assert_eq!(b.list_images(&ns("default")).unwrap().len(), 1);
    }

    #[test]
    fn lease_on_missing_lease_fails() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let l = s.create_lease(&ns("a"), Duration::from_secs(60)).unwrap();
        s.delete_lease(&l).unwrap();
        let err = s.lease_add(&l, &Resource::Snapshot("k".into())).unwrap_err();
        assert!(matches!(err, StoreError::LeaseNotFound(_)));
    }
}
