use std::path::{Path, PathBuf};

use berth_api::Digest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob digest mismatch: expected {expected}, got {actual} ({size} bytes received)")]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} not found in the content store")]
    BlobNotFound(Digest),
    #[error("image {name:?} not found in namespace {namespace}")]
    ImageNotFound { namespace: String, name: String },
    #[error("{kind} name {name:?} in namespace {namespace} is taken by {holder}")]
    NameInUse {
        kind: &'static str,
        name: String,
        namespace: String,
        holder: String,
    },
    #[error("{kind} {id} not found")]
    ObjectNotFound { kind: &'static str, id: String },
    #[error("lease {0} not found")]
    LeaseNotFound(String),
    #[error("metadata database: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("metadata database holds a corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Self {
        let context = context.into();
        move |source| StoreError::Db { context, source }
    }

    /// True when the error means "the object does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::BlobNotFound(_)
                | StoreError::ImageNotFound { .. }
                | StoreError::LeaseNotFound(_)
                | StoreError::ObjectNotFound { .. }
        )
    }
}
