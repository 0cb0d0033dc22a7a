//! SPDY/3 frames on the wire (draft-mbelshe-httpbis-spdy-00 as SPDY/3,
//! plus 3.1's session WINDOW_UPDATE), as Go's `spdy` framer reads and
//! writes them. Every frame has an 8-byte header: control frames start
//! with the control bit, version 3 and a type; data frames with a 31-bit
//! stream id; then 8 bits of flags and a 24-bit payload length.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::zlib::{HeaderBlockError, HeaderCompressor, HeaderDecompressor};
use super::{Headers, SpdyError};

pub(crate) const VERSION: u16 = 3;
pub(crate) const FLAG_FIN: u8 = 0x01;
pub(crate) const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The 24-bit length field's limit.
pub(crate) const MAX_PAYLOAD: usize = 0xff_ffff;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes.
pub(crate) mod rst {
    pub(crate) const PROTOCOL_ERROR: u32 = 1;
    pub(crate) const REFUSED_STREAM: u32 = 3;
    pub(crate) const CANCEL: u32 = 5;
}

/// GOAWAY status codes.
pub(crate) mod goaway {
    pub(crate) const OK: u32 = 0;
    pub(crate) const PROTOCOL_ERROR: u32 = 1;
}

/// A decoded frame, header blocks already decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// Only read: we send no SETTINGS, as spdystream sends none.
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    /// Only read: spdystream neither sends nor honours flow control.
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame type we do not know, skipped by its length.
    Unknown {
        frame_type: u16,
    },
}

impl Frame {
    /// The frame type's name, for error messages and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Frame::SynStream { .. } => "SYN_STREAM",
            Frame::SynReply { .. } => "SYN_REPLY",
            Frame::RstStream { .. } => "RST_STREAM",
            Frame::Settings { .. } => "SETTINGS",
            Frame::Ping { .. } => "PING",
            Frame::GoAway { .. } => "GOAWAY",
            Frame::Headers { .. } => "HEADERS",
            Frame::WindowUpdate { .. } => "WINDOW_UPDATE",
            Frame::Data { .. } => "DATA",
            Frame::Unknown { .. } => "unknown control frame",
        }
    }
}

fn type_name(frame_type: u16) -> &'static str {
    match frame_type {
        TYPE_SYN_STREAM => "SYN_STREAM",
        TYPE_SYN_REPLY => "SYN_REPLY",
        TYPE_RST_STREAM => "RST_STREAM",
        TYPE_SETTINGS => "SETTINGS",
        TYPE_PING => "PING",
        TYPE_GOAWAY => "GOAWAY",
        TYPE_HEADERS => "HEADERS",
        TYPE_WINDOW_UPDATE => "WINDOW_UPDATE",
        _ => "unknown control frame",
    }
}

/// Splits the peer's byte stream into frames.
pub(crate) struct FrameDecoder {
    headers: HeaderDecompressor,
}

impl FrameDecoder {
    pub(crate) fn new() -> Self {
        FrameDecoder {
            headers: HeaderDecompressor::new(),
        }
    }

