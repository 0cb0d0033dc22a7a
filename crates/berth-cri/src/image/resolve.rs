//! An image of the CRI namespace resolved into what the runtime starts a
//! container from.

use berth_runtime::model::ImageRun;
use berth_runtime::runtime::ResolvedImage;

use crate::error::CriError;
use crate::service::CriService;

impl CriService {
    pub(crate) fn resolve_image(&self, reference: &str) -> Result<ResolvedImage, CriError> {
        Ok(resolve(&self.images, &self.ns, reference)?)
    }
}

/// An image of `ns` as the runtime needs it: its layers' snapshot keys, the
/// blobs a container keeps alive, and the run config. The CLI uses it too.
pub fn resolve(
    images: &berth_image::Images,
    ns: &berth_api::Namespace,
    reference: &str,
) -> Result<ResolvedImage, berth_image::ImageError> {
    let img = images.lookup(ns, reference)?;
    let manifest = images.manifest_for_host(&img.digest, &img.media_type)?;
    let (config_digest, config) = images.config(&img)?;
    let run = config.config.unwrap_or_default();
    let mut blobs = vec![img.digest.clone(), config_digest.clone()];
    if manifest.config.digest != blobs[1] {
        blobs.push(manifest.config.digest.clone());
    }
    Ok(ResolvedImage {
        name: img.name.clone(),
        id: img.digest.to_string(),
        config_digest: config_digest.to_string(),
        layers: config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect(),
        run: ImageRun {
            user: run.user.filter(|u| !u.is_empty()),
            env: run.env.unwrap_or_default(),
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            working_dir: run.working_dir.filter(|w| !w.is_empty()),
            stop_signal: run.stop_signal.filter(|s| !s.is_empty()),
        },
        blobs,
    })
}
