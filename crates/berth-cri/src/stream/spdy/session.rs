//! The SPDY session: one task reads and dispatches frames, one task owns
//! the socket's writing half and writes frames in the order they were
//! queued, so a stream's frames (and the SYN_REPLY before them, the GOAWAY
//! after them) keep their order on the wire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::frame::{FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, FrameDecoder, FrameEncoder, goaway, rst};
use super::stream::{ResetBy, Stream, StreamState, cancel, refusal};
use super::{Headers, SEND_BUFFER, SpdyError};

/// Streams the peer opened that the application has not taken yet; past
/// this the session stops reading until it does.
const INCOMING_QUEUE: usize = 16;
/// PING answers not yet written; a peer pinging faster than we can write
/// gets no answer rather than unbounded memory.
const MAX_QUEUED_PING_REPLIES: usize = 64;
/// Bytes gathered from the queue into one socket write.
/// How long a closing session waits for the peer to close its side.
const LINGER: Duration = Duration::from_secs(2);
const WRITE_BATCH: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;
const MAX_STREAM_ID: u32 = 0x7fff_ffff;

/// A frame waiting for the writer task.
pub(crate) struct Outgoing {
    frame: Frame,
    /// Budget held by DATA until the frame reached the socket.
    permit: Option<OwnedSemaphorePermit>,
    /// Set on our GOAWAY: the connection ends once it is written.
    close_after: bool,
}

