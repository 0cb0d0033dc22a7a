//! Basic auth against a real `docker-registry` with htpasswd, the Bearer
//! token flow against a token server written here, and credentials staying
//! behind on redirects.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_registry::media_types::OCI_MANIFEST;
use berth_registry::{Client, Reference, RegistryError};
use bytes::Bytes;
use common::*;

fn client_with_creds(dir: &tempfile::TempDir, user: &str, pass: &str) -> Client {
    let mut cfg = config(&dir.path().join("certs.d"));
    cfg.creds = Some((user.into(), pass.into()));
    Client::new(cfg).unwrap()
}

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    let reg = Registry::start_with(Options {
        htpasswd: Some(HTPASSWD),
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = reg.reference("private/app:v1");

    // Correct explicit credentials: a whole push and pull.
    let client = client_with_creds(&dir, "alice", "s3cret");
    let manifest = push_oci_image(&client, &r, dir.path(), 5).await;
    let d = client
        .put_manifest(&r, "v1", OCI_MANIFEST, Bytes::from(manifest.clone()))
        .await
        .unwrap();
    let (desc, body) = client.get_manifest(&r, "v1").await.unwrap();
    assert_eq!((desc.digest, &body[..]), (d, &manifest[..]));
    let layer = bytes_of(4096, 5);
    assert_eq!(read_blob(&client, &r, &digest_of(&layer)).await, layer);

    // No credentials: refused, saying so and naming the host.
    let anonymous = plain_client(&dir);
    let e = anonymous.get_manifest(&r, "v1").await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&reg.host()) && msg.contains("no credentials"),
        "{msg}"
    );

    // Wrong password: refused, naming the user.
    let wrong = client_with_creds(&dir, "alice", "wrong");
    let e = wrong.get_blob(&r, &digest_of(&layer)).await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("refused the credentials of user \"alice\""), "{msg}");
    assert!(msg.contains(&reg.host()), "{msg}");

    // Credentials from a docker config.json, keyed by URL of the host.
    let docker_config = dir.path().join("config.json");
    std::fs::write(
        &docker_config,
        format!(
            r#"{{"auths":{{"http://{}/v2/":{{"auth":"{}"}}}}}}"#,
            reg.host(),
            STANDARD.encode("alice:s3cret")
        ),
    )
    .unwrap();
    let mut cfg = config(&dir.path().join("certs.d"));
    cfg.docker_config = Some(docker_config);
    let from_file = Client::new(cfg).unwrap();
    assert_eq!(from_file.get_manifest(&r, "v1").await.unwrap().1, body);
    assert!(from_file.blob_exists(&r, &digest_of(&layer)).await.unwrap());
}

/// What the fake token-auth registry saw.
#[derive(Default)]
struct Seen {
    token_requests: AtomicUsize,
    unauthorized: AtomicUsize,
    token_queries: Mutex<Vec<Vec<(String, String)>>>,
    storage_authorization: Mutex<Vec<Option<String>>>,
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
const BLOB: &[u8] = b"blob bytes behind a redirect";

/// A registry that wants `Bearer good-token` (issued by its token server to
/// bob:hunter2 for service "fake-registry" and the pull scope of team/app),
/// serving one manifest and one blob that redirects to a storage host.
async fn token_registry(seen: Arc<Seen>) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let storage_seen = seen.clone();
    let storage = serve(Arc::new(move |req: &Req| {
        storage_seen
            .storage_authorization
            .lock()
            .unwrap()
            .push(req.header("authorization").map(str::to_string));
        Resp::new(200).body(BLOB)
    }))
    .await;

    let listener = bind().await;
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let handler = Arc::new(move |req: &Req| {
        if req.path() == "/token" {
            seen.token_requests.fetch_add(1, Ordering::SeqCst);
            let q = req.query();
            seen.token_queries.lock().unwrap().push(q.clone());
            let basic = format!("Basic {}", STANDARD.encode("bob:hunter2"));
            if req.header("authorization") != Some(basic.as_str()) {
                return Resp::new(401)
                    .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#);
            }
            let wants = |k: &str, v: &str| q.iter().any(|(qk, qv)| qk == k && qv == v);
            if !wants("service", "fake-registry") || !wants("scope", "repository:team/app:pull") {
                return Resp::new(400).body("bad service or scope");
            }
            return Resp::new(200)
                .header("Content-Type", "application/json")
                .body(r#"{"token":"good-token","expires_in":300}"#);
        }
        if req.header("authorization") != Some("Bearer good-token") {
            seen.unauthorized.fetch_add(1, Ordering::SeqCst);
            return Resp::new(401)
                .header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="{realm}",service="fake-registry",scope="repository:team/app:pull""#
                    ),
                )
                .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#);
        }
        match req.path() {
            "/v2/team/app/manifests/v1" => Resp::new(200).header("Content-Type", OCI_MANIFEST).body(MANIFEST),
            p if p.starts_with("/v2/team/app/blobs/") => {
                Resp::new(307).header("Location", &format!("http://{storage}/bucket/object"))
            }
            _ => Resp::new(404),
        }
    });
    (serve_on(listener, handler), storage)
}

#[tokio::test]
async fn bearer_token_flow_caches_tokens_and_keeps_them_from_redirects() {
    let seen = Arc::new(Seen::default());
    let (addr, _storage) = token_registry(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();

    let client = client_with_creds(&dir, "bob", "hunter2");
    let (desc, body) = client.get_manifest(&r, "v1").await.unwrap();
    assert_eq!(&body[..], MANIFEST.as_bytes());
    assert_eq!(desc.media_type, OCI_MANIFEST);
    assert_eq!(seen.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(seen.unauthorized.load(Ordering::SeqCst), 1, "one challenge");

    // Same scope: the cached token goes along, no challenge, no token request.
    client.get_manifest(&r, "v1").await.unwrap();
    let blob = read_blob(&client, &r, &digest_of(BLOB)).await;
    assert_eq!(blob, BLOB, "the blob redirect was followed");
    assert_eq!(seen.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(seen.unauthorized.load(Ordering::SeqCst), 1);
    // The storage host never saw the registry token.
    assert_eq!(*seen.storage_authorization.lock().unwrap(), [None]);

    // A clone shares the cache.
    client.clone().get_manifest(&r, "v1").await.unwrap();
    assert_eq!(seen.token_requests.load(Ordering::SeqCst), 1);

    // Wrong credentials: the token server refuses, and the error says who.
    let wrong = client_with_creds(&dir, "bob", "nope");
    let e = wrong.get_manifest(&r, "v1").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("token server") && msg.contains("\"bob\""), "{msg}");
    assert!(msg.contains(&addr.to_string()), "{msg}");

    // Anonymous: refused too, saying no credentials are configured.
    let e = plain_client(&dir).get_manifest(&r, "v1").await.unwrap_err();
    assert!(
        e.is_unauthorized() && e.to_string().contains("no credentials"),
        "{e}"
    );

    // Every token request named the service and the pull scope.
    for q in seen.token_queries.lock().unwrap().iter() {
        assert!(q.contains(&("service".into(), "fake-registry".into())), "{q:?}");
        assert!(
            q.contains(&("scope".into(), "repository:team/app:pull".into())),
            "{q:?}"
        );
    }
}
