use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use berth_api::Digest;
use sha2::{Digest as _, Sha256};

use crate::StoreError;

/// Content-addressed blobs: ingest into a temp file, verify, publish by rename.
///
/// A blob under `blobs/` has always been verified against its name, so readers
/// never need to re-hash.
#[derive(Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    pub(crate) fn open(dir: &Path) -> Result<ContentStore, StoreError> {
        let blobs = dir.join("blobs/sha256");
        let ingest = dir.join("ingest");
        for d in [&blobs, &ingest] {
            std::fs::create_dir_all(d).map_err(|e| StoreError::io("create directory", d, e))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }

    /// Size of a committed blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        match std::fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound(digest.clone())),
            Err(e) => Err(StoreError::io("stat blob", &self.path(digest), e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        File::open(self.path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io("open blob", &self.path(digest), e),
        })
    }

    /// Reads a whole (small) blob, such as a manifest or config.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        std::fs::read(self.path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io("read blob", &self.path(digest), e),
        })
    }

    /// Stores `data`, verifying it against `expected` when given.
    pub fn write_all(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let mut w = self.ingest(expected.cloned(), Some(data.len() as u64))?;
        w.write_all(data)
            .map_err(|e| StoreError::io("write blob", &w.tmp_path(), e))?;
        w.commit()
    }

    /// Starts writing a blob. Nothing is visible until [`Ingest::commit`].
    pub fn ingest(&self, expected: Option<Digest>, expected_size: Option<u64>) -> Result<Ingest, StoreError> {
        let tmp = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(&self.ingest)
            .map_err(|e| StoreError::io("create ingest file in", &self.ingest, e))?;
        Ok(Ingest {
            out: BufWriter::with_capacity(256 * 1024, tmp),
            hasher: Sha256::new(),
            written: 0,
            expected,
            expected_size,
            blobs: self.blobs.clone(),
        })
    }

    /// Removes a blob; a blob already gone is not an error.
    pub(crate) fn remove(&self, digest: &Digest) -> Result<u64, StoreError> {
        let p = self.path(digest);
        let size = std::fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::io("remove blob", &p, e)),
        }
    }

    /// Every committed blob on disk.
    pub(crate) fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let rd = std::fs::read_dir(&self.blobs).map_err(|e| StoreError::io("list", &self.blobs, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| StoreError::io("list", &self.blobs, e))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes ingest files older than `age` (left by a crashed writer).
    pub(crate) fn clean_ingest(&self, age: std::time::Duration) -> Result<(), StoreError> {
        let rd = std::fs::read_dir(&self.ingest).map_err(|e| StoreError::io("list", &self.ingest, e))?;
        for entry in rd.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() > age)
                .unwrap_or(false);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// A blob being written: hashes as it goes, publishes on commit, vanishes on drop.
pub struct Ingest {
    out: BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    written: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    blobs: PathBuf,
}

impl Ingest {
    pub fn written(&self) -> u64 {
        self.written
    }

    fn tmp_path(&self) -> PathBuf {
        self.out.get_ref().path().to_path_buf()
    }

    /// Verifies size and digest, then publishes the blob. A blob that does not
    /// match is discarded and never becomes visible.
    pub fn commit(self) -> Result<Digest, StoreError> {
        let Ingest {
            out,
            hasher,
            written,
            expected,
            expected_size,
            blobs,
        } = self;
        let actual = Digest::from_sha256(&hasher.finalize().into());
        if let Some(size) = expected_size
            && size != written
        {
            return Err(StoreError::SizeMismatch {
                digest: expected
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| actual.to_string()),
                expected: size,
                actual: written,
            });
        }
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(StoreError::DigestMismatch {
                expected,
                actual,
                size: written,
            });
        }
        let tmp = out
            .into_inner()
            .map_err(|e| StoreError::io("flush blob", &blobs, e.into_error()))?;
        let target = blobs.join(actual.hex());
        // Blobs are immutable: make them read-only so nothing edits one in place.
        let perm = std::os::unix::fs::PermissionsExt::from_mode(0o444);
        tmp.as_file()
            .set_permissions(perm)
            .map_err(|e| StoreError::io("chmod blob", tmp.path(), e))?;
        tmp.persist(&target)
            .map_err(|e| StoreError::io("commit blob to", &target, e.error))?;
        Ok(actual)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        (dir, cs)
    }

    #[test]
    fn commit_publishes_verified_blob() {
        let (_d, cs) = store();
        let expected: Digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            .parse()
            .unwrap();
        let d = cs.write_all(b"hello", Some(&expected)).unwrap();
        assert_eq!(d, expected);
        assert_eq!(cs.read(&d).unwrap(), b"hello");
        assert_eq!(cs.size(&d).unwrap(), 5);
        assert_eq!(cs.list().unwrap(), vec![d]);
    }

    #[test]
    fn mismatch_is_never_committed_and_names_both_digests() {
        let (_d, cs) = store();
        let wrong = Digest::from_sha256(&[7; 32]);
        let err = cs.write_all(b"hello", Some(&wrong)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(wrong.as_str()), "{msg}");
        assert!(
            msg.contains("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            "{msg}"
        );
        assert!(cs.list().unwrap().is_empty());
        // the temp file went away with the failed ingest
        assert_eq!(std::fs::read_dir(&cs.ingest).unwrap().count(), 0);
    }

    #[test]
    fn size_mismatch_is_refused() {
        let (_d, cs) = store();
        let mut w = cs.ingest(None, Some(10)).unwrap();
        w.write_all(b"short").unwrap();
        assert!(matches!(
            w.commit(),
            Err(StoreError::SizeMismatch {
                expected: 10,
                actual: 5,
                ..
            })
        ));
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn committing_twice_keeps_one_copy() {
        let (_d, cs) = store();
        let a = cs.write_all(b"same", None).unwrap();
        let b = cs.write_all(b"same", None).unwrap();
        assert_eq!(a, b);
        assert_eq!(cs.list().unwrap().len(), 1);
    }
}
