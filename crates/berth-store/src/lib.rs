//! berth's persistent state under one root directory:
//!
//! ```text
//! <root>/content/blobs/sha256/<hex>   committed blobs, immutable, shared by all namespaces
//! <root>/content/ingest/<random>      blobs being written (verified before they move to blobs/)
//! <root>/snapshots/<id>               unpacked layers, one directory each (overlay lowerdirs)
//! <root>/snapshots/staging/<random>   layers being unpacked
//! <root>/metadata.db                  SQLite (WAL): namespaces, images, snapshots, leases, refs
//! ```
//!
//! Two processes (a daemon and a CLI) may open the same root at once: files are
//! only ever published by `rename`, and every metadata change is a SQLite
//! transaction.

mod content;
mod error;
mod gc;
mod meta;
mod snapshot;

use std::path::{Path, PathBuf};

pub use content::{ContentStore, Ingest};
pub use error::StoreError;
pub use gc::GcStats;
pub use meta::{ImageRecord, Lease, Resource};
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
        let content = ContentStore::open(&root.join("content"))?;
        for dir in [root.join("snapshots"), root.join("snapshots/staging")] {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
        }
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

pub(crate) fn now_nanos() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}
