//! One pass over a layer blob: bytes arrive from the network (or the local
//! content store) and are, in the same read, written to the content store
//! under their compressed digest, decompressed, hashed for the diff_id and
//! unpacked into a staging snapshot.

use std::io::{self, Read, Write};
use std::path::Path;

use berth_api::Digest;
use berth_store::Ingest;
use bytes::{Buf, Bytes};
use sha2::{Digest as _, Sha256};

use crate::gunzip::Gunzip;
use crate::media::Compression;
use crate::unpack::{UnpackStats, apply_layer};

/// A blocking reader over chunks sent from an async task.
pub(crate) struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl ChunkReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChunkReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// Copies everything read through it into the content store's ingest.
struct Tee<'a, R> {
    inner: R,
    ingest: Option<&'a mut Ingest>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = self.ingest.as_deref_mut() {
            w.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Hashes everything read through it.
pub(crate) struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn finish(self) -> (Digest, u64) {
        (Digest::from_sha256(&self.hasher.finalize().into()), self.count)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// What one pass produced.
pub(crate) struct Unpacked {
    pub diff_id: Digest,
    pub stats: UnpackStats,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PassError {
    #[error("{0}")]
    Unpack(#[from] crate::unpack::UnpackError),
    #[error("decompress: {0}")]
    Io(#[from] io::Error),
}

/// Decompresses `src`, unpacks it into `root` and returns the diff_id; what
/// was read is also written to `ingest` when given. Reads `src` to its end
/// either way, so the compressed digest covers the whole blob.
pub(crate) fn unpack_pass<R: Read>(
    src: R,
    compression: Compression,
    ingest: Option<&mut Ingest>,
    root: &Path,
) -> Result<Unpacked, PassError> {
    let mut tee = Tee { inner: src, ingest };
    let (diff_id, stats) = {
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut tee),
            Compression::Gzip => Box::new(Gunzip::new(io::BufReader::with_capacity(128 * 1024, &mut tee))),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(&mut tee)?),
        };
        let mut hashed = HashReader::new(decoder);
        let stats = apply_layer(&mut hashed, root)?;
        (hashed.finish().0, stats)
    };
    // Whatever follows the compressed stream still belongs to the blob.
    io::copy(&mut tee, &mut io::sink())?;
    Ok(Unpacked { diff_id, stats })
}

/// Writes `src` to `ingest` without unpacking (the snapshot exists already).
pub(crate) fn ingest_pass<R: Read>(mut src: R, ingest: &mut Ingest) -> io::Result<u64> {
    io::copy(&mut src, ingest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn one_pass_stores_hashes_and_unpacks() {
        let tar = tar_with("hello.txt", b"hi there");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let want_diff = Digest::from_sha256(&Sha256::digest(&tar).into());
        let want_blob = Digest::from_sha256(&Sha256::digest(&gz).into());

        let dir = tempfile::tempdir().unwrap();
        let store = berth_store::Store::open(&dir.path().join("store")).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut ingest = store
            .content()
            .ingest(Some(want_blob.clone()), Some(gz.len() as u64))
            .unwrap();
        let out = unpack_pass(&gz[..], Compression::Gzip, Some(&mut ingest), &root).unwrap();
        assert_eq!(out.diff_id, want_diff);
        assert_eq!(ingest.commit().unwrap(), want_blob);
        assert_eq!(std::fs::read(root.join("hello.txt")).unwrap(), b"hi there");
    }

    #[test]
    fn zstd_and_plain_give_the_same_diff_id() {
        let tar = tar_with("a", b"zstd content");
        let z = zstd::encode_all(&tar[..], 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (src, c) in [(&z[..], Compression::Zstd), (&tar[..], Compression::None)] {
            let root = tempfile::tempdir_in(dir.path()).unwrap();
            let out = unpack_pass(src, c, None, root.path()).unwrap();
            assert_eq!(out.diff_id, Digest::from_sha256(&Sha256::digest(&tar).into()));
            assert_eq!(std::fs::read(root.path().join("a")).unwrap(), b"zstd content");
        }
    }

    #[test]
    fn chunk_reader_concatenates_chunks() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        std::thread::spawn(move || {
            for c in [&b"ab"[..], b"", b"cde"] {
                tx.blocking_send(Ok(Bytes::copy_from_slice(c))).unwrap();
            }
        });
        let mut s = String::new();
        ChunkReader::new(rx).read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcde");
    }
}
