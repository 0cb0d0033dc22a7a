//! Push and pull against a real `docker-registry`.

mod common;

use berth_registry::media_types::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use bytes::Bytes;
use common::*;

#[tokio::test]
async fn monolithic_push_then_exists_and_streamed_get() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = plain_client(&dir);
    let r = reg.reference("blobs/mono:v1");

    let data = bytes_of(300_000, 1);
    let (d, path) = write_blob(dir.path(), &data);
    assert!(
        !client.blob_exists(&r, &d).await.unwrap(),
        "not there before the push"
    );
    client.push_blob(&r, &d, data.len() as u64, &path).await.unwrap();
    assert!(client.blob_exists(&r, &d).await.unwrap(), "there after the push");

    let s = client.get_blob(&r, &d).await.unwrap();
    assert_eq!(s.content_length(), Some(data.len() as u64));
    assert_eq!(s.target().host, reg.host());
    drop(s);
    assert_eq!(read_blob(&client, &r, &d).await, data);

    // An empty blob works too.
    let (e, path) = write_blob(dir.path(), b"");
    client.push_blob(&r, &e, 0, &path).await.unwrap();
    assert!(client.blob_exists(&r, &e).await.unwrap());
    assert!(read_blob(&client, &r, &e).await.is_empty());

    // One request carried each body: no PATCH, two PUTs with data.
    let uploads = "/v2/blobs/mono/blobs/uploads/";
    assert_eq!(
        reg.wait_count("PUT", uploads, 2).await,
        2,
        "{:#?}",
        reg.requests()
    );
    assert_eq!(reg.count("PATCH", uploads), 0, "{:#?}", reg.requests());
}

#[tokio::test]
async fn chunked_push_with_a_small_threshold() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB chunks: 1 MiB + 123 bytes makes 17 PATCHes, the last one short.
    let client = plain_client(&dir).with_upload_chunk_size(64 << 10);
    let r = reg.reference("blobs/chunked:v1");
    let data = bytes_of((1 << 20) + 123, 2);
    let (d, path) = write_blob(dir.path(), &data);
    assert!(!client.blob_exists(&r, &d).await.unwrap());
    client.push_blob(&r, &d, data.len() as u64, &path).await.unwrap();
    assert!(client.blob_exists(&r, &d).await.unwrap());
    assert_eq!(read_blob(&client, &r, &d).await, data);
    let uploads = "/v2/blobs/chunked/blobs/uploads/";
    assert_eq!(
        reg.wait_count("PATCH", uploads, 17).await,
        17,
        "{:#?}",
        reg.requests()
    );
    assert_eq!(reg.count("PUT", uploads), 1);
}

#[tokio::test]
async fn push_with_wrong_digest_or_size_fails_naming_the_blob() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = plain_client(&dir);
    let r = reg.reference("blobs/bad:v1");
    let data = bytes_of(1000, 3);
    let (_, path) = write_blob(dir.path(), &data);
    let wrong = digest_of(b"something else");

    let e = client.push_blob(&r, &wrong, 1000, &path).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(wrong.as_str()) && msg.contains(&reg.host()), "{msg}");
    assert!(
        msg.contains("DIGEST_INVALID"),
        "registry's error code is reported: {msg}"
    );
    assert!(!client.blob_exists(&r, &wrong).await.unwrap());

    let e = client.push_blob(&r, &wrong, 999, &path).await.unwrap_err();
    assert!(e.to_string().contains("1000 bytes"), "{e}");
}

