//! Exec and attach, the part both transports share: which streams a cached
//! request asks for, running it on the [`Backend`], the status written to
//! the error stream at the end, and decoding resize events. The SPDY side
//! (kubelet's `remotecommand/httpstream.go`) lives here too; the WebSocket
//! side is in `websocket.rs`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy;
use super::{Backend, BoxRead, BoxWrite, StreamIo, TermSize};
use crate::v1;

pub(crate) const V1: &str = "channel.k8s.io";
pub(crate) const V2: &str = "v2.channel.k8s.io";
pub(crate) const V3: &str = "v3.channel.k8s.io";
pub(crate) const V4: &str = "v4.channel.k8s.io";
pub(crate) const V5: &str = "v5.channel.k8s.io";
/// WebSocket only: v4 with base64 frames.
pub(crate) const V4_BASE64: &str = "v4.base64.channel.k8s.io";

/// SPDY protocols in kubelet's order of preference.
pub(crate) const SPDY_PROTOCOLS: [&str; 4] = [V4, V3, V2, V1];

/// The header naming a stream's role, on SPDY.
pub(crate) const STREAM_TYPE: &str = "streamtype";

/// The exec or attach a token stood for.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    Exec(v1::ExecRequest),
    Attach(v1::AttachRequest),
}

/// Which of the client's streams the request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Command {
    pub(crate) fn options(&self) -> Options {
        let (stdin, stdout, stderr, tty) = match self {
            Command::Exec(r) => (r.stdin, r.stdout, r.stderr, r.tty),
            Command::Attach(r) => (r.stdin, r.stdout, r.stderr, r.tty),
        };
        // A terminal merges stderr into stdout; kubelet drops the flag too.
        Options {
            stdin,
            stdout,
            stderr: stderr && !tty,
            tty,
        }
    }

    fn container_id(&self) -> &str {
        match self {
            Command::Exec(r) => &r.container_id,
            Command::Attach(r) => &r.container_id,
        }
    }
}

/// How the command ended, as the error stream reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    ExitCode(i32),
    Failed(String),
}

/// Runs `command` on the backend and maps its result for the error stream.
pub(crate) async fn run(backend: &Arc<dyn Backend>, command: Command, io: StreamIo) -> Outcome {
    let container = command.container_id().to_owned();
    match command {
        Command::Exec(req) => {
            let cmd = req.cmd.clone();
            match backend.exec(req, io).await {
                Ok(0) => Outcome::Success,
                Ok(code) => Outcome::ExitCode(code),
                Err(e) => {
                    tracing::warn!(container = %container, error = %e, ?cmd, "exec failed");
                    Outcome::Failed(e.to_string())
                }
            }
        }
        Command::Attach(req) => match backend.attach(req, io).await {
            Ok(()) => Outcome::Success,
            Err(e) => {
                tracing::warn!(container = %container, error = %e, "attach failed");
                Outcome::Failed(e.to_string())
            }
        },
    }
}

/// How a protocol version reports the outcome on the error stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusFormat {
    /// v1–v3: the message of a failure as plain text, nothing on success.
    Text,
    /// v4 and v5: a `metav1.Status` object, also on success.
    Json,
}

impl StatusFormat {
    pub(crate) fn for_protocol(protocol: &str) -> StatusFormat {
        match protocol {
            V4 | V4_BASE64 | V5 => StatusFormat::Json,
            _ => StatusFormat::Text,
        }
    }
}

