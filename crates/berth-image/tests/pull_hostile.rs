//! Pulls of crafted images from the test registry: each must be refused or
//! contained, name what was wrong, and leave the store as it was.

mod common;

use common::{images, registry};
use std::io::Write;

use berth_api::{Digest, Namespace};
use berth_image::{ImageError, Images, PullOptions};
use berth_registry::{Client, Reference};
use sha2::Digest as _;

fn digest(data: &[u8]) -> Digest {
    Digest::from_sha256(&sha2::Sha256::digest(data).into())
}

/// A tar whose entries are (raw name bytes, contents), names written
/// verbatim into the header so that hostile names survive.
fn raw_tar(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

struct Env {
    dir: tempfile::TempDir,
    images: Images,
    client: Client,
    ns: Namespace,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (images, client) = images(dir.path());
        Env {
            images,
            client,
            dir,
            ns: "default".parse().unwrap(),
        }
    }

    /// Pushes a one-layer image to a fresh repository; `diff_id` overrides the true one.
    async fn push(&self, name: &str, layer: &[u8], layer_type: &str, diff_id: Option<Digest>) -> Reference {
        let r = Reference::parse(&format!("{}/hostile-{}-{name}:t", registry(), std::process::id())).unwrap();
        let diff_id = diff_id.unwrap_or_else(|| digest(layer));
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .unwrap();
        for blob in [layer, &config[..]] {
            let p = self.dir.path().join("blob");
            std::fs::write(&p, blob).unwrap();
            self.client
                .push_blob(&r, &digest(blob), blob.len() as u64, &p)
                .await
                .unwrap();
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": digest(layer), "size": layer.len()}],
        }))
        .unwrap();
        self.client
            .put_manifest(
                &r,
                "t",
                "application/vnd.oci.image.manifest.v1+json",
                manifest.into(),
            )
            .await
            .unwrap();
        r
    }

    async fn pull(&self, r: &Reference) -> Result<berth_image::PullReport, ImageError> {
        self.images
            .pull(&self.ns, &r.to_string(), &PullOptions::default())
            .await
    }

    fn staging_is_empty(&self) -> bool {
        std::fs::read_dir(self.dir.path().join("root/snapshots/staging"))
            .unwrap()
            .count()
            == 0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_diff_id_is_refused_naming_the_layer_and_commits_nothing() {
    let e = Env::new();
    let layer = gzip(&raw_tar(&[(b"file", b"content")]));
    let lie = digest(b"something else");
    let r = e.push("diffid", &layer, GZIP, Some(lie.clone())).await;

    let err = e.pull(&r).await.unwrap_err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(digest(&layer).as_str()) && msg.contains(lie.as_str()),
        "{msg}"
    );
    assert!(e.images.store().list_snapshots().unwrap().is_empty());
    assert!(e.images.store().list_images(&e.ns).unwrap().is_empty());
    assert!(e.staging_is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn escaping_paths_stay_inside_the_snapshot() {
    let e = Env::new();
    let victim = e.dir.path().join("victim");
    std::fs::write(&victim, b"untouched").unwrap();
    // snapshots live at <dir>/root/snapshots/<id>: three levels up is <dir>
    let layer = raw_tar(&[
        (b"../../../victim", b"owned"),
        (b"/../../../../victim", b"owned"),
        (b"ok", b"fine"),
    ]);
    let r = e.push("escape", &layer, TAR, None).await;
    e.pull(&r).await.unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    let snap = &e.images.store().list_snapshots().unwrap()[0];
    assert_eq!(std::fs::read(snap.path.join("ok")).unwrap(), b"fine");
    assert_eq!(
        std::fs::read(snap.path.join("victim")).unwrap(),
        b"owned",
        "clamped at the snapshot root"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_layer_media_type_is_refused_by_name() {
    let e = Env::new();
    let layer = raw_tar(&[(b"f", b"x")]);
    let r = e.push("mediatype", &layer, "application/x-made-up", None).await;
    let err = e.pull(&r).await.unwrap_err();
    assert!(err.to_string().contains("application/x-made-up"), "{err}");
    assert!(e.images.store().list_images(&e.ns).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_pull_keeps_what_was_stored_before() {
    let e = Env::new();
    let good = format!("{}/busybox:latest", registry());
    e.images
        .pull(&e.ns, &good, &PullOptions::default())
        .await
        .unwrap();

    let mut layer = gzip(&raw_tar(&[(b"f", &[7u8; 4096][..])]));
    let n = layer.len();
    layer[n / 2] ^= 0xff; // the registry stores it as is; gunzip must fail
    let r = e.push("corrupt-gzip", &layer, GZIP, Some(digest(b"x"))).await;
    let err = e.pull(&r).await.unwrap_err();
    assert!(err.to_string().contains(digest(&layer).as_str()), "{err}");
    assert!(e.staging_is_empty());

    let imgs = e.images.store().list_images(&e.ns).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].name, Reference::parse(&good).unwrap().to_string());
    let snaps = e.images.store().list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert!(snaps[0].path.join("bin/busybox").exists());
}
