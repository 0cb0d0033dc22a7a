//! An `:authority` that h2 accepts, whatever the gRPC client sent.
//!
//! Go's gRPC clients dialing a unix socket through a custom dialer (crictl
//! and critest of cri-tools, kubelets before 1.26) send the socket path,
//! percent-encoded, as `:authority` (`%2Frun%2Fberth%2Fberth.sock`). h2, the
//! HTTP/2 server under tonic, refuses such a request with a stream reset
//! (PROTOCOL_ERROR), and offers no switch to accept it (hyperium/h2#487 is
//! still open). The authority means nothing on a local socket, so berth
//! rewrites it before h2 sees it: [`FixAuthority`] passes the client's
//! HTTP/2 frames through, except header blocks, which it decodes with its
//! own HPACK context (mirroring the client's) and re-encodes with one that
//! h2's decoder mirrors, an invalid `:authority` replaced by `localhost`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What every HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload h2 accepts by default (SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;
/// Bound on one header block, as h2's default max header list size.
const MAX_BLOCK: usize = 16 << 20;
const REPLACEMENT: &[u8] = b"localhost";

/// A connection whose incoming HTTP/2 header blocks are rewritten as the
/// module docs say; writes go straight through.
pub struct FixAuthority<S> {
    inner: S,
    /// Bytes read from the client, not yet a whole frame.
    input: BytesMut,
    /// Bytes ready for h2.
    output: BytesMut,
    preface_seen: bool,
    /// The header block being collected: stream, flags of its HEADERS
    /// frame, priority fields, fragments so far.
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    eof: bool,
}

struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

impl<S> FixAuthority<S> {
    pub fn new(inner: S) -> Self {
        FixAuthority {
            inner,
            input: BytesMut::with_capacity(16 * 1024),
            output: BytesMut::new(),
            preface_seen: false,
            block: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
            eof: false,
        }
    }

    /// Moves every whole frame from `input` to `output`, rewriting header
    /// blocks on the way.
    fn process(&mut self) -> io::Result<()> {
        if !self.preface_seen {
            if self.input.len() < PREFACE.len() {
                return Ok(());
            }
            // Not HTTP/2 with prior knowledge: pass everything untouched and
            // let h2 answer it.
            self.preface_seen = true;
            let preface = self.input.split_to(PREFACE.len());
            self.output.extend_from_slice(&preface);
        }
        while self.input.len() >= FRAME_HEADER {
            let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
            if self.input.len() < FRAME_HEADER + len {
                self.input.reserve(FRAME_HEADER + len - self.input.len());
                return Ok(());
            }
            let kind = self.input[3];
            let flags = self.input[4];
            let stream = u32::from_be_bytes([self.input[5], self.input[6], self.input[7], self.input[8]])
                & 0x7fff_ffff;
            match kind {
                HEADERS => {
                    let frame = self.input.split_to(FRAME_HEADER + len);
                    self.start_block(stream, flags, &frame[FRAME_HEADER..])?;
                }
                CONTINUATION if self.block.as_ref().is_some_and(|b| b.stream == stream) => {
                    let frame = self.input.split_to(FRAME_HEADER + len);
                    let block = self.block.as_mut().expect("checked");
                    block.fragment.extend_from_slice(&frame[FRAME_HEADER..]);
                    if block.fragment.len() > MAX_BLOCK {
                        return Err(invalid("header block too large"));
                    }
                    if flags & END_HEADERS != 0 {
                        self.finish_block()?;
                    }
                }
                _ => {
                    // Anything else between a HEADERS frame and its last
                    // CONTINUATION is a protocol error h2 reports itself.
                    let frame = self.input.split_to(FRAME_HEADER + len);
                    self.output.extend_from_slice(&frame);
                }
            }
        }
        Ok(())
    }

    fn start_block(&mut self, stream: u32, flags: u8, payload: &[u8]) -> io::Result<()> {
        let mut p = payload;
        let mut pad = 0usize;
        if flags & PADDED != 0 {
            pad = *p
                .first()
                .ok_or_else(|| invalid("HEADERS frame without its pad length"))? as usize;
            p = &p[1..];
        }
        let priority = if flags & PRIORITY != 0 {
            let fields: [u8; 5] = p
                .get(..5)
                .and_then(|f| f.try_into().ok())
                .ok_or_else(|| invalid("HEADERS frame without its priority fields"))?;
            p = &p[5..];
            Some(fields)
        } else {
            None
        };
        let fragment = p
            .get(
                ..p.len()
                    .checked_sub(pad)
                    .ok_or_else(|| invalid("HEADERS padding longer than the frame"))?,
            )
            .expect("in range");
        self.block = Some(Block {
            stream,
            end_stream: flags & END_STREAM != 0,
            priority,
            fragment: fragment.to_vec(),
        });
        if flags & END_HEADERS != 0 {
            self.finish_block()?;
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let block = self.block.take().expect("a block is open");
        let headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| invalid(&format!("HPACK: {e:?}")))?;
        let fixed = headers.iter().map(|(name, value)| {
            let value: &[u8] =
                if name == b":authority" && http::uri::Authority::try_from(value.as_slice()).is_err() {
                    REPLACEMENT
                } else {
                    value
                };
            (name.as_slice(), value)
        });
        let encoded = self.encoder.encode(fixed);
        self.emit(&block, &encoded);
        Ok(())
    }

