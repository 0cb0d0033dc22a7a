//! gzip without its crc32.
//!
//! A layer's compressed bytes are checked against the manifest's sha256 and
//! its uncompressed bytes against the config's diff_id, so gzip's own crc32
//! over the output (7 % of a pull's CPU in a profile) guards nothing more.
//! This reader parses gzip members (RFC 1952) around a raw deflate decoder,
//! checks the length field of each trailer, and accepts members back to back
//! as layers may carry them.

use std::io::{self, BufRead, Read};

use flate2::bufread::DeflateDecoder;

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

pub(crate) struct Gunzip<R: BufRead> {
    /// `None` between members and at the end.
    member: Option<DeflateDecoder<R>>,
    idle: Option<R>,
    /// Output bytes of the current member (mod 2^32, as the trailer has it).
    out: u32,
    started: bool,
}

impl<R: BufRead> Gunzip<R> {
    pub(crate) fn new(r: R) -> Self {
        Gunzip {
            member: None,
            idle: Some(r),
            out: 0,
            started: false,
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {msg}"))
}

fn read_byte<R: BufRead>(r: &mut R) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn skip_zero_terminated<R: BufRead>(r: &mut R) -> io::Result<()> {
    while read_byte(r)? != 0 {}
    Ok(())
}

/// Reads one member header; `false` at a clean end of input.
fn read_header<R: BufRead>(r: &mut R, first: bool) -> io::Result<bool> {
    if r.fill_buf()?.is_empty() {
        return if first {
            Err(bad("empty stream"))
        } else {
            Ok(false)
        };
    }
    let mut h = [0u8; 10];
    r.read_exact(&mut h).map_err(|_| bad("truncated header"))?;
    if h[0] != 0x1f || h[1] != 0x8b {
        return Err(bad("not a gzip stream (bad magic)"));
    }
    if h[2] != 8 {
        return Err(bad("unknown compression method"));
    }
    let flags = h[3];
    if flags & FEXTRA != 0 {
        let mut len = [0u8; 2];
        r.read_exact(&mut len)?;
        io::copy(&mut r.take(u16::from_le_bytes(len) as u64), &mut io::sink())?;
    }
    if flags & FNAME != 0 {
        skip_zero_terminated(r)?;
    }
    if flags & FCOMMENT != 0 {
        skip_zero_terminated(r)?;
    }
    if flags & FHCRC != 0 {
        let mut crc = [0u8; 2];
        r.read_exact(&mut crc)?;
    }
    Ok(true)
}

impl<R: BufRead> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(d) = self.member.as_mut() {
                let n = d.read(buf)?;
                if n > 0 {
                    self.out = self.out.wrapping_add(n as u32);
                    return Ok(n);
                }
                let mut r = self.member.take().expect("member").into_inner();
                let mut trailer = [0u8; 8];
                r.read_exact(&mut trailer).map_err(|_| bad("truncated trailer"))?;
                let isize = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
                if isize != self.out {
                    return Err(bad(&format!(
                        "member length {isize} in trailer, {} decompressed",
                        self.out
                    )));
                }
                self.idle = Some(r);
            }
            let Some(mut r) = self.idle.take() else {
                return Ok(0);
            };
            if !read_header(&mut r, !self.started)? {
                return Ok(0);
            }
            self.started = true;
            self.out = 0;
            self.member = Some(DeflateDecoder::new(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8], name: Option<&str>) -> Vec<u8> {
        let mut b = flate2::GzBuilder::new();
        if let Some(n) = name {
            b = b.filename(n).comment("c").extra(vec![1, 2, 3]);
        }
        let mut e = b.write(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Gunzip::new(io::BufReader::with_capacity(7, data)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn matches_flate2_on_single_and_multiple_members() {
        let a: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let mut two = gz(&a, None);
        two.extend(gz(b"second member", Some("f.tar")));
        let mut want = Vec::new();
        flate2::read::MultiGzDecoder::new(&two[..])
            .read_to_end(&mut want)
            .unwrap();
        assert_eq!(gunzip(&two).unwrap(), want);
        assert_eq!(gunzip(&gz(b"", None)).unwrap(), b"");
    }

    #[test]
    fn refuses_damage_that_the_trailer_or_header_shows() {
        let good = gz(b"hello hello hello", None);
        let mut bad_len = good.clone();
        let n = bad_len.len();
        bad_len[n - 4] ^= 1;
        assert!(gunzip(&bad_len).unwrap_err().to_string().contains("trailer"));
        assert!(gunzip(&good[..good.len() - 3]).is_err(), "truncated");
        assert!(
            gunzip(b"PK\x03\x04 not gzip")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(gunzip(b"").is_err());
    }
}