/// `metav1.Status` as client-go decodes it from the error stream.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Status {
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct StatusDetails {
    #[serde(default)]
    pub causes: Vec<StatusCause>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct StatusCause {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

pub(crate) const NON_ZERO_EXIT_CODE: &str = "NonZeroExitCode";
pub(crate) const EXIT_CODE_CAUSE: &str = "ExitCode";

impl Outcome {
    fn status(&self, command: &[String]) -> Status {
        match self {
            Outcome::Success => Status {
                status: "Success".into(),
                ..Default::default()
            },
            // The message reads as kubelet's does behind containerd, whose
            // exit error names the command and the code.
            Outcome::ExitCode(code) => Status {
                status: "Failure".into(),
                message: format!(
                    "command terminated with non-zero exit code: error executing command {}, exit code {code}",
                    go_slice(command)
                ),
                reason: NON_ZERO_EXIT_CODE.into(),
                details: Some(StatusDetails {
                    causes: vec![StatusCause {
                        reason: EXIT_CODE_CAUSE.into(),
                        message: code.to_string(),
                    }],
                }),
                ..Default::default()
            },
            Outcome::Failed(e) => {
                let err = format!("error executing command in container: {e}");
                Status {
                    status: "Failure".into(),
                    message: format!("Internal error occurred: {err}"),
                    reason: "InternalError".into(),
                    details: Some(StatusDetails {
                        causes: vec![StatusCause {
                            reason: String::new(),
                            message: err,
                        }],
                    }),
                    code: Some(500),
                    ..Default::default()
                }
            }
        }
    }

    /// The bytes for the error stream, or `None` when the format writes
    /// nothing (text format, success).
    pub(crate) fn encode(&self, format: StatusFormat, command: &[String]) -> Option<Vec<u8>> {
        let status = self.status(command);
        match format {
            StatusFormat::Json => Some(serde_json::to_vec(&status).expect("a Status always serializes")),
            StatusFormat::Text if *self == Outcome::Success => None,
            StatusFormat::Text => Some(status.message.into_bytes()),
        }
    }
}

/// Go's `%v` of a `[]string`, which the exit message embeds.
fn go_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

pub(crate) fn command_args(command: &Command) -> &[String] {
    match command {
        Command::Exec(r) => &r.cmd,
        Command::Attach(_) => &[],
    }
}

/// A resize event as client-go encodes it (Go field names, no tags).
#[derive(Deserialize, Serialize)]
struct WireSize {
    #[serde(rename = "Width", alias = "width")]
    width: u16,
    #[serde(rename = "Height", alias = "height")]
    height: u16,
}

pub(crate) fn encode_resize(size: TermSize) -> Vec<u8> {
    serde_json::to_vec(&WireSize {
        width: size.width,
        height: size.height,
    })
    .expect("a size always serializes")
}

/// Decodes the concatenated JSON objects of a resize stream into `tx`
/// until the stream ends, is malformed, or nobody listens any more.
pub(crate) async fn pump_resizes(mut stream: impl AsyncRead + Unpin, tx: mpsc::Sender<TermSize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut objects = serde_json::Deserializer::from_slice(&buf).into_iter::<WireSize>();
        let mut consumed = 0;
        loop {
            match objects.next() {
                Some(Ok(size)) => {
                    consumed = objects.byte_offset();
                    let size = TermSize {
                        width: size.width,
                        height: size.height,
                    };
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "malformed resize event ends the resize stream");
                    return;
                }
                None => {
                    consumed = buf.len();
                    break;
                }
            }
        }
        buf.drain(..consumed);
    }
}

/// Starts decoding a resize stream; the receiver goes into [`StreamIo`].
pub(crate) fn resize_channel(stream: impl AsyncRead + Unpin + Send + 'static) -> mpsc::Receiver<TermSize> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pump_resizes(stream, tx));
    rx
}

/// A serving session over SPDY, after the 101: collects the streams the
/// request asks for, runs the command, reports, closes.
pub(crate) async fn serve_spdy(
    conn: spdy::Connection,
    mut incoming: mpsc::Receiver<spdy::Stream>,
    protocol: &str,
    command: Command,
    backend: Arc<dyn Backend>,
    creation_timeout: Duration,
) {
    let opts = command.options();
    let streams =
        match tokio::time::timeout(creation_timeout, collect_streams(&mut incoming, protocol, opts)).await {
            Ok(Some(streams)) => streams,
            Ok(None) => {
                tracing::debug!("client went away before creating its streams");
                conn.close().await;
                return;
            }
            Err(_) => {
                tracing::warn!(
                    container = command.container_id(),
                    "timed out waiting for client to create streams"
                );
                conn.close().await;
                return;
            }
        };
    // Streams opened after the set is complete get no service; draining
    // keeps the connection from stalling on them.
    tokio::spawn(async move {
        while let Some(stream) = incoming.recv().await {
            tracing::debug!(stream_type = ?stream.header(STREAM_TYPE), "unexpected extra stream");
            stream.reset();
        }
    });
    let format = StatusFormat::for_protocol(protocol);
    let SpdyStreams {
        error,
        stdin,
        stdout,
        stderr,
        resize,
    } = streams;
    let Wired {
        mut outputs,
        unused_halves,
        io,
    } = wire_spdy(protocol, opts, stdin, stdout, stderr, resize);
    let args = command_args(&command).to_vec();
    let outcome = run(&backend, command, io).await;
    drop(unused_halves);
    for out in outputs.iter_mut() {
        let _ = out.shutdown().await;
    }
    if let Some(mut error) = error {
        if let Some(bytes) = outcome.encode(format, &args) {
            let _ = error.write_all(&bytes).await;
        }
        let _ = error.shutdown().await;
    }
    conn.close().await;
}

#[derive(Default)]
struct SpdyStreams {
    error: Option<spdy::Stream>,
    stdin: Option<spdy::Stream>,
    stdout: Option<spdy::Stream>,
    stderr: Option<spdy::Stream>,
    resize: Option<spdy::Stream>,
}