/// State shared by the session's tasks, the [`Connection`] handles and the
/// streams.
pub(crate) struct Shared {
    server: bool,
    out: mpsc::UnboundedSender<Outgoing>,
    pub(crate) budget: Arc<Semaphore>,
    streams: Mutex<HashMap<u32, Arc<StreamState>>>,
    /// Held while a SYN_STREAM is queued, so ids reach the wire in order.
    next_stream_id: Mutex<u32>,
    last_peer_stream_id: AtomicU32,
    next_ping_id: Mutex<u32>,
    pings: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    ping_replies_queued: AtomicUsize,
    going_away: AtomicBool,
    peer_going_away: AtomicBool,
    dead: AtomicBool,
    /// Tells both tasks to stop now.
    stop: CancellationToken,
    /// Cancelled once both tasks have ended and the socket is dropped.
    done: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A SPDY/3.1 session over an upgraded connection. Cheap to clone; the
/// session runs on tokio tasks until the peer closes the connection, it
/// fails, or [`close`](Connection::close) / [`abort`](Connection::abort).
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    /// Runs a SPDY/3.1 session over `io` (already upgraded) as the server:
    /// streams the peer opens arrive on the receiver, each already answered
    /// with SYN_REPLY. The receiver ends when the peer's side of the session
    /// does. Must be called inside a tokio runtime.
    pub fn server<IO>(io: IO) -> (Connection, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, true)
    }

    /// The same as the client: our stream ids are odd.
    pub fn client<IO>(io: IO) -> (Connection, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, false)
    }

    fn start<IO>(io: IO, server: bool) -> (Connection, mpsc::Receiver<Stream>)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (out, out_rx) = mpsc::unbounded_channel();
        let first_id = if server { 2 } else { 1 };
        let shared = Arc::new(Shared {
            server,
            out,
            budget: Arc::new(Semaphore::new(SEND_BUFFER)),
            streams: Mutex::new(HashMap::new()),
            next_stream_id: Mutex::new(first_id),
            last_peer_stream_id: AtomicU32::new(0),
            next_ping_id: Mutex::new(first_id),
            pings: Mutex::new(HashMap::new()),
            ping_replies_queued: AtomicUsize::new(0),
            going_away: AtomicBool::new(false),
            peer_going_away: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
        });
        let (incoming, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let (read_half, write_half) = tokio::io::split(io);
        let reader = tokio::spawn(read_task(read_half, shared.clone(), incoming));
        let writer = tokio::spawn(write_task(write_half, shared.clone(), out_rx));
        let supervised = shared.clone();
        tokio::spawn(async move {
            let _ = reader.await;
            let _ = writer.await;
            supervised.teardown();
            supervised.done.cancel();
        });
        (Connection { shared }, incoming_rx)
    }

    /// Opens a stream with `headers` (SYN_STREAM) and waits for the peer's
    /// SYN_REPLY. Dropping the future before then resets the stream.
    pub async fn open(&self, headers: Headers) -> Result<Stream, SpdyError> {
        let shared = &self.shared;
        if shared.dead.load(SeqCst) {
            return Err(SpdyError::ConnectionClosed);
        }
        if shared.going_away.load(SeqCst) || shared.peer_going_away.load(SeqCst) {
            return Err(SpdyError::GoingAway);
        }
        let headers: Headers = headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        let (reply, replied) = oneshot::channel();
        let state = {
            let mut next = lock(&shared.next_stream_id);
            let stream_id = *next;
            if stream_id > MAX_STREAM_ID {
                return Err(SpdyError::StreamIdsExhausted);
            }
            *next += 2;
            let state = StreamState::new(stream_id, false, false, Some(reply));
            lock(&shared.streams).insert(stream_id, state.clone());
            let syn = Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: headers.clone(),
            };
            if let Err(err) = shared.send(syn, None) {
                lock(&shared.streams).remove(&stream_id);
                return Err(err);
            }
            state
        };
        // teardown() may have emptied the map just before our insert.
        if shared.dead.load(SeqCst) {
            state.connection_gone();
        }
        let mut guard = ResetUnlessReplied(Some((shared.clone(), state.clone())));
        let replied = replied.await;
        guard.0 = None;
        match replied {
            Ok(Ok(())) => Ok(Stream::new(state, shared.clone(), headers)),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(SpdyError::ConnectionClosed),
        }
    }

    /// Sends a PING and waits for the peer's answer.
    pub async fn ping(&self) -> Result<(), SpdyError> {
        let shared = &self.shared;
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut next = lock(&shared.next_ping_id);
            let id = *next;
            // Wrap around keeping the parity that marks the ping as ours.
            *next = if id > MAX_STREAM_ID - 2 {
                id - (MAX_STREAM_ID - 1)
            } else {
                id + 2
            };
            id
        };
        lock(&shared.pings).insert(id, tx);
        if shared.dead.load(SeqCst) {
            lock(&shared.pings).remove(&id);
            return Err(SpdyError::ConnectionClosed);
        }
        shared.send(Frame::Ping { id }, None)?;
        rx.await.map_err(|_| SpdyError::ConnectionClosed)
    }

    /// GOAWAY, then closes the connection once written (after every frame
    /// queued before it). Resolves when the connection is gone.
    pub async fn close(&self) {
        self.shared.go_away(goaway::OK);
        self.closed().await;
    }

    /// Drops the connection now, without GOAWAY and without writing what
    /// is still queued: for a peer that stopped reading.
    pub fn abort(&self) {
        self.shared.teardown();
    }

    /// Resolves when the connection is gone (peer closed, error, or close()).
    pub async fn closed(&self) {
        self.shared.done.cancelled().await;
    }

    /// Whether the connection is gone or going.
    pub fn is_closed(&self) -> bool {
        self.shared.dead.load(SeqCst)
    }
}

/// Resets a stream whose `open` was abandoned before the SYN_REPLY.
struct ResetUnlessReplied(Option<(Arc<Shared>, Arc<StreamState>)>);

impl Drop for ResetUnlessReplied {
    fn drop(&mut self) {
        if let Some((shared, state)) = self.0.take() {
            shared.reset_stream(&state);
        }
    }
}

impl Shared {
    pub(crate) fn send(&self, frame: Frame, permit: Option<OwnedSemaphorePermit>) -> Result<(), SpdyError> {
        self.out
            .send(Outgoing {
                frame,
                permit,
                close_after: false,
            })
            .map_err(|_| SpdyError::ConnectionClosed)
    }

    pub(crate) fn reset_stream(&self, state: &Arc<StreamState>) {
        if state.mark_reset(ResetBy::Us) {
            let _ = self.send(cancel(state.id), None);
        }
        self.forget(state.id);
    }

    pub(crate) fn forget_if_finished(&self, state: &StreamState) {
        if state.finished() {
            self.forget(state.id);
        }
    }

    fn forget(&self, stream_id: u32) -> Option<Arc<StreamState>> {
        lock(&self.streams).remove(&stream_id)
    }

    fn get(&self, stream_id: u32) -> Option<Arc<StreamState>> {
        lock(&self.streams).get(&stream_id).cloned()
    }

