//! Images as pods need them: found in the store or pulled, then resolved
//! into the layers and run config the runtime starts containers from.

use anyhow::Context;
use berth_api::Namespace;
use berth_image::{Images, PullOptions};
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
    Ok(berth_cri::resolve_image(images, ns, reference)?)
}
