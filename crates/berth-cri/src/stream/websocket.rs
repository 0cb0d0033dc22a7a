//! Kubernetes' channel protocol over WebSocket (apimachinery's `wsstream`):
//! every frame starts with a channel number, as a byte (`channel.k8s.io`
//! and its versions) or as an ASCII digit before base64 data
//! (`base64.channel.k8s.io`). `v5.channel.k8s.io` adds the close signal
//! (channel 255, then the channel to close) that half-closes stdin.
//!
//! One task reads frames and routes them to per-channel pipes; another
//! owns the socket's write half and sends what channel writers queue, so a
//! reader that stops reading never blocks output (and the other way round).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;

use super::remotecommand::{self, Command, StatusFormat, V1, V4, V4_BASE64, V5};
use super::{Backend, BoxRead, StreamIo};

/// The channel byte of v5's close signal.
pub(crate) const CLOSE_SIGNAL: u8 = 255;

pub(crate) const STDIN: usize = 0;
pub(crate) const STDOUT: usize = 1;
pub(crate) const STDERR: usize = 2;
pub(crate) const ERROR: usize = 3;
pub(crate) const RESIZE: usize = 4;

/// How long the server waits for the client's answer to its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How channel numbers and payloads are written in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Binary,
    Base64,
}

/// One subprotocol the server accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Subprotocol {
    pub name: &'static str,
    pub codec: Codec,
    /// Whether the client may half-close channels (v5).
    pub close_signal: bool,
}

const fn proto(name: &'static str, codec: Codec, close_signal: bool) -> Subprotocol {
    Subprotocol {
        name,
        codec,
        close_signal,
    }
}

/// Remote command subprotocols: kubelet's five (the empty name is a client
/// that asked for none) plus v5, which kubelet's own server speaks since
/// Kubernetes 1.30.
pub(crate) const REMOTECOMMAND_PROTOCOLS: [Subprotocol; 6] = [
    proto("", Codec::Binary, false),
    proto(V1, Codec::Binary, false),
    proto("base64.channel.k8s.io", Codec::Base64, false),
    proto(V4, Codec::Binary, false),
    proto(V4_BASE64, Codec::Base64, false),
    proto(V5, Codec::Binary, true),
];

/// Port-forward subprotocols, as kubelet's `portforward/websocket.go`.
pub(crate) const PORTFORWARD_PROTOCOLS: [Subprotocol; 3] = [
    proto("", Codec::Binary, false),
    proto(V4, Codec::Binary, false),
    proto(V4_BASE64, Codec::Base64, false),
];

/// Picks the first protocol the client lists that the server supports, as
/// wsstream does; a client that lists none gets the empty protocol.
pub(crate) fn negotiate(requested: &[String], supported: &[Subprotocol]) -> Result<Subprotocol, String> {
    let wanted: Vec<&str> = if requested.is_empty() {
        vec![""]
    } else {
        requested.iter().map(String::as_str).collect()
    };
    wanted
        .iter()
        .find_map(|w| supported.iter().find(|p| p.name == *w).copied())
        .ok_or_else(|| {
            let names: Vec<&str> = supported.iter().map(|p| p.name).collect();
            format!("requested protocol(s) are not supported: {requested:?}; supports {names:?}")
        })
}

/// What a channel is used for on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// Frames to it are dropped, writes to it are discarded.
    Ignore,
    Read,
    Write,
    ReadWrite,
}

impl ChannelKind {
    fn reads(self) -> bool {
        matches!(self, ChannelKind::Read | ChannelKind::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, ChannelKind::Write | ChannelKind::ReadWrite)
    }
}

enum Outgoing {
    Frame(Message),
    Close,
}

/// An open channel connection: per-channel readers and writers plus a
/// handle to close the socket once the session is over.
pub(crate) struct ChannelConn {
    readers: Vec<Option<BoxRead>>,
    writers: Vec<Option<ChannelWriter>>,
    out: mpsc::Sender<Outgoing>,
    writer_done: Option<oneshot::Receiver<()>>,
    reader_task: tokio::task::JoinHandle<()>,
}