    fn go_away(&self, status: u32) {
        if self.going_away.swap(true, SeqCst) {
            return;
        }
        let frame = Frame::GoAway {
            last_good_stream_id: self.last_peer_stream_id.load(SeqCst),
            status,
        };
        let queued = self.out.send(Outgoing {
            frame,
            permit: None,
            close_after: true,
        });
        if queued.is_err() {
            self.teardown();
        }
    }

    /// Ends the session: tasks stop, every stream's reads and writes fail,
    /// pending opens and pings fail.
    fn teardown(&self) {
        if self.dead.swap(true, SeqCst) {
            return;
        }
        self.stop.cancel();
        self.budget.close();
        let streams = std::mem::take(&mut *lock(&self.streams));
        for state in streams.values() {
            state.connection_gone();
        }
        lock(&self.pings).clear();
    }

    fn is_ours(&self, id: u32) -> bool {
        id.is_multiple_of(2) == self.server
    }
}

async fn read_task<R: AsyncRead + Unpin>(mut io: R, shared: Arc<Shared>, incoming: mpsc::Sender<Stream>) {
    let result = tokio::select! {
        r = read_frames(&mut io, &shared, &incoming) => r,
        _ = shared.stop.cancelled() => return,
    };
    match result {
        Ok(()) => {
            tracing::debug!("spdy peer closed the connection");
            shared.teardown();
        }
        Err(err @ (SpdyError::Io(_) | SpdyError::TruncatedFrame(_))) => {
            tracing::debug!(error = %err, "spdy connection lost");
            shared.teardown();
        }
        Err(err) => {
            tracing::warn!(error = %err, "spdy protocol error, closing the connection");
            shared.go_away(goaway::PROTOCOL_ERROR);
            // Keep reading (and discarding) so a peer blocked writing to us
            // cannot keep our GOAWAY from being written.
            let mut sink = vec![0u8; READ_CHUNK];
            tokio::select! {
                _ = async { while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {} } => {
                    shared.teardown();
                }
                _ = shared.stop.cancelled() => {}
            }
        }
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    io: &mut R,
    shared: &Arc<Shared>,
    incoming: &mpsc::Sender<Stream>,
) -> Result<(), SpdyError> {
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while let Some(frame) = decoder.decode(&mut buf)? {
            dispatch(shared, frame, incoming).await;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        if io.read_buf(&mut buf).await? == 0 {
            if buf.is_empty() {
                return Ok(());
            }
            return Err(SpdyError::TruncatedFrame(buf.len()));
        }
    }
}

async fn dispatch(shared: &Arc<Shared>, frame: Frame, incoming: &mpsc::Sender<Stream>) {
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => accept(shared, stream_id, flags, headers, incoming).await,
        Frame::SynReply { stream_id, flags, .. } => {
            if let Some(state) = shared.get(stream_id) {
                state.replied();
                finish_if(shared, &state, flags);
            }
        }
        Frame::Headers { stream_id, flags, .. } => {
            if let Some(state) = shared.get(stream_id) {
                finish_if(shared, &state, flags);
            }
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            // Data for streams we forgot (reset, or both sides done) is
            // dropped, as spdystream drops it.
            if let Some(state) = shared.get(stream_id) {
                state.push_data(data, flags & FLAG_FIN != 0).await;
                shared.forget_if_finished(&state);
            }
        }
        Frame::RstStream { stream_id, status } => {
            if let Some(state) = shared.forget(stream_id) {
                state.mark_reset(ResetBy::Peer(status));
            }
        }
        Frame::Ping { id } => on_ping(shared, id),
        Frame::GoAway {
            last_good_stream_id, ..
        } => on_go_away(shared, last_good_stream_id),
        Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {
            tracing::trace!(frame = frame.kind(), "spdy frame ignored");
        }
    }
}

fn finish_if(shared: &Shared, state: &StreamState, flags: u8) {
    if flags & FLAG_FIN != 0 {
        state.remote_finished();
        shared.forget_if_finished(state);
    }
}