    /// Writes the block as one HEADERS frame and as many CONTINUATION
    /// frames as the frame size limit needs.
    fn emit(&mut self, block: &Block, encoded: &[u8]) {
        let first_room = MAX_FRAME - if block.priority.is_some() { 5 } else { 0 };
        let (first, mut rest) = encoded.split_at(encoded.len().min(first_room));
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        let priority_len = block.priority.map_or(0, |_| 5);
        self.frame_header(first.len() + priority_len, HEADERS, flags, block.stream);
        if let Some(p) = block.priority {
            self.output.extend_from_slice(&p);
        }
        self.output.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            self.frame_header(chunk.len(), CONTINUATION, flags, block.stream);
            self.output.extend_from_slice(chunk);
        }
    }

    fn frame_header(&mut self, len: usize, kind: u8, flags: u8, stream: u32) {
        let l = (len as u32).to_be_bytes();
        self.output.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
        self.output.extend_from_slice(&stream.to_be_bytes());
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from the client: {what}"),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever incomplete frame is left goes to h2, which
                // reports the truncation.
                if !this.input.is_empty() {
                    let rest = this.input.split();
                    this.output.extend_from_slice(&rest);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.input.extend_from_slice(rb.filled());
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for FixAuthority<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let l = (payload.len() as u32).to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Runs `input` through a FixAuthority and returns what h2 would read.
    async fn through(input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.unwrap();
        drop(client);
        let mut fixed = FixAuthority::new(server);
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        out
    }

    /// Splits h2's view into frames: (type, flags, stream, payload).
    fn frames(mut b: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert!(b.starts_with(PREFACE));
        b = &b[PREFACE.len()..];
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
            let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
            out.push((b[3], b[4], stream, b[9..9 + len].to_vec()));
            b = &b[9 + len..];
        }
        out
    }

    fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), b"/runtime.v1.RuntimeService/Version".to_vec()),
            (b":authority".to_vec(), authority.to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
        ]
    }

    fn encode(enc: &mut loona_hpack::Encoder<'static>, h: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        enc.encode(h.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let bad = b"%2Frun%2Fberth%2Fberth.sock";
        let mut client = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        // Two requests on one connection: the second refers to the first's
        // dynamic table entries, which must stay consistent on both sides.
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut client, &request(bad)),
        ));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        // The second block split over HEADERS (padded, with priority) and
        // a CONTINUATION.
        let block = encode(&mut client, &request(bad));
        let (a, b) = block.split_at(block.len() / 2);
        let mut first = vec![2u8]; // pad length
        first.extend_from_slice(&[0, 0, 0, 0, 7]);
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0]);
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 3, &first));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        let out = through(input).await;
        let fs = frames(&out);
        assert_eq!(fs.len(), 4, "{fs:?}");
        assert_eq!(fs[0].0, 0x4);
        assert_eq!(
            (fs[2].0, fs[2].1, fs[2].3.as_slice()),
            (0x0, END_STREAM, &b"\0\0\0\0\0"[..])
        );
        // h2's decoder sees localhost, twice, and every other field intact.
        let mut h2 = loona_hpack::Decoder::new();
        let expected = request(b"localhost");
        assert_eq!(fs[1].1, END_HEADERS);
        assert_eq!(h2.decode(&fs[1].3).unwrap(), expected);
        assert_eq!(fs[3].0, HEADERS);
        assert_eq!(fs[3].1, END_HEADERS | END_STREAM | PRIORITY);
        assert_eq!(&fs[3].3[..5], &[0, 0, 0, 0, 7]);
        assert_eq!(h2.decode(&fs[3].3[5..]).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_valid_authority_is_left_alone() {
        let mut client = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut client, &request(b"berth.example:443")),
        ));
        let out = through(input).await;
        let fs = frames(&out);
        let mut h2 = loona_hpack::Decoder::new();
        assert_eq!(h2.decode(&fs[0].3).unwrap(), request(b"berth.example:443"));
    }

    #[tokio::test]
    async fn a_garbled_header_block_is_an_error_naming_http2() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client.write_all(&input).await.unwrap();
        drop(client);
        let mut out = Vec::new();
        let e = FixAuthority::new(server).read_to_end(&mut out).await.unwrap_err();
        assert!(e.to_string().contains("HPACK"), "{e}");
    }
}
