//! Pull: resolve a reference, fetch manifest and config, then every layer in
//! parallel, each streamed in one pass into the content store and its own
//! snapshot (see `layer.rs`). Everything fetched is leased until the image
//! record that references it is committed.

use std::sync::Arc;
use std::time::Duration;

use berth_api::{Digest, Namespace};
use berth_registry::Reference;
use berth_store::{ImageRecord, Lease, Resource};
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc};

use crate::layer::{ChunkReader, Unpacked, ingest_pass, unpack_pass};
use crate::media::{self, Compression, Descriptor, ImageConfig, Parsed, Platform};
use crate::{ImageError, Images};

/// Layers fetched at once. Registries and disks both stop gaining beyond a
/// handful of streams, and each stream holds a decompressor and a thread.
const PARALLEL_LAYERS: usize = 6;

/// How long a pull's lease protects what it fetched if the process dies.
const PULL_LEASE: Duration = Duration::from_secs(3600);

/// How often one layer's download may break off and resume where it stopped.
const MAX_RESUMES: u32 = 5;

/// Receives progress of a pull (the CLI draws bars from it).
pub trait Progress: Send + Sync {
    fn event(&self, ev: LayerEvent);
}

#[derive(Clone, Debug)]
pub enum LayerEvent {
    /// A layer will be downloaded.
    Start {
        digest: Digest,
        size: u64,
    },
    Bytes {
        digest: Digest,
        n: u64,
    },
    /// A layer is in place; `skipped` if nothing had to be fetched.
    Done {
        digest: Digest,
        skipped: bool,
    },
}

#[derive(Clone)]
pub struct PullOptions {
    pub platform: Platform,
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            progress: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PullReport {
    pub image: ImageRecord,
    /// The config digest of the platform's manifest (the "image id").
    pub config: Digest,
    pub manifest: Digest,
    pub layers_fetched: usize,
    pub layers_skipped: usize,
    /// Compressed bytes downloaded for layers.
    pub bytes_fetched: u64,
}

struct LayerOutcome {
    fetched: bool,
    bytes: u64,
}

impl Images {
    /// Pulls `reference` into namespace `ns` and unpacks it for `opts.platform`.
    pub async fn pull(
        &self,
        ns: &Namespace,
        reference: &str,
        opts: &PullOptions,
    ) -> Result<PullReport, ImageError> {
        let r = Reference::parse(reference)?;
        let lease = self.store.create_lease(ns, PULL_LEASE)?;
        let result = self.pull_leased(ns, &r, &lease, opts).await;
        if let Err(e) = self.store.delete_lease(&lease) {
            tracing::warn!(lease = %lease.id, error = %e, "could not end pull lease; gc ends it when it expires");
        }
        result
    }

    async fn pull_leased(
        &self,
        ns: &Namespace,
        r: &Reference,
        lease: &Lease,
        opts: &PullOptions,
    ) -> Result<PullReport, ImageError> {
        let (top, top_bytes) = self.client.get_manifest(r, r.tag_or_digest()).await?;
        let top = Descriptor::new(top.media_type, top.digest, top.size);
        self.put_blob(lease, &top.digest, &top_bytes)?;

        let manifest_desc;
        let manifest = match media::parse_manifest(&top.media_type, &top_bytes)
            .map_err(|e| ImageError::malformed("manifest", &top.digest, e))?
        {
            Parsed::Manifest(m) => {
                manifest_desc = top.clone();
                m
            }
            Parsed::Index(idx) => {
                let chosen = pick_platform(r, &idx, &opts.platform)?;
                let (d, bytes) = self.client.get_manifest(r, chosen.digest.as_str()).await?;
                if d.digest != chosen.digest {
                    return Err(ImageError::malformed(
                        "index",
                        &top.digest,
                        format!("entry {} resolved to {}", chosen.digest, d.digest),
                    ));
                }
                self.put_blob(lease, &chosen.digest, &bytes)?;
                self.store.add_refs(
                    &Resource::Blob(top.digest.clone()),
                    &[Resource::Blob(chosen.digest.clone())],
                )?;
                manifest_desc = Descriptor::new(d.media_type, d.digest, d.size);
                match media::parse_manifest(&manifest_desc.media_type, &bytes)
                    .map_err(|e| ImageError::malformed("manifest", &chosen.digest, e))?
                {
                    Parsed::Manifest(m) => m,
                    Parsed::Index(_) => {
                        return Err(ImageError::malformed(
                            "index",
                            &top.digest,
                            "nested indexes are not supported",
                        ));
                    }
                }
            }
        };

        let config = self.fetch_config(r, lease, &manifest.config).await?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::malformed(
                "image config",
                &manifest.config.digest,
                format!(
                    "lists {} diff_ids for {} layers in manifest {}",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len(),
                    manifest_desc.digest
                ),
            ));
        }