    /// Takes one whole frame off the front of `buf`; `None` until `buf`
    /// holds one.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        let Some(head) = buf.first_chunk::<8>() else {
            return Ok(None);
        };
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let payload = buf.split_to(len).freeze();
        if first & 0x8000_0000 == 0 {
            return decode_data(first, flags, payload).map(Some);
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        let frame_type = (first & 0xffff) as u16;
        if version != VERSION {
            return Err(SpdyError::UnsupportedVersion {
                version,
                frame: type_name(frame_type),
            });
        }
        self.decode_control(frame_type, flags, payload).map(Some)
    }

    fn decode_control(&mut self, frame_type: u16, flags: u8, mut p: Bytes) -> Result<Frame, SpdyError> {
        let frame = type_name(frame_type);
        let min_len = match frame_type {
            TYPE_SYN_STREAM => 10,
            TYPE_SYN_REPLY | TYPE_HEADERS | TYPE_SETTINGS | TYPE_PING => 4,
            TYPE_RST_STREAM | TYPE_GOAWAY | TYPE_WINDOW_UPDATE => 8,
            _ => 0,
        };
        if p.len() < min_len {
            return Err(SpdyError::InvalidFrame {
                frame,
                reason: format!("payload of {} bytes, at least {min_len} needed", p.len()),
            });
        }
        Ok(match frame_type {
            TYPE_SYN_STREAM => {
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = self.header_block(frame, stream_id, &p)?;
                Frame::SynStream {
                    stream_id: nonzero(frame, stream_id)?,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.header_block(frame, stream_id, &p)?;
                let stream_id = nonzero(frame, stream_id)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => Frame::RstStream {
                stream_id: nonzero(frame, p.get_u32() & 0x7fff_ffff)?,
                status: p.get_u32(),
            },
            TYPE_SETTINGS => decode_settings(p)?,
            TYPE_PING => Frame::Ping { id: p.get_u32() },
            TYPE_GOAWAY => Frame::GoAway {
                last_good_stream_id: p.get_u32() & 0x7fff_ffff,
                status: p.get_u32(),
            },
            TYPE_WINDOW_UPDATE => Frame::WindowUpdate {
                stream_id: p.get_u32() & 0x7fff_ffff,
                delta: p.get_u32() & 0x7fff_ffff,
            },
            _ => Frame::Unknown { frame_type },
        })
    }

    fn header_block(
        &mut self,
        frame: &'static str,
        stream_id: u32,
        compressed: &[u8],
    ) -> Result<Headers, SpdyError> {
        self.headers
            .decompress(compressed)
            .map_err(|source| SpdyError::HeaderBlock {
                frame,
                stream_id,
                source,
            })
    }
}

fn nonzero(frame: &'static str, stream_id: u32) -> Result<u32, SpdyError> {
    if stream_id == 0 {
        return Err(SpdyError::InvalidFrame {
            frame,
            reason: "stream id 0".into(),
        });
    }
    Ok(stream_id)
}

/// Payloads below this are copied out of the read buffer, so that a few
/// small frames waiting for a slow reader do not pin whole read buffers.
const COPY_BELOW: usize = 4096;

fn decode_data(stream_id: u32, flags: u8, mut data: Bytes) -> Result<Frame, SpdyError> {
    if data.len() < COPY_BELOW {
        data = Bytes::copy_from_slice(&data);
    }
    Ok(Frame::Data {
        stream_id: nonzero("DATA", stream_id)?,
        flags,
        data,
    })
}

fn decode_settings(mut p: Bytes) -> Result<Frame, SpdyError> {
    let count = p.get_u32() as usize;
    if p.len() / 8 < count {
        return Err(SpdyError::InvalidFrame {
            frame: "SETTINGS",
            reason: format!("{count} entries announced, {} bytes follow", p.len()),
        });
    }
    let entries = (0..count)
        .map(|_| {
            let flag_id = p.get_u32();
            ((flag_id >> 24) as u8, flag_id & 0xff_ffff, p.get_u32())
        })
        .collect();
    Ok(Frame::Settings { entries })
}

/// Turns frames into bytes for the peer.
pub(crate) struct FrameEncoder {
    headers: HeaderCompressor,
    scratch: Vec<u8>,
}

impl FrameEncoder {
    pub(crate) fn new() -> Self {
        FrameEncoder {
            headers: HeaderCompressor::new(),
            scratch: Vec::new(),
        }
    }

    /// Appends `frame` to `dst`.
    pub(crate) fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                self.compress(frame, *stream_id, headers)?;
                let len = 10 + self.scratch.len();
                control_header(dst, TYPE_SYN_STREAM, *flags, len, frame)?;
                dst.put_u32(*stream_id);
                dst.put_u32(*associated_to);
                dst.put_u8(priority << 5);
                dst.put_u8(0);
                dst.put_slice(&self.scratch);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                self.compress(frame, *stream_id, headers)?;
                let frame_type = match frame {
                    Frame::SynReply { .. } => TYPE_SYN_REPLY,
                    _ => TYPE_HEADERS,
                };
                control_header(dst, frame_type, *flags, 4 + self.scratch.len(), frame)?;
                dst.put_u32(*stream_id);
                dst.put_slice(&self.scratch);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(dst, TYPE_RST_STREAM, 0, 8, frame)?;
                dst.put_u32(*stream_id);
                dst.put_u32(*status);
            }
            Frame::Settings { entries } => {
                control_header(dst, TYPE_SETTINGS, 0, 4 + 8 * entries.len(), frame)?;
                dst.put_u32(entries.len() as u32);
                for (flag, id, value) in entries {
                    dst.put_u32(u32::from(*flag) << 24 | id & 0xff_ffff);
                    dst.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control_header(dst, TYPE_PING, 0, 4, frame)?;
                dst.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(dst, TYPE_GOAWAY, 0, 8, frame)?;
                dst.put_u32(*last_good_stream_id);
                dst.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(dst, TYPE_WINDOW_UPDATE, 0, 8, frame)?;
                dst.put_u32(*stream_id);
                dst.put_u32(*delta);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(too_large(frame, data.len()));
                }
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(u32::from(*flags) << 24 | data.len() as u32);
                dst.put_slice(data);
            }
            Frame::Unknown { .. } => {
                return Err(SpdyError::InvalidFrame {
                    frame: frame.kind(),
                    reason: "cannot be sent".into(),
                });
            }
        }
        Ok(())
    }

    fn compress(&mut self, frame: &Frame, stream_id: u32, headers: &Headers) -> Result<(), SpdyError> {
        self.scratch.clear();
        self.headers
            .compress(headers, &mut self.scratch)
            .map_err(|source: HeaderBlockError| SpdyError::HeaderBlock {
                frame: frame.kind(),
                stream_id,
                source,
            })
    }
}

