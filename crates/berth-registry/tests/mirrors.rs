//! Mirrors from hosts.toml with two real registries, and digest checks
//! against a server that lies.

mod common;

use std::sync::{Arc, Mutex};

use berth_registry::hosts::Capabilities;
use berth_registry::media_types::OCI_MANIFEST;
use berth_registry::{Client, Reference, RegistryError};
use bytes::Bytes;
use common::*;

/// Pushes an image to `reg` as `repo:v1`; returns (manifest bytes, layer).
async fn seed(reg: &Registry, repo: &str, dir: &std::path::Path, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let client = Client::new(config(&dir.join("seed-certs"))).unwrap();
    let r = reg.reference(&format!("{repo}:v1"));
    let manifest = push_oci_image(&client, &r, dir, seed).await;
    client
        .put_manifest(&r, "v1", OCI_MANIFEST, Bytes::from(manifest.clone()))
        .await
        .unwrap();
    (manifest, bytes_of(4096, seed))
}

fn write_hosts(certs: &std::path::Path, dir_name: &str, toml: &str) {
    std::fs::create_dir_all(certs.join(dir_name)).unwrap();
    std::fs::write(certs.join(dir_name).join("hosts.toml"), toml).unwrap();
}

#[tokio::test]
async fn pull_through_the_mirror_when_the_upstream_is_down() {
    let mirror = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, layer) = seed(&mirror, "library/app", dir.path(), 1).await;

    // The upstream: a loopback port nobody listens on.
    let upstream = format!("127.0.0.1:{}", free_port());
    let certs = dir.path().join("certs.d");
    write_hosts(
        &certs,
        &upstream,
        &format!(
            "[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.host()
        ),
    );
    let client = Client::new(config(&certs)).unwrap();
    let r = Reference::parse(&format!("{upstream}/library/app:v1")).unwrap();

    let (desc, body) = client.get_manifest(&r, "v1").await.unwrap();
    assert_eq!(&body[..], &manifest[..]);
    assert_eq!(desc.digest, digest_of(&manifest));
    let s = client.get_blob(&r, &digest_of(&layer)).await.unwrap();
    assert_eq!(s.target().host, mirror.host(), "served by the mirror");
    assert_eq!(s.target().mirror_of.as_deref(), Some(upstream.as_str()));
    drop(s);
    assert_eq!(read_blob(&client, &r, &digest_of(&layer)).await, layer);
    // The mirror was told which registry it stands in for.
    assert!(
        mirror.requests().iter().any(|l| l.contains(&format!(
            "/v2/library/app/manifests/v1?ns={}",
            upstream.replace(':', "%3A")
        ))),
        "{:#?}",
        mirror.requests()
    );

    // Push never goes to a pull-only mirror: here only the dead upstream
    // is eligible, and the error is about it.
    let (d, path) = write_blob(dir.path(), b"push me");
    let uploads = "/v2/library/app/blobs/uploads/";
    let seeding_uploads = mirror.wait_count("POST", uploads, 2).await;
    let e = client.push_blob(&r, &d, 7, &path).await.unwrap_err();
    assert_eq!(e.target().unwrap().host, upstream, "{e}");
    assert!(matches!(e, RegistryError::Http { .. }), "{e}");
    assert_eq!(
        mirror.count("POST", uploads),
        seeding_uploads,
        "no upload at the mirror"
    );
    assert_eq!(
        client.endpoints(&r, Capabilities::PUSH).unwrap().len(),
        1,
        "only the upstream pushes"
    );
}

