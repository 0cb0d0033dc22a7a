//! OCI distribution client of berth: image references, containerd
//! `hosts.toml` mirrors, docker credentials and token auth, manifests, and
//! blobs streamed in both directions.
//!
//! One [`Client`] holds one connection pool (plus one per distinct TLS
//! setting a hosts.toml asks for) and a token cache; clone it freely.

pub mod auth;
mod blob_exists;
mod blob_get;
mod blob_mount;
mod blob_push;
mod client;
mod error;
pub mod hosts;
mod manifest_get;
mod manifest_put;
pub mod media_types;
pub mod reference;

pub use berth_api::Digest;
pub use blob_get::BlobStream;
pub use client::{Client, ClientConfig, DEFAULT_UPLOAD_CHUNK_SIZE};
pub use error::{RegistryError, Target};
pub use manifest_get::MAX_MANIFEST_SIZE;
pub use reference::{Reference, ReferenceError};

/// What a manifest fetch found: its media type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

fn pull_scope(repository: &str) -> Vec<String> {
    vec![format!("repository:{repository}:pull")]
}

fn push_scope(repository: &str) -> Vec<String> {
    vec![format!("repository:{repository}:pull,push")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The daemon spawns these futures on a multi-threaded runtime.
    #[test]
    fn futures_are_send_and_client_is_cheap_to_share() {
        let c = Client::new(ClientConfig {
            certs_dir: "/nonexistent".into(),
            docker_config: None,
            creds: None,
            user_agent: "t".into(),
        })
        .unwrap();
        let r = Reference::parse("x").unwrap();
        let d = Digest::from_sha256(&[0; 32]);
        assert_send(&c.get_manifest(&r, "latest"));
        assert_send(&c.get_blob(&r, &d));
        assert_send(&c.blob_exists(&r, &d));
        assert_send(&c.mount_blob(&r, &d, "y"));
        assert_send(&c.push_blob(&r, &d, 0, std::path::Path::new("/x")));
        assert_send(&c.put_manifest(&r, "latest", "a/b", bytes::Bytes::new()));
        fn sync_send<T: Send + Sync + Clone>() {}
        sync_send::<Client>();
    }
}