/// Waits for as many streams as the request needs, by `streamType`, like
/// kubelet's `waitForStreams`: an unknown type does not count.
async fn collect_streams(
    incoming: &mut mpsc::Receiver<spdy::Stream>,
    protocol: &str,
    opts: Options,
) -> Option<SpdyStreams> {
    let resizable = matches!(protocol, V3 | V4);
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(opts.tty && resizable);
    let mut streams = SpdyStreams::default();
    let mut received = 0;
    while received < expected {
        let stream = incoming.recv().await?;
        let kind = stream.header(STREAM_TYPE).unwrap_or_default().to_owned();
        let slot = match kind.as_str() {
            "error" => &mut streams.error,
            "stdin" => &mut streams.stdin,
            "stdout" => &mut streams.stdout,
            "stderr" => &mut streams.stderr,
            "resize" if resizable => &mut streams.resize,
            other => {
                tracing::debug!(stream_type = other, "unexpected stream type");
                stream.reset();
                continue;
            }
        };
        *slot = Some(stream);
        received += 1;
    }
    Some(streams)
}

/// The collected streams, wired for the backend.
struct Wired {
    /// Handles on stdout and stderr, to send FIN once the command is done.
    outputs: Vec<SharedWriter>,
    /// Our sending side of stdin and resize: dropping one sends FIN, which
    /// kubelet only does when the session ends, so neither do we.
    unused_halves: Vec<spdy::StreamWriter>,
    io: StreamIo,
}

/// Hands the collected streams to the backend as [`StreamIo`].
fn wire_spdy(
    protocol: &str,
    opts: Options,
    stdin: Option<spdy::Stream>,
    stdout: Option<spdy::Stream>,
    stderr: Option<spdy::Stream>,
    resize: Option<spdy::Stream>,
) -> Wired {
    let mut closers = Vec::new();
    let mut unused_halves = Vec::new();
    let mut output = |stream: Option<spdy::Stream>| -> Option<BoxWrite> {
        let (reader, writer) = stream?.split();
        drop(reader);
        let shared = SharedWriter::new(Box::pin(writer));
        closers.push(shared.clone());
        Some(Box::pin(shared))
    };
    let stdout = output(stdout);
    let stderr = output(stderr);
    // v1 closes stdin at once: its clients never got to send any.
    let stdin: Option<BoxRead> = match stdin {
        Some(_) if protocol == V1 => Some(Box::pin(tokio::io::empty())),
        Some(s) => {
            let (reader, writer) = s.split();
            unused_halves.push(writer);
            Some(Box::pin(reader))
        }
        None => None,
    };
    let resize = match resize {
        Some(s) if opts.tty => {
            let (reader, writer) = s.split();
            unused_halves.push(writer);
            Some(resize_channel(reader))
        }
        _ => None,
    };
    Wired {
        outputs: closers,
        unused_halves,
        io: StreamIo {
            stdin,
            stdout,
            stderr,
            resize,
        },
    }
}

/// A writer the backend owns while the session keeps a handle to shut it
/// down afterwards, even if the backend leaked a clone of it somewhere.
#[derive(Clone)]
pub(crate) struct SharedWriter(Arc<std::sync::Mutex<BoxWrite>>);

impl SharedWriter {
    pub(crate) fn new(inner: BoxWrite) -> SharedWriter {
        SharedWriter(Arc::new(std::sync::Mutex::new(inner)))
    }

    pub(crate) async fn shutdown(&mut self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| self.with(|w| w.poll_shutdown(cx))).await
    }

    // The lock is only held for one non-blocking poll, never across an await.
    fn with<T>(&self, f: impl FnOnce(Pin<&mut (dyn AsyncWrite + Send)>) -> T) -> T {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(inner.as_mut())
    }
}

impl AsyncWrite for SharedWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.with(|w| w.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|w| w.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|w| w.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_status_json_matches_kubelet() {
        let ok = Outcome::Success.encode(StatusFormat::Json, &[]).unwrap();
        assert_eq!(
            String::from_utf8(ok).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let args = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let failed = Outcome::ExitCode(3).encode(StatusFormat::Json, &args).unwrap();
        assert_eq!(
            String::from_utf8(failed).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
    }

    #[test]
    fn text_status_is_only_written_on_failure() {
        assert_eq!(Outcome::Success.encode(StatusFormat::Text, &[]), None);
        let text = Outcome::Failed("no such container".into())
            .encode(StatusFormat::Text, &[])
            .unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "Internal error occurred: error executing command in container: no such container"
        );
    }

    #[test]
    fn options_drop_stderr_with_tty() {
        let cmd = Command::Exec(v1::ExecRequest {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: true,
            ..Default::default()
        });
        assert!(!cmd.options().stderr);
    }

    #[tokio::test]
    async fn resize_events_decode_across_reads() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut rx = resize_channel(r);
        w.write_all(br#"{"Width":80,"Height":24}{"Width":1"#)
            .await
            .unwrap();
        assert_eq!(
            rx.recv().await,
            Some(TermSize {
                width: 80,
                height: 24
            })
        );
        w.write_all(br#"20,"Height":40}"#).await.unwrap();
        assert_eq!(
            rx.recv().await,
            Some(TermSize {
                width: 120,
                height: 40
            })
        );
        drop(w);
        assert_eq!(rx.recv().await, None);
    }
}
