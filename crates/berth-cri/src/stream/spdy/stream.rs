//! One SPDY stream: its receive buffer, its half-close and reset state, and
//! the handles the protocols read and write through.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::PollSemaphore;

use super::frame::{FLAG_FIN, Frame, rst};
use super::session::Shared;
use super::{Headers, MAX_DATA_CHUNK, RECV_BUFFER, SpdyError};

/// What a buffered chunk costs beyond its bytes, so that a peer sending
/// tiny DATA frames cannot pile up unbounded bookkeeping.
const CHUNK_COST: usize = 64;

/// Who reset a stream.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ResetBy {
    Peer(u32),
    Us,
}

/// What the session and the handles share about one stream.
pub(crate) struct StreamState {
    pub(crate) id: u32,
    flags: Mutex<Flags>,
    /// Wakes the session's reader waiting for room in `Flags::buf`.
    space: Notify,
}

struct Flags {
    buf: VecDeque<Bytes>,
    /// Bytes in `buf` plus [`CHUNK_COST`] per chunk.
    buffered: usize,
    remote_fin: bool,
    local_fin: bool,
    reset: Option<ResetBy>,
    conn_gone: bool,
    reader_gone: bool,
    read_waker: Option<Waker>,
    /// Completes `Connection::open` when the SYN_REPLY (or a reset) arrives.
    reply: Option<oneshot::Sender<Result<(), SpdyError>>>,
}

