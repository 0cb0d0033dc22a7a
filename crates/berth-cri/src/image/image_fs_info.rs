//! ImageFsInfo: bytes and inodes under the store's snapshots directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::convert::{self, u64v};
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn image_fs_info(
        &self,
        _: v1::ImageFsInfoRequest,
    ) -> Result<v1::ImageFsInfoResponse, CriError> {
        let dir = self.images.store().root().join("snapshots");
        let (bytes, inodes) = usage(&dir);
        let fs = v1::FilesystemUsage {
            timestamp: convert::now_nanos(),
            fs_id: Some(v1::FilesystemIdentifier {
                mountpoint: dir.display().to_string(),
            }),
            used_bytes: u64v(bytes),
            inodes_used: u64v(inodes),
        };
        Ok(v1::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            container_filesystems: vec![fs],
        })
    }
}

/// Allocated bytes and inodes under `dir`, each hard-linked inode once;
/// entries that vanish while walking are skipped.
pub(crate) fn usage(dir: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            bytes += meta.blocks() * 512;
            inodes += 1;
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&d)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/f"), vec![1u8; 10000]).unwrap();
        let (bytes, inodes) = usage(d.path());
        assert_eq!(inodes, 3);
        assert!(bytes >= 10000, "{bytes}");
    }
}
