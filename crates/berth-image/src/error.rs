use berth_api::Digest;

/// Why an image operation failed; each variant names the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] berth_registry::ReferenceError),
    #[error(transparent)]
    Registry(#[from] berth_registry::RegistryError),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("{what} {digest}: {reason}")]
    Malformed {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error("{what} {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        what: &'static str,
        digest: Digest,
        media_type: String,
    },
    #[error("image {reference} has no manifest for {wanted} (it has: {available})")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("layer {layer}: uncompressed content has digest {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {layer}: {source}")]
    Layer {
        layer: Digest,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Archive(String),
}

impl ImageError {
    pub fn is_not_found(&self) -> bool {
        match self {
            ImageError::NotFound(_) => true,
            ImageError::Store(e) => e.is_not_found(),
            ImageError::Registry(e) => e.is_not_found(),
            _ => false,
        }
    }

    pub(crate) fn malformed(what: &'static str, digest: &Digest, reason: impl std::fmt::Display) -> Self {
        ImageError::Malformed {
            what,
            digest: digest.clone(),
            reason: reason.to_string(),
        }
    }
}
