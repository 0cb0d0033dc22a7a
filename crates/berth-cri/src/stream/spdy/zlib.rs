//! SPDY/3 header blocks: the name/value block format and its compression.
//!
//! Each direction of a session is ONE zlib stream primed with the SPDY
//! dictionary; every SYN_STREAM, SYN_REPLY and HEADERS frame carries the next
//! piece of it, ended with a sync flush. So the compressor and decompressor
//! live as long as the session, and every header block must be decompressed
//! in wire order, even from frames we then ignore.
//!
//! We drive raw deflate and write/check the 6-byte zlib header ourselves:
//! the header must announce the dictionary (FDICT + DICTID) because Go's
//! zlib reader, which kubectl and kubelet use, only applies a dictionary the
//! header asks for.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::Headers;
use super::dictionary::{DICTIONARY_ID, dictionary};

/// A decompressed header block larger than this is refused: Kubernetes'
/// blocks are a few dozen bytes, and zlib can expand input ~1000-fold.
pub(crate) const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Why a header block could not be compressed, decompressed or parsed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderBlockError {
    #[error("zlib compression failed: {0}")]
    Compress(String),
    #[error("zlib decompression failed: {0}")]
    Decompress(String),
    #[error("zlib header {0:02x?} is not a deflate stream with the SPDY/3 dictionary")]
    BadZlibHeader(Vec<u8>),
    #[error("decompressed header block exceeds {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    #[error("header block is truncated")]
    Truncated,
    #[error("header block has {0} trailing bytes")]
    Trailing(usize),
    #[error("header name or value is not UTF-8")]
    NotUtf8,
    #[error("header block has an empty header name")]
    EmptyName,
}

/// Our half of the session's header compression.
pub(crate) struct HeaderCompressor {
    zlib: Compress,
    header_written: bool,
}

impl HeaderCompressor {
    pub(crate) fn new() -> Self {
        let mut zlib = Compress::new(Compression::best(), false);
        zlib.set_dictionary(dictionary())
            .expect("a raw deflate stream accepts a dictionary before any input");
        HeaderCompressor {
            zlib,
            header_written: false,
        }
    }

    /// Compresses `headers` as the next header block of the session onto `out`.
    pub(crate) fn compress(&mut self, headers: &Headers, out: &mut Vec<u8>) -> Result<(), HeaderBlockError> {
        if !self.header_written {
            // CMF 0x78: deflate, 32 KiB window; FLG 0xf9: best compression,
            // FDICT, and the check bits that make (CMF << 8 | FLG) % 31 == 0.
            out.extend_from_slice(&[0x78, 0xf9]);
            out.extend_from_slice(&DICTIONARY_ID.to_be_bytes());
            self.header_written = true;
        }
        let block = encode_header_block(headers);
        let mut input = &block[..];
        loop {
            out.reserve(input.len() + 64);
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| HeaderBlockError::Compress(e.to_string()))?;
            input = &input[(self.zlib.total_in() - before) as usize..];
            // The sync flush is complete once the output was not filled up.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// The peer's half of the session's header compression.
pub(crate) struct HeaderDecompressor {
    zlib: Decompress,
    header_checked: bool,
}

impl HeaderDecompressor {
    pub(crate) fn new() -> Self {
        let mut zlib = Decompress::new(false);
        zlib.set_dictionary(dictionary())
            .expect("a raw inflate stream accepts a dictionary before any input");
        HeaderDecompressor {
            zlib,
            header_checked: false,
        }
    }

    /// Decompresses the next piece of the peer's header stream and parses it.
    pub(crate) fn decompress(&mut self, mut input: &[u8]) -> Result<Headers, HeaderBlockError> {
        if !self.header_checked {
            input = skip_zlib_header(input)?;
            self.header_checked = true;
        }
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.len().max(256));
            }
            let (before_in, before_out) = (self.zlib.total_in(), self.zlib.total_out());
            let status = self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|e| HeaderBlockError::Decompress(e.to_string()))?;
            input = &input[(self.zlib.total_in() - before_in) as usize..];
            let produced = self.zlib.total_out() - before_out;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(HeaderBlockError::TooLarge);
            }
            if status == Status::StreamEnd && !input.is_empty() {
                return Err(HeaderBlockError::Decompress(
                    "the peer ended its header stream".into(),
                ));
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            let consumed = before_in != self.zlib.total_in();
            if !consumed && produced == 0 {
                if input.is_empty() {
                    break;
                }
                return Err(HeaderBlockError::Decompress("inflate made no progress".into()));
            }
        }
        decode_header_block(&out)
    }
}

/// Checks the zlib header the peer starts its header stream with. A header
/// without FDICT is accepted: such a stream never refers to the dictionary,
/// so the primed window does not change what it decodes to.
fn skip_zlib_header(input: &[u8]) -> Result<&[u8], HeaderBlockError> {
    let bad = || HeaderBlockError::BadZlibHeader(input[..input.len().min(6)].to_vec());
    let [cmf, flg, ..] = *input else {
        return Err(bad());
    };
    if cmf & 0x0f != 8 || cmf >> 4 > 7 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
        return Err(bad());
    }
    if flg & 0x20 == 0 {
        return Ok(&input[2..]);
    }
    let id = input.get(2..6).ok_or_else(bad)?;
    if id != DICTIONARY_ID.to_be_bytes() {
        return Err(bad());
    }
    Ok(&input[6..])
}

