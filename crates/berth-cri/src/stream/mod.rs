//! berth's streaming server: exec, attach and port-forward for kubelet and
//! crictl. The CRI calls `Exec`, `Attach` and `PortForward` only hand out a
//! single-use URL on a loopback port ([`StreamServer`]); the client then
//! connects there and speaks one of Kubernetes' streaming protocols:
//!
//! - remote command (exec, attach) over SPDY/3.1 (`v4.channel.k8s.io` and
//!   older) or WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`, …);
//! - port-forward (`portforward.k8s.io`) over SPDY or WebSocket.
//!
//! No maintained crate serves SPDY/3.1, so [`spdy`] is berth's own. What
//! actually runs a process or opens a socket sits behind [`Backend`], so the
//! protocols know nothing of containers.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::v1;

pub mod spdy;

pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A terminal size sent on the resize channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// The client's streams, as the transport delivered them: a stream the
/// request did not ask for is `None`. With a tty there is no stderr.
/// `stdin` reaches EOF when the client closes it; writes to `stdout` and
/// `stderr` fail once the client is gone.
pub struct StreamIo {
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

/// Why an exec, attach or port-forward could not be served; the protocols
/// report the message to the client on the error channel.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// What runs behind the streaming protocols.
pub trait Backend: Send + Sync + 'static {
    /// Runs `req.cmd` in `req.container_id` wired to `io` and resolves to
    /// the process' exit code once it has exited and its output is flushed.
    fn exec(&self, req: v1::ExecRequest, io: StreamIo) -> BoxFuture<Result<i32, BackendError>>;

    /// Wires `io` to the container's main process until the client
    /// detaches or the container exits.
    fn attach(&self, req: v1::AttachRequest, io: StreamIo) -> BoxFuture<Result<(), BackendError>>;

    /// A TCP connection to `port` on the loopback of pod `pod_sandbox_id`'s
    /// network namespace.
    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<Result<tokio::net::TcpStream, BackendError>>;
}

pub mod client;
mod portforward;
mod remotecommand;
mod server;
mod tokens;
mod websocket;
pub use server::{StreamConfig, StreamServer, TokenError};