/// A SYN_STREAM from the peer: checked as spdystream checks it, answered
/// with an empty SYN_REPLY (what apimachinery's server sends), then handed
/// to the application.
async fn accept(
    shared: &Arc<Shared>,
    stream_id: u32,
    flags: u8,
    headers: Headers,
    incoming: &mpsc::Sender<Stream>,
) {
    if shared.is_ours(stream_id) || stream_id <= shared.last_peer_stream_id.load(SeqCst) {
        tracing::debug!(stream_id, "spdy SYN_STREAM with an invalid stream id refused");
        let _ = shared.send(refusal(stream_id, rst::PROTOCOL_ERROR), None);
        return;
    }
    shared.last_peer_stream_id.store(stream_id, SeqCst);
    if shared.going_away.load(SeqCst) || incoming.is_closed() {
        let _ = shared.send(refusal(stream_id, rst::REFUSED_STREAM), None);
        return;
    }
    let remote_fin = flags & FLAG_FIN != 0;
    let local_fin = flags & FLAG_UNIDIRECTIONAL != 0;
    let state = StreamState::new(stream_id, remote_fin, local_fin, None);
    lock(&shared.streams).insert(stream_id, state.clone());
    let reply = Frame::SynReply {
        stream_id,
        flags: 0,
        headers: Headers::new(),
    };
    if shared.send(reply, None).is_err() {
        return;
    }
    let stream = Stream::new(state, shared.clone(), headers);
    if let Err(mpsc::error::SendError(stream)) = incoming.send(stream).await {
        stream.reset();
    }
}

fn on_ping(shared: &Shared, id: u32) {
    if shared.is_ours(id) {
        if let Some(waiter) = lock(&shared.pings).remove(&id) {
            let _ = waiter.send(());
        }
        return;
    }
    if shared.ping_replies_queued.fetch_add(1, SeqCst) >= MAX_QUEUED_PING_REPLIES {
        shared.ping_replies_queued.fetch_sub(1, SeqCst);
        tracing::debug!(id, "spdy PING left unanswered: too many answers queued");
        return;
    }
    let _ = shared.send(Frame::Ping { id }, None);
}

/// The peer takes no new streams; ours above `last_good` it never saw.
fn on_go_away(shared: &Shared, last_good: u32) {
    shared.peer_going_away.store(true, SeqCst);
    let unseen: Vec<_> = lock(&shared.streams)
        .values()
        .filter(|s| shared.is_ours(s.id) && s.id > last_good && s.awaiting_reply())
        .cloned()
        .collect();
    for state in unseen {
        shared.forget(state.id);
        state.refuse_open(SpdyError::GoingAway);
    }
}

async fn write_task<W: AsyncWrite + Unpin>(
    io: W,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedReceiver<Outgoing>,
) {
    let result = tokio::select! {
        r = write_frames(io, &shared, queue) => r,
        _ = shared.stop.cancelled() => Ok(false),
    };
    match result {
        // A lingering close, as HTTP servers do: our side is shut for
        // writing, and the reader goes on until the peer closes too (it
        // tears the session down at EOF). Closing the socket at once would
        // make the kernel answer whatever the peer still sends (a stdin FIN
        // racing the command's end) with a reset, and a reset makes the
        // peer's kernel drop what it had not read yet: the exit status.
        Ok(true) => {
            let _ = tokio::time::timeout(LINGER, shared.stop.cancelled()).await;
        }
        Ok(false) => {}
        Err(err) => tracing::debug!(error = %err, "spdy connection write failed"),
    }
    shared.teardown();
}

/// Writes queued frames until the queue ends (`false`) or a frame asked
/// for the connection to be closed after it (`true`, write half shut).
async fn write_frames<W: AsyncWrite + Unpin>(
    mut io: W,
    shared: &Shared,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) -> Result<bool, SpdyError> {
    let mut encoder = FrameEncoder::new();
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    let mut permits = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut close_after = false;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            encoder.encode(&out.frame, &mut buf)?;
            if let Frame::Ping { id } = out.frame
                && !shared.is_ours(id)
            {
                shared.ping_replies_queued.fetch_sub(1, SeqCst);
            }
            permits.extend(out.permit);
            close_after = out.close_after;
            if !close_after && buf.len() < WRITE_BATCH {
                next = queue.try_recv().ok();
            }
        }
        io.write_all(&buf).await?;
        io.flush().await?;
        buf.clear();
        permits.clear();
        if close_after {
            let _ = io.shutdown().await;
            return Ok(true);
        }
    }
    Ok(false)
}
