//! Images as pods need them: found in the store or pulled, then resolved
//! into the layers and run config the runtime starts containers from.

use anyhow::Context;
use berth_api::Namespace;
use berth_image::{Images, PullOptions};
use berth_runtime::model::ImageRun;
use berth_runtime::runtime::ResolvedImage;

use super::progress::Bars;

/// Resolves `reference` in `ns`, pulling it first when it is not stored.
pub fn ensure(
    images: &Images,
    ns: &Namespace,
    reference: &str,
    quiet: bool,
) -> anyhow::Result<ResolvedImage> {
    match images.lookup(ns, reference) {
        Ok(_) => {}
        Err(berth_image::ImageError::NotFound(_)) => {
            let opts = PullOptions {
                progress: if quiet { None } else { Bars::for_stderr() },
                ..Default::default()
            };
            let report = super::runtime()?
                .block_on(images.pull(ns, reference, &opts))
                .with_context(|| format!("pull {reference}"))?;
            if !quiet {
                eprintln!(
                    "pulled {} ({} layers fetched, {} already present)",
                    report.image.name, report.layers_fetched, report.layers_skipped
                );
            }
        }
        Err(e) => return Err(e.into()),
    }
    resolve(images, ns, reference)
}

/// Resolves an image that is in the store.
pub fn resolve(images: &Images, ns: &Namespace, reference: &str) -> anyhow::Result<ResolvedImage> {
    let img = images.lookup(ns, reference)?;
    let manifest = images.manifest_for_host(&img.digest, &img.media_type)?;
    let (config_digest, config) = images.config(&img)?;
    let run = config.config.unwrap_or_default();
    let mut blobs = vec![img.digest.clone(), config_digest];
    if manifest.config.digest != blobs[1] {
        blobs.push(manifest.config.digest.clone());
    }
    Ok(ResolvedImage {
        name: img.name.clone(),
        id: img.digest.to_string(),
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
