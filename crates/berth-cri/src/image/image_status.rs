//! ImageStatus: an image that is not stored is no error, only no image.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn image_status(
        &self,
        req: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, CriError> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        if name.is_empty() {
            return Err(CriError::InvalidArgument("ImageStatus: image is empty".into()));
        }
        let img = match self.images.lookup(&self.ns, &name) {
            Ok(img) => img,
            Err(berth_image::ImageError::NotFound(_)) => {
                return Ok(v1::ImageStatusResponse {
                    image: None,
                    info: Default::default(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let all = self.images.store().list_images(&self.ns)?;
        let mut info = std::collections::HashMap::new();
        if req.verbose
            && let Ok((_, cfg)) = self.images.config(&img)
        {
            info.insert(
                "info".to_string(),
                serde_json::json!({ "name": img.name, "digest": img.digest.to_string(), "config": cfg })
                    .to_string(),
            );
        }
        Ok(v1::ImageStatusResponse {
            image: Some(self.cri_image(&img, &all)),
            info,
        })
    }
}
