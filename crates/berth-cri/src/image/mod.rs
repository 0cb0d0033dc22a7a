//! ImageService calls, one module each, and the image resolution that
//! CreateContainer needs.

pub(crate) mod image_fs_info;
mod image_status;
mod list_images;
mod pull_image;
mod remove_image;
pub(crate) mod resolve;

use berth_store::ImageRecord;

use crate::service::CriService;
use crate::v1;

impl CriService {
    /// The CRI view of the image `img` and every other name of the same
    /// manifest.
    /// What the image takes in the registry's terms, as containerd reports
    /// it: manifest, config and (compressed) layers for this platform.
    fn content_size(&self, img: &ImageRecord) -> u64 {
        match self.images.manifest_for_host(&img.digest, &img.media_type) {
            Ok(m) => img.size + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>(),
            Err(_) => img.size,
        }
    }

    pub(crate) fn cri_image(&self, img: &ImageRecord, all: &[ImageRecord]) -> v1::Image {
        let mut repo_tags = Vec::new();
        let mut repo_digests = Vec::new();
        for other in all.iter().filter(|o| o.digest == img.digest) {
            match other.name.split_once('@') {
                Some((repo, _)) => push_new(&mut repo_digests, format!("{repo}@{}", img.digest)),
                None => {
                    push_new(&mut repo_tags, other.name.clone());
                    let repo = other.name.rsplit_once(':').filter(|(_, t)| !t.contains('/'));
                    let repo = repo.map_or(other.name.as_str(), |(r, _)| r);
                    push_new(&mut repo_digests, format!("{repo}@{}", img.digest));
                }
            }
        }
        let config = self.images.config(img).ok();
        let id = config
            .as_ref()
            .map(|(d, _)| d.to_string())
            .unwrap_or_else(|| img.digest.to_string());
        let user = config
            .and_then(|(_, c)| c.config)
            .and_then(|c| c.user)
            .unwrap_or_default();
        let user = user.split(':').next().unwrap_or_default().to_string();
        let (uid, username) = match user.parse::<i64>() {
            Ok(uid) => (Some(v1::Int64Value { value: uid }), String::new()),
            Err(_) => (None, user),
        };
        v1::Image {
            id,
            repo_tags,
            repo_digests,
            size: self.content_size(img),
            uid,
            username,
            spec: Some(v1::ImageSpec {
                image: img.name.clone(),
                ..Default::default()
            }),
            pinned: false,
        }
    }
}

fn push_new(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}