impl ChannelConn {
    /// Starts the reader and writer tasks on an upgraded socket.
    pub(crate) fn start<IO>(
        ws: WebSocketStream<IO>,
        protocol: Subprotocol,
        channels: &[ChannelKind],
    ) -> ChannelConn
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let (out_tx, out_rx) = mpsc::channel::<Outgoing>(32);
        let (closed_tx, closed_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(write_frames(sink, out_rx, closed_tx, done_tx));

        let mut inbound = Vec::with_capacity(channels.len());
        let mut readers = Vec::with_capacity(channels.len());
        let mut writers = Vec::with_capacity(channels.len());
        for (num, kind) in channels.iter().enumerate() {
            if kind.reads() {
                let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
                inbound.push(Some(tx));
                readers.push(Some(
                    Box::pin(StreamReader::new(ReceiverStream::new(rx))) as BoxRead
                ));
            } else {
                inbound.push(None);
                readers.push(None);
            }
            writers.push(Some(ChannelWriter {
                num: num as u8,
                codec: protocol.codec,
                discard: !kind.writes(),
                out: PollSender::new(out_tx.clone()),
            }));
        }
        let reader_task = tokio::spawn(read_frames(stream, protocol, inbound, closed_rx));
        ChannelConn {
            readers,
            writers,
            out: out_tx,
            writer_done: Some(done_rx),
            reader_task,
        }
    }

    /// The channel's inbound data; EOF when the client closes it (v5) or
    /// goes away. `None` for a channel that is not read.
    pub(crate) fn take_reader(&mut self, num: usize) -> Option<BoxRead> {
        self.readers.get_mut(num)?.take()
    }

    /// The channel's outbound side; writes fail once the client is gone.
    pub(crate) fn take_writer(&mut self, num: usize) -> Option<ChannelWriter> {
        self.writers.get_mut(num)?.take()
    }

    /// Sends a close frame after everything queued before it, then waits a
    /// little for the client's answer before dropping the socket.
    pub(crate) async fn close(mut self) {
        let _ = self.out.send(Outgoing::Close).await;
        if let Some(done) = self.writer_done.take() {
            let _ = done.await;
        }
        let abort = self.reader_task.abort_handle();
        if tokio::time::timeout(CLOSE_GRACE, &mut self.reader_task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

impl Drop for ChannelConn {
    fn drop(&mut self) {
        // A session dropped without close (server shutdown, idle timeout)
        // must not leave its reader behind.
        self.reader_task.abort();
    }
}

async fn write_frames<S>(
    mut sink: S,
    mut out: mpsc::Receiver<Outgoing>,
    closed: oneshot::Sender<()>,
    done: oneshot::Sender<()>,
) where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(item) = out.recv().await {
        match item {
            Outgoing::Frame(msg) => {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            Outgoing::Close => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    // Dropping the receiver makes every later channel write fail.
    drop(out);
    let _ = closed.send(());
    let _ = done.send(());
}

async fn read_frames<S>(
    mut stream: S,
    protocol: Subprotocol,
    mut inbound: Vec<Option<mpsc::Sender<io::Result<Bytes>>>>,
    mut closed: oneshot::Receiver<()>,
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut closing = false;
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = &mut closed, if !closing => {
                closing = true;
                continue;
            }
        };
        let data: Bytes = match msg {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket receive failed");
                break;
            }
        };
        if data.is_empty() {
            continue;
        }
        if protocol.close_signal && data[0] == CLOSE_SIGNAL {
            if data.len() != 2 {
                tracing::warn!(len = data.len(), "malformed close signal ends the connection");
                break;
            }
            match inbound.get_mut(usize::from(data[1])) {
                Some(slot) => *slot = None,
                None => {
                    tracing::warn!(channel = data[1], "close signal for an unknown channel");
                    break;
                }
            }
            continue;
        }
        let Some((num, payload)) = decode_frame(protocol.codec, data) else {
            continue;
        };
        let Some(Some(tx)) = inbound.get(num) else {
            continue;
        };
        // A reader that has gone away just loses its input.
        if tx.send(Ok(payload)).await.is_err() {
            inbound[num] = None;
        }
    }
}

/// Splits a frame into its channel and payload; `None` for bad base64.
fn decode_frame(codec: Codec, data: Bytes) -> Option<(usize, Bytes)> {
    match codec {
        Codec::Binary => Some((usize::from(data[0]), data.slice(1..))),
        Codec::Base64 => {
            let num = usize::from(data[0].wrapping_sub(b'0'));
            match base64::engine::general_purpose::STANDARD.decode(&data[1..]) {
                Ok(payload) => Some((num, Bytes::from(payload))),
                Err(e) => {
                    tracing::debug!(channel = num, error = %e, "bad base64 frame dropped");
                    None
                }
            }
        }
    }
}

/// Builds the frame that carries `data` on channel `num`.
pub(crate) fn encode_frame(codec: Codec, num: u8, data: &[u8]) -> Message {
    match codec {
        Codec::Binary => {
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(num);
            frame.extend_from_slice(data);
            Message::Binary(frame.into())
        }
        Codec::Base64 => {
            let mut frame = String::with_capacity(data.len() * 4 / 3 + 4);
            frame.push(char::from(b'0' + num));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut frame);
            Message::Text(frame.into())
        }
    }
}

/// A channel's outbound side: each write becomes one frame.
pub(crate) struct ChannelWriter {
    num: u8,
    codec: Codec,
    discard: bool,
    out: PollSender<Outgoing>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.discard {
            return Poll::Ready(Ok(buf.len()));
        }
        if self.out.is_closed() {
            return Poll::Ready(Err(gone()));
        }
        match self.out.poll_reserve(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(Err(gone())),
            Poll::Ready(Ok(())) => {}
        }
        let frame = encode_frame(self.codec, self.num, buf);
        match self.out.send_item(Outgoing::Frame(frame)) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A channel has no half-close towards the client: it ends with the
    /// connection.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "websocket client is gone")
}

/// The channels of a remote command, as kubelet lays them out: stdin,
/// stdout, stderr only when asked for, error always, resize always read.
fn remotecommand_channels(opts: remotecommand::Options) -> [ChannelKind; 5] {
    let pick = |used: bool, kind: ChannelKind| if used { kind } else { ChannelKind::Ignore };
    [
        pick(opts.stdin, ChannelKind::Read),
        pick(opts.stdout, ChannelKind::Write),
        pick(opts.stderr, ChannelKind::Write),
        ChannelKind::Write,
        ChannelKind::Read,
    ]
}

/// A remote command session over an upgraded WebSocket.
pub(crate) async fn serve_remotecommand<IO>(
    ws: WebSocketStream<IO>,
    protocol: Subprotocol,
    command: Command,
    backend: Arc<dyn Backend>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opts = command.options();
    let mut conn = ChannelConn::start(ws, protocol, &remotecommand_channels(opts));
    let mut error = conn.take_writer(ERROR).expect("error channel exists");
    // wsstream's clients wait for a first frame to know the server is
    // ready: kubelet writes an empty one on the first output channel.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    if first == ERROR {
        let _ = write_empty(&mut error).await;
    }
    let mut stdout = opts.stdout.then(|| conn.take_writer(STDOUT)).flatten();
    let mut stderr = opts.stderr.then(|| conn.take_writer(STDERR)).flatten();
    let first_writer = match first {
        STDOUT => stdout.as_mut(),
        STDERR => stderr.as_mut(),
        _ => None,
    };
    if let Some(w) = first_writer {
        let _ = write_empty(w).await;
    }
    let resize = conn.take_reader(RESIZE);
    let io = StreamIo {
        stdin: conn.take_reader(STDIN),
        stdout: stdout.map(|w| Box::pin(w) as _),
        stderr: stderr.map(|w| Box::pin(w) as _),
        resize: match resize {
            Some(r) if opts.tty => Some(remotecommand::resize_channel(r)),
            _ => None,
        },
    };
    let format = StatusFormat::for_protocol(protocol.name);
    let args = remotecommand::command_args(&command).to_vec();
    let outcome = remotecommand::run(&backend, command, io).await;
    if let Some(bytes) = outcome.encode(format, &args) {
        let _ = error.write_all(&bytes).await;
    }
    drop(error);
    conn.close().await;
}