        let limit = Arc::new(Semaphore::new(PARALLEL_LAYERS));
        let mut tasks = tokio::task::JoinSet::new();
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let this = self.clone();
            let (r, lease, layer, diff_id) = (r.clone(), lease.clone(), layer.clone(), diff_id.clone());
            let progress = opts.progress.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                this.fetch_layer(&r, &lease, &layer, &diff_id, progress.as_deref())
                    .await
            });
        }
        let (mut fetched, mut skipped, mut bytes) = (0, 0, 0);
        while let Some(res) = tasks.join_next().await {
            let out = res.map_err(|e| ImageError::Io {
                context: format!("layer task of {r}"),
                source: std::io::Error::other(e),
            })??;
            if out.fetched {
                fetched += 1;
                bytes += out.bytes;
            } else {
                skipped += 1;
            }
        }

        self.record_refs(&manifest_desc.digest, &manifest, &config)?;

        let image = ImageRecord {
            name: r.to_string(),
            media_type: top.media_type.clone(),
            digest: top.digest.clone(),
            size: top.size,
            created: 0,
            updated: 0,
            labels: Default::default(),
        };
        self.store.put_image(ns, &image)?;
        let image = self.store.get_image(ns, &image.name)?;
        Ok(PullReport {
            image,
            config: manifest.config.digest,
            manifest: manifest_desc.digest,
            layers_fetched: fetched,
            layers_skipped: skipped,
            bytes_fetched: bytes,
        })
    }

    /// Records manifest -> config and layers, config -> snapshots, so gc keeps
    /// an image's parts alive together.
    pub(crate) fn record_refs(
        &self,
        manifest_digest: &Digest,
        manifest: &media::Manifest,
        config: &ImageConfig,
    ) -> Result<(), ImageError> {
        let mut children = vec![Resource::Blob(manifest.config.digest.clone())];
        children.extend(manifest.layers.iter().map(|l| Resource::Blob(l.digest.clone())));
        self.store
            .add_refs(&Resource::Blob(manifest_digest.clone()), &children)?;
        let snaps: Vec<Resource> = config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Resource::Snapshot(d.to_string()))
            .collect();
        self.store
            .add_refs(&Resource::Blob(manifest.config.digest.clone()), &snaps)?;
        Ok(())
    }

    /// Unpacks a layer whose blob is already local, unless its snapshot exists.
    /// Blocking: call it from a thread that may block.
    pub(crate) fn ensure_snapshot(
        &self,
        lease: &Lease,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<(), ImageError> {
        let key = diff_id.to_string();
        self.store.lease_add(lease, &Resource::Snapshot(key.clone()))?;
        if self.store.snapshot(&key)?.is_some() {
            return Ok(());
        }
        let compression = layer_compression(layer)?;
        let staging = self.store.stage_snapshot()?;
        let file = self.store.content().open_blob(&layer.digest)?;
        let out = unpack_pass(
            std::io::BufReader::with_capacity(256 * 1024, file),
            compression,
            None,
            staging.path(),
        )
        .map_err(|e| ImageError::Layer {
            layer: layer.digest.clone(),
            source: Box::new(e),
        })?;
        self.commit_unpacked(lease, staging, layer, diff_id, out)
    }

    /// Publishes an unpacked layer if its content is what the config promised.
    fn commit_unpacked(
        &self,
        lease: &Lease,
        staging: berth_store::Staging,
        layer: &Descriptor,
        diff_id: &Digest,
        out: Unpacked,
    ) -> Result<(), ImageError> {
        if &out.diff_id != diff_id {
            return Err(ImageError::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: diff_id.clone(),
                actual: out.diff_id,
            });
        }
        self.store
            .commit_snapshot(lease, staging, &diff_id.to_string(), out.stats.bytes)?;
        Ok(())
    }

    /// Stores a small, already-fetched blob under the lease.
    fn put_blob(&self, lease: &Lease, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        self.store.lease_add(lease, &Resource::Blob(digest.clone()))?;
        if !self.store.content().exists(digest) {
            self.store.content().write_all(bytes, Some(digest))?;
        }
        Ok(())
    }

    async fn fetch_config(
        &self,
        r: &Reference,
        lease: &Lease,
        desc: &Descriptor,
    ) -> Result<ImageConfig, ImageError> {
        self.store
            .lease_add(lease, &Resource::Blob(desc.digest.clone()))?;
        let bytes = if self.store.content().exists(&desc.digest) {
            self.store.content().read(&desc.digest)?
        } else {
            let mut stream = self.client.get_blob(r, &desc.digest).await?;
            let mut buf = Vec::with_capacity(desc.size as usize);
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
            }
            self.store.content().write_all(&buf, Some(&desc.digest))?;
            buf
        };
        serde_json::from_slice(&bytes).map_err(|e| ImageError::malformed("image config", &desc.digest, e))
    }

    async fn fetch_layer(
        &self,
        r: &Reference,
        lease: &Lease,
        layer: &Descriptor,
        diff_id: &Digest,
        progress: Option<&dyn Progress>,
    ) -> Result<LayerOutcome, ImageError> {
        let key = diff_id.to_string();
        // Lease first, then look: a concurrent gc either sees the lease or
        // has already removed what we would otherwise have found.
        self.store.lease_add(lease, &Resource::Snapshot(key.clone()))?;
        self.store
            .lease_add(lease, &Resource::Blob(layer.digest.clone()))?;
        let have_snapshot = self.store.snapshot(&key)?.is_some();
        let have_blob = self.store.content().exists(&layer.digest);
        let done = |skipped| {
            if let Some(p) = progress {
                p.event(LayerEvent::Done {
                    digest: layer.digest.clone(),
                    skipped,
                });
            }
        };
        if have_snapshot && have_blob {
            done(true);
            return Ok(LayerOutcome {
                fetched: false,
                bytes: 0,
            });
        }
        let compression = layer_compression(layer)?;
        let layer_err = |e: Box<dyn std::error::Error + Send + Sync>| ImageError::Layer {
            layer: layer.digest.clone(),
            source: e,
        };
        if have_blob {
            // Only the snapshot is missing (it was collected, or the blob came
            // from an import): unpack from the local blob.
            let (this, lease, layer2, diff_id) =
                (self.clone(), lease.clone(), layer.clone(), diff_id.clone());
            tokio::task::spawn_blocking(move || this.ensure_snapshot(&lease, &layer2, &diff_id))
                .await
                .map_err(|e| layer_err(Box::new(e)))??;
            done(false);
            return Ok(LayerOutcome {
                fetched: false,
                bytes: 0,
            });
        }
        let staging = if have_snapshot {
            None
        } else {
            Some(self.store.stage_snapshot()?)
        };

        let (unpacked, fetched_bytes) = {
            if let Some(p) = progress {
                p.event(LayerEvent::Start {
                    digest: layer.digest.clone(),
                    size: layer.size,
                });
            }
            let mut stream = self.client.get_blob(r, &layer.digest).await?;
            let mut ingest = self
                .store
                .content()
                .ingest(Some(layer.digest.clone()), Some(layer.size))?;
            let staging_path = staging.as_ref().map(|s| s.path().to_path_buf());
            let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
            let digest = layer.digest.clone();
            let worker = tokio::task::spawn_blocking(move || -> Result<_, ImageError> {
                let reader = ChunkReader::new(rx);
                let failed = |e: Box<dyn std::error::Error + Send + Sync>| ImageError::Layer {
                    layer: digest.clone(),
                    source: e,
                };
                let out = match staging_path {
                    Some(root) => Some(
                        unpack_pass(reader, compression, Some(&mut ingest), &root)
                            .map_err(|e| failed(Box::new(e)))?,
                    ),
                    None => {
                        ingest_pass(reader, &mut ingest).map_err(|e| failed(Box::new(e)))?;
                        None
                    }
                };
                ingest.commit()?;
                Ok(out)
            });
            let mut fetch_err = None;
            let mut total = 0u64;
            let mut resumes = 0;
            loop {
                let broke = match stream.next().await {
                    Some(Ok(b)) => {
                        total += b.len() as u64;
                        if let Some(p) = progress {
                            p.event(LayerEvent::Bytes {
                                digest: layer.digest.clone(),
                                n: b.len() as u64,
                            });
                        }
                        if tx.send(Ok(b)).await.is_err() {
                            break; // the worker failed; its error says why
                        }
                        continue;
                    }
                    // A stream may also end cleanly but short (a proxy gave up).
                    None if total >= layer.size => break,
                    None => None,
                    Some(Err(e)) => Some(e),
                };
                // The pipeline downstream has every byte so far: ask for the
                // rest rather than start the layer over.
                if resumes < MAX_RESUMES && total < layer.size {
                    resumes += 1;
                    tracing::warn!(layer = %layer.digest, offset = total, error = ?broke, "blob download broke off; resuming");
                    match self.client.get_blob_from(r, &layer.digest, total).await {
                        Ok(s) => {
                            stream = s;
                            continue;
                        }
                        Err(e) => fetch_err = Some(e),
                    }
                } else {
                    fetch_err = broke;
                }
                let why = fetch_err
                    .as_ref()
                    .map_or("blob ended early".to_string(), |e| e.to_string());
                let _ = tx.send(Err(std::io::Error::other(why))).await;
                break;
            }
            drop(tx);
            let res = worker.await.map_err(|e| layer_err(Box::new(e)))?;
            if let Some(e) = fetch_err {
                return Err(e.into());
            }
            (res?, total)
        };

        if let (Some(out), Some(staging)) = (unpacked, staging) {
            self.commit_unpacked(lease, staging, layer, diff_id, out)?;
        }
        done(false);
        Ok(LayerOutcome {
            fetched: fetched_bytes > 0,
            bytes: fetched_bytes,
        })
    }
}

fn layer_compression(layer: &Descriptor) -> Result<Compression, ImageError> {
    Compression::of_layer(&layer.media_type).ok_or_else(|| ImageError::UnsupportedMediaType {
        what: "layer",
        digest: layer.digest.clone(),
        media_type: layer.media_type.clone(),
    })
}

fn pick_platform<'a>(
    r: &Reference,
    idx: &'a media::Index,
    want: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    idx.manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)) && media::is_manifest(&d.media_type))
        .or_else(|| {
            idx.manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        })
        .ok_or_else(|| ImageError::NoPlatform {
            reference: r.to_string(),
            wanted: want.to_string(),
            available: idx
                .manifests
                .iter()
                .map(|d| d.platform.as_ref().map_or("unknown".into(), |p| p.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}
