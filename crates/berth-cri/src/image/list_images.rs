//! ListImages: one entry per manifest, with every name it has.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn list_images(&self, req: v1::ListImagesRequest) -> Result<v1::ListImagesResponse, CriError> {
        let all = self.images.store().list_images(&self.ns)?;
        let wanted = req
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let mut images: Vec<v1::Image> = Vec::new();
        let mut seen = Vec::new();
        for img in &all {
            if seen.contains(&img.digest) {
                continue;
            }
            if let Some(w) = &wanted {
                match self.images.lookup(&self.ns, w) {
                    Ok(hit) if hit.digest == img.digest => {}
                    _ => continue,
                }
            }
            seen.push(img.digest.clone());
            images.push(self.cri_image(img, &all));
        }
        Ok(v1::ListImagesResponse { images })
    }
}
