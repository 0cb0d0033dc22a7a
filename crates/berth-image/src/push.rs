//! Push: blobs first (skipped when the registry has them, mounted from the
//! source repository when it is on the same registry, else uploaded), then
//! manifests bottom-up, the tagged one last so the tag never points at
//! something incomplete.

use std::sync::Arc;

use berth_api::{Digest, Namespace};
use berth_registry::Reference;
use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::media::Descriptor;
use crate::{Copyable, ImageError, Images};

const PARALLEL_UPLOADS: usize = 4;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    pub reference: String,
    pub digest: Option<Digest>,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
}

#[derive(Clone, Copy)]
enum BlobFate {
    Uploaded,
    Mounted,
    Existing,
}

impl Images {
    /// Pushes the image `name` of namespace `ns` to `target` (its own name when `None`).
    pub async fn push(
        &self,
        ns: &Namespace,
        name: &str,
        target: Option<&str>,
    ) -> Result<PushReport, ImageError> {
        let img = self.lookup(ns, name)?;
        let dest = Reference::parse(target.unwrap_or(&img.name))?;
        let source = Reference::parse(&img.name).ok();
        let Copyable { manifests, blobs } = self.copyable(&img)?;

        let mut report = PushReport {
            reference: dest.to_string(),
            ..Default::default()
        };
        let limit = Arc::new(Semaphore::new(PARALLEL_UPLOADS));
        let mut tasks = tokio::task::JoinSet::new();
        for b in blobs {
            let (this, dest, source, limit) = (self.clone(), dest.clone(), source.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                this.push_blob(&dest, source.as_ref(), &b).await
            });
        }
        while let Some(res) = tasks.join_next().await {
            let fate = res.map_err(|e| ImageError::Io {
                context: format!("upload task for {dest}"),
                source: std::io::Error::other(e),
            })??;
            match fate {
                BlobFate::Uploaded => report.blobs_uploaded += 1,
                BlobFate::Mounted => report.blobs_mounted += 1,
                BlobFate::Existing => report.blobs_existing += 1,
            }
        }

        let tag = dest.tag.clone();
        let last = manifests.len() - 1;
        for (i, (d, bytes)) in manifests.into_iter().enumerate() {
            let bytes = Bytes::from(bytes);
            let reference = match (&tag, i == last) {
                (Some(t), true) => t.clone(),
                _ => d.digest.to_string(),
            };
            let got = self
                .client
                .put_manifest(&dest, &reference, &d.media_type, bytes)
                .await?;
            if got != d.digest {
                return Err(ImageError::malformed(
                    "manifest",
                    &d.digest,
                    format!("registry stored it as {got}"),
                ));
            }
            report.digest = Some(d.digest);
        }
        Ok(report)
    }

    async fn push_blob(
        &self,
        dest: &Reference,
        source: Option<&Reference>,
        b: &Descriptor,
    ) -> Result<BlobFate, ImageError> {
        if self.client.blob_exists(dest, &b.digest).await? {
            return Ok(BlobFate::Existing);
        }
        if let Some(src) = source
            && src.registry == dest.registry
            && src.repository != dest.repository
            && self.client.mount_blob(dest, &b.digest, &src.repository).await?
        {
            return Ok(BlobFate::Mounted);
        }
        let path = self.store.content().path(&b.digest);
        let size = self.store.content().size(&b.digest)?;
        self.client.push_blob(dest, &b.digest, size, &path).await?;
        Ok(BlobFate::Uploaded)
    }
}