/// The uncompressed name/value block: a 32-bit count, then each name and
/// value with a 32-bit length. SPDY/3 forbids repeating a name, so values
/// of one name travel joined by NUL; names go out lower-case, as Go's
/// framer rejects any other.
pub(crate) fn encode_header_block(headers: &Headers) -> Vec<u8> {
    let mut grouped: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    let mut block = Vec::new();
    block.extend_from_slice(&(grouped.len() as u32).to_be_bytes());
    for (name, values) in grouped {
        let value = values.join("\0");
        block.extend_from_slice(&(name.len() as u32).to_be_bytes());
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(&(value.len() as u32).to_be_bytes());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Parses an uncompressed name/value block; a NUL-joined value becomes one
/// entry per value, and names are lower-cased as Go's framer does.
pub(crate) fn decode_header_block(block: &[u8]) -> Result<Headers, HeaderBlockError> {
    let mut rest = block;
    let count = take_u32(&mut rest)?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take_string(&mut rest)?.to_ascii_lowercase();
        if name.is_empty() {
            return Err(HeaderBlockError::EmptyName);
        }
        let value = take_string(&mut rest)?;
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_owned()));
        }
    }
    if !rest.is_empty() {
        return Err(HeaderBlockError::Trailing(rest.len()));
    }
    Ok(headers)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, HeaderBlockError> {
    let (head, tail) = rest.split_first_chunk::<4>().ok_or(HeaderBlockError::Truncated)?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(rest: &mut &[u8]) -> Result<String, HeaderBlockError> {
    let len = take_u32(rest)? as usize;
    if rest.len() < len {
        return Err(HeaderBlockError::Truncated);
    }
    let (s, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(s.to_vec()).map_err(|_| HeaderBlockError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Two consecutive header blocks of one session, compressed by the C
    /// zlib (level 9, SPDY/3 dictionary, sync flush after each): the second
    /// refers back into the first, so it only decodes with shared state.
    const C_ZLIB_BLOCK_1: &str = "78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff";
    const C_ZLIB_BLOCK_2: &str = "02c960680695438944e94514e9cc890c4900000000ffff";

    #[test]
    fn decodes_blocks_compressed_by_c_zlib() {
        let mut dec = HeaderDecompressor::new();
        let first = dec.decompress(&unhex(C_ZLIB_BLOCK_1)).unwrap();
        assert_eq!(
            first,
            h(&[("streamtype", "error"), ("port", "8080"), ("requestid", "0")])
        );
        let second = dec.decompress(&unhex(C_ZLIB_BLOCK_2)).unwrap();
        assert_eq!(
            second,
            h(&[
                ("streamtype", "data"),
                ("port", "8080"),
                ("requestid", "0"),
                ("accept", "a"),
                ("accept", "b"),
            ])
        );
    }

    #[test]
    fn decodes_a_hand_built_stored_block() {
        // zlib header announcing the SPDY dictionary, then a stored
        // (uncompressed) deflate block holding the name/value block.
        let block = encode_header_block(&h(&[("streamtype", "stdin")]));
        let mut input = vec![0x78, 0x3f, 0xe3, 0xc6, 0xa7, 0xc2, 0x00];
        input.extend_from_slice(&(block.len() as u16).to_le_bytes());
        input.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        input.extend_from_slice(&block);
        let headers = HeaderDecompressor::new().decompress(&input).unwrap();
        assert_eq!(headers, h(&[("streamtype", "stdin")]));
    }

    #[test]
    fn rejects_a_foreign_dictionary() {
        let input = [0x78, 0xbb, 0, 0, 0, 1, 0x00];
        let err = HeaderDecompressor::new().decompress(&input).unwrap_err();
        assert!(matches!(err, HeaderBlockError::BadZlibHeader(_)), "{err}");
    }

    #[test]
    fn our_stream_announces_the_dictionary() {
        let mut out = Vec::new();
        HeaderCompressor::new()
            .compress(&Headers::new(), &mut out)
            .unwrap();
        assert_eq!(&out[..6], &[0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
        // A sync flush ends every block with an empty stored block.
        assert!(out.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    }

    #[test]
    fn round_trips_many_blocks_through_one_stream() {
        let mut enc = HeaderCompressor::new();
        let mut dec = HeaderDecompressor::new();
        for i in 0..50 {
            let headers = h(&[
                ("streamType", "data"),
                ("port", &format!("{}", 8000 + i)),
                ("requestid", &i.to_string()),
                ("x-multi", "one"),
                ("x-multi", "two"),
                ("empty", ""),
            ]);
            let mut out = Vec::new();
            enc.compress(&headers, &mut out).unwrap();
            let mut expected = headers.clone();
            expected[0].0 = "streamtype".into();
            assert_eq!(dec.decompress(&out).unwrap(), expected);
        }
    }

    #[test]
    fn block_format_matches_the_spec() {
        let block = encode_header_block(&h(&[("A", "1"), ("b", "2"), ("a", "3")]));
        assert_eq!(
            block,
            b"\0\0\0\x02\0\0\0\x01a\0\0\0\x031\x003\0\0\0\x01b\0\0\0\x012".to_vec()
        );
        assert!(matches!(
            decode_header_block(&block[..block.len() - 1]),
            Err(HeaderBlockError::Truncated)
        ));
    }
}