#[tokio::test]
async fn manifests_by_tag_and_digest_oci_and_docker() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = plain_client(&dir);
    let r = reg.reference("img/app:v1");

    // OCI manifest under a tag.
    let oci = push_oci_image(&client, &r, dir.path(), 10).await;
    let oci_digest = digest_of(&oci);
    let put = client
        .put_manifest(&r, "v1", OCI_MANIFEST, Bytes::from(oci.clone()))
        .await
        .unwrap();
    assert_eq!(put, oci_digest);

    let (desc, body) = client.get_manifest(&r, "v1").await.unwrap();
    assert_eq!(desc.media_type, OCI_MANIFEST);
    assert_eq!(desc.digest, oci_digest);
    assert_eq!(desc.size, oci.len() as u64);
    assert_eq!(&body[..], &oci[..]);
    let (desc2, body2) = client.get_manifest(&r, oci_digest.as_str()).await.unwrap();
    assert_eq!((desc2, body2), (desc.clone(), body));

    // Docker schema 2 manifest, pushed by digest only.
    let config = br#"{"architecture":"amd64","os":"linux","docker":true}"#;
    let layer = bytes_of(2048, 11);
    let cd = push_bytes(&client, &r, dir.path(), config).await;
    let ld = push_bytes(&client, &r, dir.path(), &layer).await;
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{cd}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{ld}"}}]}}"#,
        config.len(),
        layer.len()
    );
    let docker_digest = digest_of(docker.as_bytes());
    let put = client
        .put_manifest(
            &r,
            docker_digest.as_str(),
            DOCKER_MANIFEST,
            Bytes::from(docker.clone()),
        )
        .await
        .unwrap();
    assert_eq!(put, docker_digest);
    let (desc, body) = client.get_manifest(&r, docker_digest.as_str()).await.unwrap();
    assert_eq!(desc.media_type, DOCKER_MANIFEST);
    assert_eq!(desc.digest, docker_digest);
    assert_eq!(&body[..], docker.as_bytes());
    // ...and tagged afterwards.
    client
        .put_manifest(&r, "docker", DOCKER_MANIFEST, Bytes::from(docker.clone()))
        .await
        .unwrap();
    assert_eq!(
        client.get_manifest(&r, "docker").await.unwrap().0.digest,
        docker_digest
    );

    // An OCI index over the OCI manifest.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{oci_digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        oci.len()
    );
    client
        .put_manifest(&r, "multi", OCI_INDEX, Bytes::from(index.clone()))
        .await
        .unwrap();
    let (desc, _) = client.get_manifest(&r, "multi").await.unwrap();
    assert_eq!(desc.media_type, OCI_INDEX);
    assert_eq!(desc.digest, digest_of(index.as_bytes()));

    // A digest reference whose bytes are another manifest's is refused
    // before anything is sent.
    let e = client
        .put_manifest(&r, oci_digest.as_str(), DOCKER_MANIFEST, Bytes::from(docker))
        .await
        .unwrap_err();
    assert!(
        matches!(e, berth_registry::RegistryError::DigestMismatch { .. }),
        "{e}"
    );
}

#[tokio::test]
async fn missing_things_are_not_found_with_the_registry_code() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = plain_client(&dir);
    let r = reg.reference("img/none:v1");

    let e = client.get_manifest(&r, "v1").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("manifest v1") && msg.contains(&reg.host()) && msg.contains("img/none"),
        "{msg}"
    );
    assert!(
        msg.contains("NAME_UNKNOWN") || msg.contains("MANIFEST_UNKNOWN"),
        "{msg}"
    );

    let d = digest_of(b"nope");
    let e = client.get_blob(&r, &d).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains(d.as_str()), "{e}");

    let e = client.get_manifest(&r, "../../etc").await.unwrap_err();
    assert!(
        matches!(e, berth_registry::RegistryError::InvalidArgument { .. }),
        "{e}"
    );
}

#[tokio::test]
async fn mount_between_repositories() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = plain_client(&dir);
    let src = reg.reference("team/src:v1");
    let dst = reg.reference("team/dst:v1");

    let data = bytes_of(10_000, 20);
    let d = push_bytes(&client, &src, dir.path(), &data).await;
    assert!(!client.blob_exists(&dst, &d).await.unwrap());
    assert!(
        client.mount_blob(&dst, &d, "team/src").await.unwrap(),
        "mounted (201)"
    );
    assert!(client.blob_exists(&dst, &d).await.unwrap());
    assert_eq!(read_blob(&client, &dst, &d).await, data);

    // A blob the source lacks: the registry starts an upload instead.
    let other = digest_of(b"not in src");
    assert!(!client.mount_blob(&dst, &other, "team/src").await.unwrap());
    assert!(!client.blob_exists(&dst, &other).await.unwrap());

    let e = client.mount_blob(&dst, &d, "Bad/Repo").await.unwrap_err();
    assert!(e.to_string().contains("Bad/Repo"), "{e}");
}

#[tokio::test]
async fn registry_process_is_killed_on_drop() {
    let reg = Registry::start().await;
    let pid = reg.pid();
    let port = reg.port;
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(reg);
    // Reaped by the guard: no process, no listener.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
