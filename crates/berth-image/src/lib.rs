//! Images: pull from and push to registries, unpack layers into snapshots,
//! import and export archives, look images up by name or id.
//!
//! Everything goes through [`Images`], which pairs the store with a registry
//! client.

mod archive;
mod error;
mod gunzip;
mod layer;
pub mod media;
mod pull;
mod push;
pub mod unpack;

use std::sync::Arc;

use berth_api::{Digest, Namespace};
use berth_store::{ImageRecord, Store};

pub use error::ImageError;
pub use pull::{LayerEvent, Progress, PullOptions, PullReport};
pub use push::PushReport;

/// See [`Images::copyable`].
#[derive(Default)]
pub(crate) struct Copyable {
    /// Manifests (and last, possibly, the index), with their bytes.
    pub manifests: Vec<(media::Descriptor, Vec<u8>)>,
    /// Configs and layers, each once.
    pub blobs: Vec<media::Descriptor>,
}

impl Copyable {
    fn add(&mut self, d: media::Descriptor, bytes: Vec<u8>, m: media::Manifest) {
        for b in std::iter::once(m.config).chain(m.layers) {
            if !self.blobs.iter().any(|x| x.digest == b.digest) {
                self.blobs.push(b);
            }
        }
        self.manifests.push((d, bytes));
    }

    pub fn top(&self) -> &media::Descriptor {
        &self.manifests.last().expect("at least one manifest").0
    }
}

/// The image service: one per process, cheap to share.
#[derive(Clone)]
pub struct Images {
    store: Arc<Store>,
    client: berth_registry::Client,
}