#[tokio::test]
async fn falls_back_to_the_upstream_when_mirrors_are_down_or_lack_the_image() {
    let upstream = Registry::start().await;
    let empty_mirror = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, layer) = seed(&upstream, "team/app", dir.path(), 2).await;

    let dead = format!("127.0.0.1:{}", free_port());
    let certs = dir.path().join("certs.d");
    // containerd's `host_port_` directory form; no `server`, so the default
    // upstream (plain HTTP for loopback) comes last.
    write_hosts(
        &certs,
        &format!("127.0.0.1_{}_", upstream.port),
        &format!(
            "[host.\"http://{dead}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\
             [host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            empty_mirror.host()
        ),
    );
    let client = Client::new(config(&certs)).unwrap();
    let r = upstream.reference("team/app:v1");
    assert_eq!(client.endpoints(&r, Capabilities::PULL).unwrap().len(), 3);

    let (desc, body) = client.get_manifest(&r, "v1").await.unwrap();
    assert_eq!(&body[..], &manifest[..]);
    assert_eq!(desc.digest, digest_of(&manifest));
    let s = client.get_blob(&r, &digest_of(&layer)).await.unwrap();
    assert_eq!(s.target().host, upstream.host(), "served by the upstream");
    assert_eq!(s.target().mirror_of, None);
    drop(s);
    assert_eq!(read_blob(&client, &r, &digest_of(&layer)).await, layer);
    // The empty mirror was asked first and said 404.
    assert!(
        empty_mirror
            .wait_count("GET", "/v2/team/app/manifests/v1", 1)
            .await
            >= 1
    );

    // Nothing has it: the upstream's NotFound is the answer.
    let e = client.get_manifest(&r, "v2").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(e.target().unwrap().host, upstream.host());
}

#[tokio::test]
async fn digest_mismatch_is_detected() {
    let good = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    let evil = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[],"evil":1}"#;
    let good_digest = digest_of(good);
    let evil_digest = digest_of(evil);
    let announced = Arc::new(Mutex::new(good_digest.to_string()));
    let announced2 = announced.clone();
    // A server that answers every manifest request with `evil`.
    let addr = serve(Arc::new(move |_req: &Req| {
        Resp::new(200)
            .header("Content-Type", OCI_MANIFEST)
            .header("Docker-Content-Digest", &announced2.lock().unwrap())
            .body(&evil[..])
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = plain_client(&dir);
    let r = Reference::parse(&format!("{addr}/x/y:v1")).unwrap();

    // Asked by digest: the bytes do not hash to it.
    let e = client.get_manifest(&r, good_digest.as_str()).await.unwrap_err();
    match &e {
        RegistryError::DigestMismatch { expected, got, .. } => {
            assert_eq!((expected, got), (&good_digest, &evil_digest));
        }
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("expected {good_digest}, got {evil_digest}")),
        "{msg}"
    );
    assert!(msg.contains(&addr.to_string()) && msg.contains("x/y"), "{msg}");

    // Asked by tag: Docker-Content-Digest disagrees with the bytes.
    let e = client.get_manifest(&r, "v1").await.unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");

    // An honest header for the same bytes passes.
    *announced.lock().unwrap() = evil_digest.to_string();
    let (desc, _) = client.get_manifest(&r, "v1").await.unwrap();
    assert_eq!(desc.digest, evil_digest);
}

#[tokio::test]
async fn a_mirror_serving_wrong_bytes_is_skipped() {
    let upstream = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = seed(&upstream, "app", dir.path(), 3).await;
    let liar = serve(Arc::new(|_req: &Req| {
        Resp::new(200)
            .header("Content-Type", OCI_MANIFEST)
            .body(r#"{"schemaVersion":2,"layers":[]}"#)
    }))
    .await;
    let certs = dir.path().join("certs.d");
    // The `host:port` directory form this time.
    write_hosts(&certs, &upstream.host(), &format!("[host.\"http://{liar}\"]\n"));
    let client = Client::new(config(&certs)).unwrap();
    let r = upstream.reference("app:v1");
    let d = digest_of(&manifest);
    let (desc, body) = client.get_manifest(&r, d.as_str()).await.unwrap();
    assert_eq!(desc.digest, d);
    assert_eq!(&body[..], &manifest[..]);
}
