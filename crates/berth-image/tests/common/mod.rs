//! Shared by the image tests that talk to the test registry.

use std::path::Path;
use std::sync::Arc;

use berth_image::Images;
use berth_registry::{Client, ClientConfig};

/// The loopback registry holding the test images (started by scripts/test.sh).
pub fn registry() -> String {
    let r = std::env::var("BERTH_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5123".into());
    assert!(
        std::net::TcpStream::connect(&r).is_ok(),
        "test registry {r} is not reachable: run the tests with scripts/test.sh"
    );
    r
}

/// An image service with its store in `dir/root` and hosts.toml files in
/// `dir/certs.d`, reading no credentials.
pub fn images(dir: &Path) -> (Images, Client) {
    let client = Client::new(ClientConfig {
        certs_dir: dir.join("certs.d"),
        docker_config: None,
        creds: None,
        user_agent: "berth-test".into(),
    })
    .unwrap();
    let store = Arc::new(berth_store::Store::open(&dir.join("root")).unwrap());
    (Images::new(store, client.clone()), client)
}