impl Images {
    pub fn new(store: Arc<Store>, client: berth_registry::Client) -> Images {
        Images { store, client }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Finds an image by name (`busybox`, `host/repo:tag`, normalized like a
    /// pull), by `repo@digest` of an image of that repository pulled by tag
    /// (the digest names CRI reports), by full digest, or by an unambiguous
    /// id prefix of at least 4 hex characters (as `docker` accepts).
    pub fn lookup(&self, ns: &Namespace, name_or_id: &str) -> Result<ImageRecord, ImageError> {
        if let Ok(r) = berth_registry::Reference::parse(name_or_id) {
            match self.store.get_image(ns, &r.to_string()) {
                Ok(img) => return Ok(img),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(img) = self.by_repo_digest(ns, &r)? {
                return Ok(img);
            }
        }
        if let Ok(img) = self.store.get_image(ns, name_or_id) {
            return Ok(img);
        }
        let prefix = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<ImageRecord> = self
                .store
                .list_images(ns)?
                .into_iter()
                .filter(|i| {
                    i.digest.hex().starts_with(prefix)
                        || self.config_digest(i).is_some_and(|c| c.hex().starts_with(prefix))
                })
                .collect();
            let first = hits.first().map(|i| i.digest.clone());
            if !hits.is_empty() && hits.iter().all(|i| Some(&i.digest) == first.as_ref()) {
                return Ok(hits.into_iter().next().expect("non-empty"));
            }
        }
        Err(ImageError::NotFound(format!("{name_or_id} (namespace {ns})")))
    }

    /// An image stored under another name of `r`'s repository whose manifest
    /// (or index) digest is `r`'s digest: pulled by tag, addressed by digest.
    /// Tagged names come first, so the answer is the record a pull by tag
    /// made, whatever order the store lists them in.
    fn by_repo_digest(
        &self,
        ns: &Namespace,
        r: &berth_registry::Reference,
    ) -> Result<Option<ImageRecord>, ImageError> {
        let Some(digest) = &r.digest else {
            return Ok(None);
        };
        let repo = r.name();
        let mut hits: Vec<(bool, ImageRecord)> = self
            .store
            .list_images(ns)?
            .into_iter()
            .filter(|i| &i.digest == digest)
            .filter_map(|i| {
                let other = berth_registry::Reference::parse(&i.name).ok()?;
                (other.name() == repo).then(|| (other.tag.is_none(), i))
            })
            .collect();
        hits.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        Ok(hits.into_iter().next().map(|(_, i)| i))
    }

    /// The config digest of the image's manifest for this host (its "image id").
    pub fn config_digest(&self, img: &ImageRecord) -> Option<Digest> {
        self.manifest_for_host(&img.digest, &img.media_type)
            .ok()
            .map(|m| m.config.digest)
    }

    /// Resolves an index to the local manifest for this platform.
    pub fn manifest_for_host(
        &self,
        digest: &Digest,
        media_type: &str,
    ) -> Result<media::Manifest, ImageError> {
        let bytes = self.store.content().read(digest)?;
        match media::parse_manifest(media_type, &bytes)
            .map_err(|e| ImageError::malformed("manifest", digest, e))?
        {
            media::Parsed::Manifest(m) => Ok(m),
            media::Parsed::Index(idx) => {
                let d = self.local_manifest(digest, &idx)?;
                self.manifest_for_host(&d.digest, &d.media_type)
            }
        }
    }

    /// The index entry to use on this machine: the host's platform if it was
    /// pulled, else whichever platform was (`pull --platform` of a foreign image).
    pub(crate) fn local_manifest(
        &self,
        index: &Digest,
        idx: &media::Index,
    ) -> Result<media::Descriptor, ImageError> {
        let host = media::Platform::host();
        let local = |d: &&media::Descriptor| self.store.content().exists(&d.digest);
        idx.manifests
            .iter()
            .filter(local)
            .find(|d| d.platform.as_ref().is_none_or(|p| p.matches(&host)))
            .or_else(|| idx.manifests.iter().find(local))
            .cloned()
            .ok_or_else(|| ImageError::malformed("index", index, "none of its manifests is stored locally"))
    }

    /// What of an image can be copied elsewhere whole (pushed, exported): its
    /// manifests, children first and the top one last, and every blob they
    /// name. An index goes only when every platform it lists is stored
    /// completely; otherwise only the local platform's manifest does, since a
    /// registry or layout would otherwise hold dangling entries.
    pub(crate) fn copyable(&self, img: &ImageRecord) -> Result<Copyable, ImageError> {
        let bytes = self.store.content().read(&img.digest)?;
        let top = media::Descriptor::new(&img.media_type, img.digest.clone(), bytes.len() as u64);
        let mut out = Copyable::default();
        match media::parse_manifest(&img.media_type, &bytes)
            .map_err(|e| ImageError::malformed("manifest", &img.digest, e))?
        {
            media::Parsed::Manifest(m) => out.add(top, bytes, m),
            media::Parsed::Index(idx) => {
                let mut children = Vec::new();
                for d in &idx.manifests {
                    match self.complete_manifest(d)? {
                        Some((b, m)) => children.push((d.clone(), b, m)),
                        None => break,
                    }
                }
                if children.len() == idx.manifests.len() {
                    for (d, b, m) in children {
                        out.add(d, b, m);
                    }
                    out.manifests.push((top, bytes));
                } else {
                    tracing::warn!(image = %img.name, "copying only the local platform's manifest: the index lists platforms that were not pulled");
                    let d = self.local_manifest(&img.digest, &idx)?;
                    let (b, m) = self.complete_manifest(&d)?.ok_or_else(|| {
                        ImageError::malformed("manifest", &d.digest, "its config or layers are not stored")
                    })?;
                    out.add(d, b, m);
                }
            }
        }
        Ok(out)
    }

    /// A manifest with its config and every layer stored, or `None`.
    fn complete_manifest(
        &self,
        d: &media::Descriptor,
    ) -> Result<Option<(Vec<u8>, media::Manifest)>, ImageError> {
        let c = self.store.content();
        if !c.exists(&d.digest) {
            return Ok(None);
        }
        let b = c.read(&d.digest)?;
        match media::parse_manifest(&d.media_type, &b)
            .map_err(|e| ImageError::malformed("manifest", &d.digest, e))?
        {
            media::Parsed::Manifest(m)
                if c.exists(&m.config.digest) && m.layers.iter().all(|l| c.exists(&l.digest)) =>
            {
                Ok(Some((b, m)))
            }
            _ => Ok(None),
        }
    }

    /// Reads and parses an image's config.
    pub fn config(&self, img: &ImageRecord) -> Result<(Digest, media::ImageConfig), ImageError> {
        let m = self.manifest_for_host(&img.digest, &img.media_type)?;
        let bytes = self.store.content().read(&m.config.digest)?;
        let cfg = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::malformed("image config", &m.config.digest, e))?;
        Ok((m.config.digest, cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, digest: &Digest) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            media_type: media::OCI_MANIFEST.into(),
            digest: digest.clone(),
            size: 1,
            created: 0,
            updated: 0,
            labels: Default::default(),
        }
    }

    #[test]
    fn finds_image_pulled_by_tag_by_repo_digest() {
        let dir = tempfile::tempdir().unwrap();
        let client = berth_registry::Client::new(berth_registry::ClientConfig {
            certs_dir: dir.path().join("certs.d"),
            docker_config: None,
            creds: None,
            user_agent: "berth-test".into(),
        })
        .unwrap();
        let store = Arc::new(Store::open(&dir.path().join("root")).unwrap());
        let images = Images::new(store.clone(), client);
        let ns: Namespace = Namespace::K8S.parse().unwrap();
        let busybox = Digest::from_sha256(&[1; 32]);
        let other = Digest::from_sha256(&[2; 32]);
        store
            .put_image(&ns, &record("docker.io/library/busybox:1.28", &busybox))
            .unwrap();
        store
            .put_image(&ns, &record("docker.io/library/alpine:3", &other))
            .unwrap();

        // The familiar and the normalized form of the digest name CRI reports.
        for name in [
            format!("busybox@{busybox}"),
            format!("docker.io/library/busybox@{busybox}"),
        ] {
            let img = images.lookup(&ns, &name).unwrap();
            assert_eq!(img.name, "docker.io/library/busybox:1.28", "{name}");
        }
        // Same digest, other repository: not a name of this image.
        let err = images.lookup(&ns, &format!("alpine@{busybox}")).unwrap_err();
        assert!(matches!(err, ImageError::NotFound(_)), "{err}");
        // Same repository, other digest.
        let err = images.lookup(&ns, &format!("busybox@{other}")).unwrap_err();
        assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    }
}
