//! RemoveImage: every name of the image goes (the CRI removes images, not
//! tags); content is left to gc. Removing a missing image is success.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn remove_image(
        &self,
        req: v1::RemoveImageRequest,
    ) -> Result<v1::RemoveImageResponse, CriError> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        if name.is_empty() {
            return Err(CriError::InvalidArgument("RemoveImage: image is empty".into()));
        }
        let img = match self.images.lookup(&self.ns, &name) {
            Ok(img) => img,
            Err(berth_image::ImageError::NotFound(_)) => return Ok(v1::RemoveImageResponse {}),
            Err(e) => return Err(e.into()),
        };
        let store = self.images.store();
        for other in store
            .list_images(&self.ns)?
            .into_iter()
            .filter(|o| o.digest == img.digest)
        {
            match store.delete_image(&self.ns, &other.name) {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => tracing::info!(image = %other.name, "image removed"),
            }
        }
        Ok(v1::RemoveImageResponse {})
    }
}