fn control_header(
    dst: &mut BytesMut,
    frame_type: u16,
    flags: u8,
    len: usize,
    frame: &Frame,
) -> Result<(), SpdyError> {
    if len > MAX_PAYLOAD {
        return Err(too_large(frame, len));
    }
    dst.reserve(8 + len);
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(frame_type);
    dst.put_u32(u32::from(flags) << 24 | len as u32);
    Ok(())
}

fn too_large(frame: &Frame, len: usize) -> SpdyError {
    SpdyError::InvalidFrame {
        frame: frame.kind(),
        reason: format!("payload of {len} bytes exceeds {MAX_PAYLOAD}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// A SYN_STREAM for stream 1 whose header block the C zlib compressed
    /// with the SPDY/3 dictionary, as a port-forward client would open it.
    const SYN_STREAM_1: &str = "800300010000003d0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff";

    #[test]
    fn decodes_a_syn_stream_compressed_elsewhere() {
        let mut buf = BytesMut::from(&unhex(SYN_STREAM_1)[..]);
        // Arriving a byte at a time must make no difference.
        let mut dec = FrameDecoder::new();
        let mut partial = buf.split_to(20);
        assert_eq!(dec.decode(&mut partial).unwrap(), None);
        partial.unsplit(buf);
        let frame = dec.decode(&mut partial).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: h(&[("streamtype", "error"), ("port", "8080"), ("requestid", "0")]),
            }
        );
        assert!(partial.is_empty());
    }

    #[test]
    fn decodes_hand_built_control_and_data_frames() {
        let bytes: &[u8] = &[
            // RST_STREAM stream 3, CANCEL
            0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 3, 0, 0, 0, 5, //
            // PING id 7
            0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 7, //
            // GOAWAY last good 5, OK
            0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 5, 0, 0, 0, 0, //
            // SETTINGS: one entry, flag 1, id 7 (initial window), 65536
            0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0c, 0, 0, 0, 1, 1, 0, 0, 7, 0, 1, 0, 0,
            // WINDOW_UPDATE stream 1, +4096
            0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0x10, 0, //
            // unknown type 0x0a with 3 bytes, skipped
            0x80, 0x03, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x03, 1, 2, 3, //
            // DATA stream 1, FIN, "hi"
            0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x02, b'h', b'i',
        ];
        let mut buf = BytesMut::from(bytes);
        let mut dec = FrameDecoder::new();
        let mut frames = Vec::new();
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        assert_eq!(
            frames,
            vec![
                Frame::RstStream {
                    stream_id: 3,
                    status: rst::CANCEL
                },
                Frame::Ping { id: 7 },
                Frame::GoAway {
                    last_good_stream_id: 5,
                    status: goaway::OK
                },
                Frame::Settings {
                    entries: vec![(1, 7, 65536)]
                },
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta: 4096
                },
                Frame::Unknown { frame_type: 10 },
                Frame::Data {
                    stream_id: 1,
                    flags: FLAG_FIN,
                    data: Bytes::from_static(b"hi")
                },
            ]
        );
    }

    #[test]
    fn encodes_what_go_writes() {
        let mut enc = FrameEncoder::new();
        let mut dst = BytesMut::new();
        enc.encode(
            &Frame::RstStream {
                stream_id: 5,
                status: rst::CANCEL,
            },
            &mut dst,
        )
        .unwrap();
        enc.encode(
            &Frame::Data {
                stream_id: 2,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            &mut dst,
        )
        .unwrap();
        assert_eq!(
            &dst[..],
            &[
                0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5, //
                0, 0, 0, 2, 1, 0, 0, 0
            ]
        );
    }

    #[test]
    fn round_trips_header_frames_in_one_session() {
        let mut enc = FrameEncoder::new();
        let mut dec = FrameDecoder::new();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "stdin")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Headers::new(),
            },
            Frame::Headers {
                stream_id: 1,
                flags: 0,
                headers: h(&[("a", "b")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 1,
                priority: 0,
                flags: FLAG_UNIDIRECTIONAL,
                headers: h(&[("streamtype", "stdout")]),
            },
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut buf).unwrap();
        }
        for f in &frames {
            assert_eq!(dec.decode(&mut buf).unwrap().as_ref(), Some(f));
        }
    }

    #[test]
    fn rejects_other_versions_and_short_frames() {
        let mut dec = FrameDecoder::new();
        let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        let err = dec.decode(&mut v2).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        let mut short = BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        let err = dec.decode(&mut short).unwrap_err();
        assert!(err.to_string().contains("RST_STREAM"), "{err}");
    }
}
