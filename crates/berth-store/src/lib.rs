//! berth's persistent state under one root directory:
//!
//! ```text
//! <root>/content/blobs/sha256/<hex>   committed blobs, immutable, shared by all namespaces
//! <root>/content/ingest/<random>      blobs being written (verified before they move to blobs/)
//! <root>/snapshots/<id>               unpacked layers, one directory each (overlay lowerdirs)
//! <root>/snapshots/staging/<random>   layers being unpacked
//! <root>/metadata.db                  SQLite (WAL): namespaces, images, snapshots, leases, refs,
//!                                     pods and containers
//! ```
//!
//! Two processes (a daemon and a CLI) may open the same root at once: files are
//! only ever published by `rename`, and every metadata change is a SQLite
//! transaction.

mod content;
mod error;
mod gc;
mod meta;
mod objects;
mod snapshot;

use std::path::{Path, PathBuf};

pub use content::{ContentStore, Ingest};
pub use error::StoreError;
pub use gc::GcStats;
pub use meta::{ImageRecord, Lease, Resource};
pub use objects::{ObjectKind, ObjectRow};
pub use snapshot::{SnapshotInfo, Staging};

/// The store: blobs, snapshots and their metadata.
pub struct Store {
    root: PathBuf,
    content: ContentStore,
    db: meta::Db,
}

impl Store {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        // Snapshots hold images' setuid binaries and device nodes, content
        // their private layers: no other user may reach into either.
        for dir in [root.to_path_buf(), root.join("content"), root.join("snapshots")] {
            create_private_dir(&dir)?;
        }
        let content = ContentStore::open(&root.join("content"))?;
        let staging = root.join("snapshots/staging");
        std::fs::create_dir_all(&staging).map_err(|e| StoreError::io("create directory", &staging, e))?;
        let db = meta::Db::open(&root.join("metadata.db"))?;
        Ok(Store {
            root: root.to_path_buf(),
            content,
            db,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io("create directory", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| StoreError::io("chmod 0700", dir, e))
}

pub(crate) fn now_nanos() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        super::Store::open(&root).unwrap();
        for d in ["", "content", "snapshots"] {
            let mode = std::fs::metadata(root.join(d)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{d}");
        }
    }
}