impl StreamState {
    pub(crate) fn new(
        id: u32,
        remote_fin: bool,
        local_fin: bool,
        reply: Option<oneshot::Sender<Result<(), SpdyError>>>,
    ) -> Arc<Self> {
        Arc::new(StreamState {
            id,
            flags: Mutex::new(Flags {
                buf: VecDeque::new(),
                buffered: 0,
                remote_fin,
                local_fin,
                reset: None,
                conn_gone: false,
                reader_gone: false,
                read_waker: None,
                reply,
            }),
            space: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Flags> {
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues data from the peer for the reader, waiting while the buffer is
    /// full: this is the session's backpressure, as the reader task that
    /// calls it stops reading the socket meanwhile.
    pub(crate) async fn push_data(&self, data: Bytes, fin: bool) {
        loop {
            {
                let mut f = self.lock();
                if f.reset.is_some() || f.remote_fin || f.conn_gone {
                    return;
                }
                if f.reader_gone || f.buffered < RECV_BUFFER || data.is_empty() {
                    if !f.reader_gone && !data.is_empty() {
                        f.buffered += data.len() + CHUNK_COST;
                        f.buf.push_back(data);
                    }
                    f.remote_fin |= fin;
                    wake(&mut f.read_waker);
                    return;
                }
            }
            self.space.notified().await;
        }
    }

    pub(crate) fn remote_finished(&self) {
        let mut f = self.lock();
        f.remote_fin = true;
        wake(&mut f.read_waker);
    }

    pub(crate) fn replied(&self) {
        if let Some(reply) = self.lock().reply.take() {
            let _ = reply.send(Ok(()));
        }
    }

    /// Fails a pending `open` without touching the stream's data.
    pub(crate) fn refuse_open(&self, err: SpdyError) {
        if let Some(reply) = self.lock().reply.take() {
            let _ = reply.send(Err(err));
        }
    }

    pub(crate) fn awaiting_reply(&self) -> bool {
        self.lock().reply.is_some()
    }

    /// Marks the stream reset; true if it was not reset before.
    pub(crate) fn mark_reset(&self, by: ResetBy) -> bool {
        let mut f = self.lock();
        if f.reset.is_some() {
            return false;
        }
        f.reset = Some(by);
        f.buf.clear();
        f.buffered = 0;
        if let Some(reply) = f.reply.take() {
            let err = match by {
                ResetBy::Peer(status) => SpdyError::Reset {
                    stream_id: self.id,
                    status,
                },
                ResetBy::Us => SpdyError::ResetLocally { stream_id: self.id },
            };
            let _ = reply.send(Err(err));
        }
        wake(&mut f.read_waker);
        drop(f);
        self.space.notify_one();
        true
    }

    pub(crate) fn connection_gone(&self) {
        let mut f = self.lock();
        f.conn_gone = true;
        if let Some(reply) = f.reply.take() {
            let _ = reply.send(Err(SpdyError::ConnectionClosed));
        }
        wake(&mut f.read_waker);
        drop(f);
        self.space.notify_one();
    }

    /// Whether the session may forget the stream: nothing more can be read
    /// or written through it.
    pub(crate) fn finished(&self) -> bool {
        let f = self.lock();
        f.reset.is_some() || (f.local_fin && (f.remote_fin || f.reader_gone))
    }

    fn write_error(&self) -> Option<SpdyError> {
        let f = self.lock();
        let stream_id = self.id;
        match f.reset {
            Some(ResetBy::Peer(status)) => Some(SpdyError::Reset { stream_id, status }),
            Some(ResetBy::Us) => Some(SpdyError::ResetLocally { stream_id }),
            None if f.conn_gone => Some(SpdyError::StreamConnectionClosed { stream_id }),
            None if f.local_fin => Some(SpdyError::WriteAfterFin { stream_id }),
            None => None,
        }
    }

    fn poll_read(&self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut f = self.lock();
        if !f.buf.is_empty() {
            while out.remaining() > 0 {
                let Some(chunk) = f.buf.front_mut() else {
                    break;
                };
                let n = chunk.len().min(out.remaining());
                out.put_slice(&chunk[..n]);
                chunk.advance(n);
                let emptied = chunk.is_empty();
                f.buffered -= n;
                if emptied {
                    f.buf.pop_front();
                    f.buffered -= CHUNK_COST;
                }
            }
            drop(f);
            self.space.notify_one();
            return Poll::Ready(Ok(()));
        }
        let stream_id = self.id;
        match f.reset {
            _ if f.remote_fin => Poll::Ready(Ok(())),
            Some(ResetBy::Peer(status)) => Poll::Ready(Err(SpdyError::Reset { stream_id, status }.into())),
            Some(ResetBy::Us) => Poll::Ready(Err(SpdyError::ResetLocally { stream_id }.into())),
            None if f.conn_gone => Poll::Ready(Err(SpdyError::StreamConnectionClosed { stream_id }.into())),
            None => {
                f.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn reader_dropped(&self) {
        let mut f = self.lock();
        f.reader_gone = true;
        f.buf.clear();
        f.buffered = 0;
        drop(f);
        self.space.notify_one();
    }

    /// Marks our side finished; false if it already was or cannot be.
    fn mark_local_fin(&self) -> bool {
        let mut f = self.lock();
        if f.local_fin || f.reset.is_some() || f.conn_gone {
            return false;
        }
        f.local_fin = true;
        true
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

/// A SPDY stream: reading yields the peer's DATA (EOF at the peer's FIN),
/// writing sends DATA frames of at most [`MAX_DATA_CHUNK`] bytes.
///
/// Reads fail with `ConnectionReset` once the stream is reset, and with
/// `ConnectionAborted` if the connection ends before the peer's FIN.
/// `poll_flush` does not wait for the socket: frames go out in the order
/// written, ahead of anything sent later on the connection (so a
/// [`Connection::close`](super::Connection::close) after the last write
/// delivers that write). Dropping the writing half sends FIN.
pub struct Stream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

/// The reading half of a [`Stream`]; dropping it discards further data.
pub struct StreamReader {
    state: Arc<StreamState>,
    conn: Arc<Shared>,
}

/// The writing half of a [`Stream`]; dropping it finishes our side (FIN).
pub struct StreamWriter {
    state: Arc<StreamState>,
    conn: Arc<Shared>,
    budget: PollSemaphore,
}

impl Stream {
    pub(crate) fn new(state: Arc<StreamState>, conn: Arc<Shared>, headers: Headers) -> Self {
        let budget = PollSemaphore::new(conn.budget.clone());
        Stream {
            headers,
            reader: StreamReader {
                state: state.clone(),
                conn: conn.clone(),
            },
            writer: StreamWriter { state, conn, budget },
        }
    }

    pub fn id(&self) -> u32 {
        self.reader.state.id
    }

    /// The headers of the SYN_STREAM that opened the stream.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Half-closes our side: a DATA frame with FLAG_FIN.
    pub async fn close_write(&mut self) -> Result<(), SpdyError> {
        self.writer.close_write().await
    }

    /// RST_STREAM CANCEL: both directions fail from now on, here and there.
    pub fn reset(&self) {
        self.writer.reset();
    }

    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("headers", &self.headers)
            .finish()
    }
}

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// RST_STREAM CANCEL, as [`Stream::reset`].
    pub fn reset(&self) {
        self.conn.reset_stream(&self.state);
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// Half-closes our side: a DATA frame with FLAG_FIN. Fails if the
    /// stream was reset, already finished, or the connection is gone.
    pub async fn close_write(&mut self) -> Result<(), SpdyError> {
        self.send_fin()
    }

    /// RST_STREAM CANCEL, as [`Stream::reset`].
    pub fn reset(&self) {
        self.conn.reset_stream(&self.state);
    }

    fn send_fin(&self) -> Result<(), SpdyError> {
        if !self.state.mark_local_fin() {
            return Err(self.state.write_error().unwrap_or(SpdyError::WriteAfterFin {
                stream_id: self.state.id,
            }));
        }
        let frame = Frame::Data {
            stream_id: self.state.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        };
        let sent = self.conn.send(frame, None);
        self.conn.forget_if_finished(&self.state);
        sent
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.state.poll_read(cx, buf)
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(err) = self.state.write_error() {
            return Poll::Ready(Err(err.into()));
        }
        let n = buf.len().min(MAX_DATA_CHUNK);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        let Some(permit) = ready!(self.budget.poll_acquire_many(cx, n as u32)) else {
            let stream_id = self.state.id;
            return Poll::Ready(Err(SpdyError::StreamConnectionClosed { stream_id }.into()));
        };
        // The stream may have been reset while we waited for the budget.
        if let Some(err) = self.state.write_error() {
            return Poll::Ready(Err(err.into()));
        }
        let frame = Frame::Data {
            stream_id: self.state.id,
            flags: 0,
            data: Bytes::copy_from_slice(&buf[..n]),
        };
        self.conn.send(frame, Some(permit))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.lock().local_fin {
            // Already finished: shutting down twice is not an error.
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(self.send_fin().map_err(io::Error::from))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.state.reader_dropped();
        self.conn.forget_if_finished(&self.state);
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if self.state.write_error().is_none() {
            let _ = self.send_fin();
        }
        self.conn.forget_if_finished(&self.state);
    }
}

/// Sends RST_STREAM `status` for a stream the session refuses.
pub(crate) fn refusal(stream_id: u32, status: u32) -> Frame {
    Frame::RstStream { stream_id, status }
}

/// RST_STREAM CANCEL for `stream_id`.
pub(crate) fn cancel(stream_id: u32) -> Frame {
    refusal(stream_id, rst::CANCEL)
}