/// `write_all` of an empty buffer writes nothing; a channel's empty frame
/// has to be queued explicitly.
async fn write_empty(w: &mut ChannelWriter) -> io::Result<()> {
    std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, &[])).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(requested: &[&str]) -> Vec<String> {
        requested.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn negotiation_follows_the_clients_order() {
        let p = negotiate(
            &names(&["v5.channel.k8s.io", "v4.channel.k8s.io"]),
            &REMOTECOMMAND_PROTOCOLS,
        )
        .unwrap();
        assert_eq!(p.name, "v5.channel.k8s.io");
        assert!(p.close_signal);
        let p = negotiate(
            &names(&["v9.channel.k8s.io", "base64.channel.k8s.io"]),
            &REMOTECOMMAND_PROTOCOLS,
        )
        .unwrap();
        assert_eq!((p.name, p.codec), ("base64.channel.k8s.io", Codec::Base64));
        let p = negotiate(&[], &PORTFORWARD_PROTOCOLS).unwrap();
        assert_eq!((p.name, p.codec), ("", Codec::Binary));
        let err = negotiate(&names(&["v5.channel.k8s.io"]), &PORTFORWARD_PROTOCOLS).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn frames_round_trip_in_both_codecs() {
        for codec in [Codec::Binary, Codec::Base64] {
            let data = match encode_frame(codec, 2, b"hi\x00there") {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                other => panic!("{other:?}"),
            };
            let (num, payload) = decode_frame(codec, data).unwrap();
            assert_eq!((num, &payload[..]), (2, &b"hi\x00there"[..]));
        }
        let Message::Text(t) = encode_frame(Codec::Base64, 1, b"") else {
            panic!()
        };
        assert_eq!(t.as_str(), "1");
        assert!(decode_frame(Codec::Base64, Bytes::from_static(b"0!!!")).is_none());
    }
}
