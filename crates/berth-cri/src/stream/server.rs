//! The HTTP side of the streaming server (kubelet's `streaming/server.go`):
//! routes `/exec/TOKEN`, `/attach/TOKEN` and `/portforward/TOKEN`, takes the
//! token's request out of the cache, and upgrades the connection to SPDY or
//! WebSocket for the protocol modules.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

use super::Backend;
use super::remotecommand::{self, Command};
use super::tokens::{self, CachedRequest, TokenCache};
use super::websocket::{self, Subprotocol};
use super::{portforward, spdy};
use crate::v1;

pub use super::tokens::TokenError;

/// kubelet's `StreamIdleTimeout` default.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 60 * 60);
/// apimachinery's `DefaultStreamCreationTimeout`.
const DEFAULT_STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

const PROTOCOL_VERSION: &str = "x-stream-protocol-version";
const ACCEPTED_PROTOCOL_VERSIONS: &str = "x-accepted-stream-protocol-versions";
const SPDY_31: &str = "SPDY/3.1";

/// The streaming server's knobs; [`Default`] has kubelet's values.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// A session with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long a SPDY client has to open the streams it needs.
    pub stream_creation_timeout: Duration,
    /// How long a URL stays valid before its first use.
    pub token_ttl: Duration,
    /// How many unused URLs may exist at once.
    pub max_in_flight: usize,
}

impl Default for StreamConfig {
    fn default() -> StreamConfig {
        StreamConfig {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            stream_creation_timeout: DEFAULT_STREAM_CREATION_TIMEOUT,
            token_ttl: tokens::DEFAULT_TTL,
            max_in_flight: tokens::DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// The streaming server: hands out single-use URLs and serves them on a
/// loopback port until [`StreamServer::shutdown`] or until its last clone
/// is dropped.
#[derive(Clone)]
pub struct StreamServer {
    inner: Arc<Inner>,
    // The serving tasks hold `inner`, so only the handles can tell when
    // nobody can hand out URLs any more.
    _stop_on_drop: Arc<tokio_util::sync::DropGuard>,
}

struct Inner {
    addr: SocketAddr,
    tokens: TokenCache,
    backend: Arc<dyn Backend>,
    config: StreamConfig,
    shutdown: CancellationToken,
}

impl StreamServer {
    /// Binds `addr` (berth uses 127.0.0.1:0 by default) and serves on a
    /// spawned task.
    pub async fn bind(addr: SocketAddr, backend: Arc<dyn Backend>) -> io::Result<StreamServer> {
        StreamServer::bind_with_config(addr, backend, StreamConfig::default()).await
    }

    /// [`StreamServer::bind`] with other timeouts or limits.
    pub async fn bind_with_config(
        addr: SocketAddr,
        backend: Arc<dyn Backend>,
        config: StreamConfig,
    ) -> io::Result<StreamServer> {
        let listener = TcpListener::bind(addr).await?;
        let inner = Arc::new(Inner {
            addr: listener.local_addr()?,
            tokens: TokenCache::new(config.token_ttl, config.max_in_flight),
            backend,
            config,
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(listener, inner.clone()));
        let guard = inner.shutdown.clone().drop_guard();
        Ok(StreamServer {
            inner,
            _stop_on_drop: Arc::new(guard),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// A URL for `req`. When the cache is full the oldest unused URL is
    /// dropped to make room; [`StreamServer::try_exec_url`] fails instead,
    /// as kubelet does.
    pub fn exec_url(&self, req: v1::ExecRequest) -> String {
        self.url_evicting("exec", CachedRequest::Exec(req))
    }

    pub fn attach_url(&self, req: v1::AttachRequest) -> String {
        self.url_evicting("attach", CachedRequest::Attach(req))
    }

    pub fn port_forward_url(&self, req: v1::PortForwardRequest) -> String {
        self.url_evicting("portforward", CachedRequest::PortForward(req))
    }

    pub fn try_exec_url(&self, req: v1::ExecRequest) -> Result<String, TokenError> {
        self.url("exec", CachedRequest::Exec(req))
    }

    pub fn try_attach_url(&self, req: v1::AttachRequest) -> Result<String, TokenError> {
        self.url("attach", CachedRequest::Attach(req))
    }

    pub fn try_port_forward_url(&self, req: v1::PortForwardRequest) -> Result<String, TokenError> {
        self.url("portforward", CachedRequest::PortForward(req))
    }

    /// Stops accepting and ends every session in flight: their clients see
    /// the connection drop and the backends' streams fail.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    fn url(&self, kind: &str, req: CachedRequest) -> Result<String, TokenError> {
        let token = self.inner.tokens.insert(req)?;
        Ok(format!("http://{}/{kind}/{token}", self.inner.addr))
    }

    fn url_evicting(&self, kind: &str, req: CachedRequest) -> String {
        let token = self.inner.tokens.insert_evicting(req);
        format!("http://{}/{kind}/{token}", self.inner.addr)
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let accepted = tokio::select! {
            // A connection that raced a shutdown is not served.
            biased;
            _ = inner.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "streaming server accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn_inner = inner.clone();
        let shutdown = inner.shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let inner = conn_inner.clone();
                async move { Ok::<_, Infallible>(route(inner, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = conn => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "streaming connection ended");
                }
            }
        });
    }
}

type HttpResponse = Response<Full<Bytes>>;

/// Why an upgrade was refused: what the client gets instead of a 101.
struct Refusal {
    status: StatusCode,
    message: String,
    /// SPDY's `X-Accepted-Stream-Protocol-Versions`, after a failed
    /// negotiation.
    accepted: &'static [&'static str],
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            accepted: &[],
        }
    }

    fn into_response(self) -> HttpResponse {
        let bad_version =
            self.status == StatusCode::BAD_REQUEST && self.message.contains("websocket version");
        let mut resp = respond(self.status, self.message);
        for p in self.accepted {
            resp.headers_mut()
                .append(ACCEPTED_PROTOCOL_VERSIONS, HeaderValue::from_static(p));
        }
        if bad_version {
            resp.headers_mut()
                .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        resp
    }
}

fn respond(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    let mut message = message.into();
    message.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(message)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn route(inner: Arc<Inner>, req: Request<Incoming>) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let path = req.uri().path().to_owned();
    let Some((kind, token)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(_, token)| !token.is_empty() && !token.contains('/'))
    else {
        return respond(StatusCode::NOT_FOUND, "404 page not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return respond(StatusCode::NOT_FOUND, "404 page not found");
    }
    let not_found = || {
        respond(
            StatusCode::NOT_FOUND,
            format!("streaming request {kind}/{token} not found: unknown, used or expired token"),
        )
    };
    let Some(cached) = inner.tokens.consume(token) else {
        return not_found();
    };
    match (kind, cached) {
        ("exec", CachedRequest::Exec(r)) => serve_remotecommand(inner, req, Command::Exec(r)),
        ("attach", CachedRequest::Attach(r)) => serve_remotecommand(inner, req, Command::Attach(r)),
        ("portforward", CachedRequest::PortForward(r)) => serve_port_forward(inner, req, r),
        _ => not_found(),
    }
}

fn serve_remotecommand(inner: Arc<Inner>, mut req: Request<Incoming>, command: Command) -> HttpResponse {
    if is_websocket(req.headers()) {
        let (resp, protocol) = match websocket_handshake(req.headers(), &websocket::REMOTECOMMAND_PROTOCOLS) {
            Ok(v) => v,
            Err(refusal) => return refusal.into_response(),
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let backend = inner.backend.clone();
        spawn_session(inner, on_upgrade, move |io| async move {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            websocket::serve_remotecommand(ws, protocol, command, backend).await;
        });
        return resp;
    }
    let (resp, protocol) = match spdy_handshake(req.headers(), &remotecommand::SPDY_PROTOCOLS) {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let backend = inner.backend.clone();
    let timeout = inner.config.stream_creation_timeout;
    spawn_session(inner, on_upgrade, move |io| async move {
        let (conn, incoming) = spdy::Connection::server(io);
        remotecommand::serve_spdy(conn, incoming, &protocol, command, backend, timeout).await;
    });
    resp
}

fn serve_port_forward(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
    pf: v1::PortForwardRequest,
) -> HttpResponse {
    let pod = pf.pod_sandbox_id.clone();
    if is_websocket(req.headers()) {
        let ports = match websocket_ports(&pf, req.uri().query()) {
            Ok(p) => p,
            Err(e) => return respond(StatusCode::BAD_REQUEST, e),
        };
        let (resp, protocol) = match websocket_handshake(req.headers(), &websocket::PORTFORWARD_PROTOCOLS) {
            Ok(v) => v,
            Err(refusal) => return refusal.into_response(),
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let backend = inner.backend.clone();
        spawn_session(inner, on_upgrade, move |io| async move {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            portforward::serve_websocket(ws, protocol, pod, ports, backend).await;
        });
        return resp;
    }
    let (resp, _) = match spdy_handshake(req.headers(), &[portforward::PROTOCOL]) {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let backend = inner.backend.clone();
    let timeout = inner.config.stream_creation_timeout;
    spawn_session(inner, on_upgrade, move |io| async move {
        let (conn, incoming) = spdy::Connection::server(io);
        portforward::serve_spdy(conn, incoming, pod, backend, timeout).await;
    });
    resp
}

/// The ports of a WebSocket port-forward: the CRI request's, or else the
/// `port` query parameters (each may hold a comma-separated list).
fn websocket_ports(pf: &v1::PortForwardRequest, query: Option<&str>) -> Result<Vec<u16>, String> {
    if !pf.port.is_empty() {
        return pf
            .port
            .iter()
            .map(|&p| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("port {p} must be between 1 and 65535"))
            })
            .collect();
    }
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let Some(("port", value)) = pair.split_once('=') else {
            continue;
        };
        // Digits need no decoding; the list separator may come encoded.
        let value = value.replace("%2C", ",").replace("%2c", ",");
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("unable to parse {value:?} as a port: {e}"))?;
            if port == 0 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

/// All values of a comma-separated, possibly repeated header.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn header_contains(headers: &HeaderMap, name: header::HeaderName, needle: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains(needle))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    upgrade.eq_ignore_ascii_case("websocket") && header_contains(headers, header::CONNECTION, "upgrade")
}

/// apimachinery's `Handshake` plus the SPDY upgrader's header check.
fn spdy_handshake(
    headers: &HeaderMap,
    supported: &'static [&'static str],
) -> Result<(HttpResponse, String), Refusal> {
    let requested = header_list(headers, PROTOCOL_VERSION);
    if requested.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        ));
    }
    let Some(protocol) = requested.iter().find(|p| supported.contains(&p.as_str())) else {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "unable to upgrade: unable to negotiate protocol: client supports {requested:?}, server accepts {supported:?}"
            ),
            accepted: supported,
        });
    };
    if !header_contains(headers, header::CONNECTION, "upgrade")
        || !header_contains(headers, header::UPGRADE, "spdy/3.1")
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        ));
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_31));
    h.insert(
        PROTOCOL_VERSION,
        HeaderValue::from_str(protocol).expect("a supported protocol is a valid header"),
    );
    Ok((resp, protocol.clone()))
}

/// RFC 6455's server handshake with wsstream's subprotocol choice.
fn websocket_handshake(
    headers: &HeaderMap,
    supported: &[Subprotocol],
) -> Result<(HttpResponse, Subprotocol), Refusal> {
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version != Some("13") {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unsupported websocket version: only 13 is spoken",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
    };
    let requested = header_list(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str());
    let protocol =
        websocket::negotiate(&requested, supported).map_err(|e| Refusal::new(StatusCode::FORBIDDEN, e))?;
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a valid header"),
    );
    if !protocol.name.is_empty() {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol.name),
        );
    }
    Ok((resp, protocol))
}

/// Runs a session on the upgraded connection once hyper hands it over,
/// ending it on server shutdown or when no byte moved for the idle timeout.
fn spawn_session<F, Fut>(inner: Arc<Inner>, on_upgrade: hyper::upgrade::OnUpgrade, session: F)
where
    F: FnOnce(ActivityIo<TokioIo<hyper::upgrade::Upgraded>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "streaming upgrade failed");
                return;
            }
        };
        let io = ActivityIo::new(TokioIo::new(upgraded));
        let activity = io.activity.clone();
        let idle_timeout = inner.config.idle_timeout;
        tokio::select! {
            _ = session(io) => return,
            _ = inner.shutdown.cancelled() => {}
            _ = activity.idle(idle_timeout) => {
                tracing::debug!(?idle_timeout, "streaming session idle, closing");
            }
        }
        // The session's tasks may outlive its future; failing the socket
        // under them makes them all end.
        activity.kill();
    });
}

/// Records when bytes last moved on a connection and can fail it from
/// outside, so idle sessions and shutdown end every task that uses it.
pub(crate) struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    killed: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Activity {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Err once killed; otherwise remembers who to wake on kill.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "streaming session closed by the server",
            ));
        }
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            // Bounded: a connection is polled by its read and write sides.
            if wakers.len() >= 8 {
                wakers.remove(0);
            }
            wakers.push(cx.waker().clone());
        }
        Ok(())
    }
}

pub(crate) struct ActivityIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> ActivityIo<T> {
    pub(crate) fn new(inner: T) -> ActivityIo<T> {
        ActivityIo {
            inner,
            activity: Arc::new(Activity {
                epoch: Instant::now(),
                last_ms: AtomicU64::new(0),
                killed: AtomicBool::new(false),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.activity.check(cx)?;
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.activity.check(cx)?;
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.activity.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;
    use crate::stream::client::{self, ClientError, ClientOutput};
    use crate::stream::{BackendError, BoxFuture, StreamIo, TermSize};

    /// Commands a test "container" understands.
    struct TestBackend {
        events: mpsc::UnboundedSender<String>,
    }

    impl Backend for TestBackend {
        fn exec(&self, req: v1::ExecRequest, io: StreamIo) -> BoxFuture<Result<i32, BackendError>> {
            let events = self.events.clone();
            Box::pin(async move {
                let args: Vec<&str> = req.cmd.iter().map(String::as_str).collect();
                match args.as_slice() {
                    ["cat"] => cat(io).await,
                    ["exit", code] => Ok(code.parse().unwrap()),
                    ["fail"] => Err(BackendError("container c1 is not running".into())),
                    ["size"] => {
                        let mut resize = io.resize.expect("tty exec gets resize events");
                        let size = resize.recv().await.expect("one resize event");
                        let mut out = io.stdout.unwrap();
                        let line = format!("{}x{} stderr:{}", size.width, size.height, io.stderr.is_some());
                        out.write_all(line.as_bytes()).await.unwrap();
                        Ok(0)
                    }
                    ["hold"] => {
                        let mut stdin = io.stdin.unwrap();
                        let mut sink = Vec::new();
                        let _ = stdin.read_to_end(&mut sink).await;
                        let _ = events.send("stdin ended".into());
                        let mut out = io.stdout.unwrap();
                        loop {
                            if out.write_all(b"tick").await.is_err() {
                                let _ = events.send("stdout failed".into());
                                return Ok(0);
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    ["idle"] => {
                        std::future::pending::<()>().await;
                        Ok(0)
                    }
                    other => panic!("test backend has no command {other:?}"),
                }
            })
        }

        fn attach(&self, _req: v1::AttachRequest, io: StreamIo) -> BoxFuture<Result<(), BackendError>> {
            Box::pin(async move { cat(io).await.map(drop) })
        }

        fn port_forward(
            &self,
            pod_sandbox_id: String,
            port: u16,
        ) -> BoxFuture<Result<tokio::net::TcpStream, BackendError>> {
            Box::pin(async move {
                if pod_sandbox_id != "pod1" {
                    return Err(BackendError(format!(
                        "pod {pod_sandbox_id} has no network namespace"
                    )));
                }
                tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .map_err(|e| BackendError(e.to_string()))
            })
        }
    }

    /// stdin to stdout, then "done" on stderr.
    async fn cat(io: StreamIo) -> Result<i32, BackendError> {
        let mut out = io.stdout.unwrap();
        if let Some(mut stdin) = io.stdin {
            tokio::io::copy(&mut stdin, &mut out).await.unwrap();
        }
        if let Some(mut err) = io.stderr {
            err.write_all(b"done").await.unwrap();
        }
        Ok(0)
    }

    struct Fixture {
        server: StreamServer,
        events: mpsc::UnboundedReceiver<String>,
    }

    async fn fixture_with(config: StreamConfig) -> Fixture {
        let (tx, events) = mpsc::unbounded_channel();
        let backend = Arc::new(TestBackend { events: tx });
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = StreamServer::bind_with_config(addr, backend, config)
            .await
            .unwrap();
        Fixture { server, events }
    }

    async fn fixture() -> Fixture {
        fixture_with(StreamConfig::default()).await
    }

    fn exec(cmd: &[&str], stdin: bool, tty: bool) -> v1::ExecRequest {
        v1::ExecRequest {
            container_id: "c1".into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        }
    }

    /// An echo server for port-forward; aborted on drop.
    struct Echo {
        port: u16,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn echo() -> Echo {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Echo { port, task }
    }

    #[test]
    fn websocket_ports_come_from_the_request_or_the_query() {
        let pf = |port: Vec<i32>| v1::PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port,
        };
        assert_eq!(
            websocket_ports(&pf(vec![80, 443]), Some("port=1")),
            Ok(vec![80, 443])
        );
        assert_eq!(
            websocket_ports(&pf(vec![]), Some("port=80%2C81&x=1&port=90")),
            Ok(vec![80, 81, 90])
        );
        assert!(websocket_ports(&pf(vec![]), None).is_err());
        assert!(websocket_ports(&pf(vec![]), Some("port=0")).is_err());
        assert!(websocket_ports(&pf(vec![]), Some("port=")).is_err());
        assert!(websocket_ports(&pf(vec![70000]), None).is_err());
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_server() {
        let (tx, _events) = mpsc::unbounded_channel();
        let backend = Arc::new(TestBackend { events: tx });
        let server = StreamServer::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), backend)
            .await
            .unwrap();
        let url = server.exec_url(exec(&["exit", "0"], false, false));
        let addr = server.local_addr();
        let copy = server.clone();
        drop(server);
        let err = client::exec_websocket(&url, None, false, None).await;
        assert!(err.is_ok(), "a clone keeps it serving: {err:?}");
        drop(copy);
        // The accept loop ends on its next wake-up; a connection made before
        // that is dropped unanswered, one made after is refused.
        let refused = tokio::net::TcpStream::connect(addr).await;
        if let Ok(mut tcp) = refused {
            let mut buf = [0u8; 1];
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.ok();
            assert_eq!(tcp.read(&mut buf).await.unwrap_or(0), 0);
        }
    }

    #[tokio::test]
    async fn url_names_the_bound_port_and_kind() {
        let f = fixture().await;
        let port = f.server.local_addr().port();
        assert_ne!(port, 0);
        let url = f.server.exec_url(exec(&["cat"], true, false));
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{port}/exec/")),
            "{url}"
        );
        let url = f.server.attach_url(v1::AttachRequest::default());
        assert!(url.contains("/attach/"), "{url}");
        let url = f.server.port_forward_url(v1::PortForwardRequest::default());
        assert!(url.contains("/portforward/"), "{url}");
    }

    #[tokio::test]
    async fn spdy_exec_carries_stdin_stdout_stderr() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["cat"], true, false));
        let out = client::exec_spdy(&url, Some(b"hello over spdy".to_vec()), false, None)
            .await
            .unwrap();
        assert_eq!(
            out,
            ClientOutput {
                stdout: b"hello over spdy".to_vec(),
                stderr: b"done".to_vec(),
                exit_code: 0
            }
        );
    }

    #[tokio::test]
    async fn spdy_exec_reports_exit_code_as_v4_status() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["exit", "3"], false, false));
        let out = client::exec_spdy(&url, None, false, None).await.unwrap();
        assert_eq!(out.exit_code, 3);
    }

    #[tokio::test]
    async fn spdy_exec_reports_backend_failure() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["fail"], false, false));
        let err = client::exec_spdy(&url, None, false, None).await.unwrap_err();
        let ClientError::Remote(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("container c1 is not running"), "{msg}");
    }

    /// Opens a v1–v3 session by hand and returns what the error stream said.
    async fn spdy_error_text(url: &str, protocol: &str) -> String {
        let (addr, path) = url["http://".len()..].split_once('/').unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        let req = Request::post(format!("/{path}"))
            .header("Host", addr)
            .header("Connection", "Upgrade")
            .header("Upgrade", "SPDY/3.1")
            .header("X-Stream-Protocol-Version", protocol)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(resp.headers()["x-stream-protocol-version"], protocol);
        let io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
        let (conn, _incoming) = spdy::Connection::client(io);
        let h = |t: &str| vec![("streamtype".to_string(), t.to_string())];
        let mut error = conn.open(h("error")).await.unwrap();
        let mut stdout = conn.open(h("stdout")).await.unwrap();
        let mut stderr = conn.open(h("stderr")).await.unwrap();
        let mut sink = Vec::new();
        stdout.read_to_end(&mut sink).await.unwrap();
        stderr.read_to_end(&mut sink).await.unwrap();
        let mut text = String::new();
        error.read_to_string(&mut text).await.unwrap();
        conn.close().await;
        text
    }

    #[tokio::test]
    async fn spdy_v3_and_v2_report_exit_code_as_text() {
        let f = fixture().await;
        for protocol in ["v3.channel.k8s.io", "v2.channel.k8s.io"] {
            let url = f.server.exec_url(exec(&["exit", "3"], false, false));
            assert_eq!(
                spdy_error_text(&url, protocol).await,
                "command terminated with non-zero exit code: error executing command [exit 3], exit code 3"
            );
            let url = f.server.exec_url(exec(&["cat"], false, false));
            assert_eq!(
                spdy_error_text(&url, protocol).await,
                "",
                "success writes nothing"
            );
        }
    }

    #[tokio::test]
    async fn spdy_tty_delivers_resize_and_no_stderr() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["size"], false, true));
        let size = TermSize {
            width: 120,
            height: 40,
        };
        let out = client::exec_spdy(&url, None, true, Some(size)).await.unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "120x40 stderr:false");
        assert_eq!(out.exit_code, 0);
    }

    #[tokio::test]
    async fn spdy_attach_wires_stdin_to_stdout() {
        let f = fixture().await;
        let url = f.server.attach_url(v1::AttachRequest {
            container_id: "c1".into(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        });
        let out = client::exec_spdy(&url, Some(b"attached".to_vec()), false, None)
            .await
            .unwrap();
        assert_eq!(out.stdout, b"attached");
        assert_eq!(out.stderr, b"done");
    }

    #[tokio::test]
    async fn websocket_v5_exec_carries_stdin_stdout_stderr() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["cat"], true, false));
        let out = client::exec_websocket(&url, Some(b"hello over ws".to_vec()), false, None)
            .await
            .unwrap();
        assert_eq!(
            out,
            ClientOutput {
                stdout: b"hello over ws".to_vec(),
                stderr: b"done".to_vec(),
                exit_code: 0
            }
        );
    }

    #[tokio::test]
    async fn websocket_exec_reports_exit_code() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["exit", "3"], false, false));
        let out = client::exec_websocket(&url, None, false, None).await.unwrap();
        assert_eq!(out.exit_code, 3);
    }

    #[tokio::test]
    async fn websocket_tty_delivers_resize() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["size"], false, true));
        let size = TermSize {
            width: 100,
            height: 30,
        };
        let out = client::exec_websocket(&url, None, true, Some(size))
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "100x30 stderr:false");
    }

    #[tokio::test]
    async fn websocket_attach_wires_stdin_to_stdout() {
        let f = fixture().await;
        let url = f.server.attach_url(v1::AttachRequest {
            container_id: "c1".into(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        });
        let out = client::exec_websocket(&url, Some(b"attached".to_vec()), false, None)
            .await
            .unwrap();
        assert_eq!(out.stdout, b"attached");
    }

    async fn raw_websocket(
        url: &str,
        protocol: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
        let mut req = url.replace("http://", "ws://").into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let addr = url["http://".len()..].split_once('/').unwrap().0;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
        ws
    }

    async fn next_text(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> String {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => return t.as_str().to_owned(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn websocket_v4_base64_exec_with_initial_frame_and_json_status() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["exit", "7"], false, false));
        let mut ws = raw_websocket(&url, "v4.base64.channel.k8s.io").await;
        assert_eq!(next_text(&mut ws).await, "1", "an empty stdout frame comes first");
        let status = next_text(&mut ws).await;
        let (channel, payload) = status.split_at(1);
        assert_eq!(channel, "3");
        let decoded = b64.decode(payload).unwrap();
        let status: serde_json::Value = serde_json::from_slice(&decoded)
            .unwrap_or_else(|e| panic!("{e}: {status:?} {:?}", String::from_utf8_lossy(&decoded)));
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "7");

        let url = f.server.exec_url(exec(&["cat"], true, false));
        let mut ws = raw_websocket(&url, "base64.channel.k8s.io").await;
        assert_eq!(next_text(&mut ws).await, "1");
        ws.send(Message::Text(format!("0{}", b64.encode("abc")).into()))
            .await
            .unwrap();
        assert_eq!(next_text(&mut ws).await, format!("1{}", b64.encode("abc")));
    }

    #[tokio::test]
    async fn websocket_v1_writes_text_errors() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["exit", "2"], false, false));
        let mut ws = raw_websocket(&url, "channel.k8s.io").await;
        let mut error = Vec::new();
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(b) = msg
                && b.first() == Some(&3)
            {
                error.extend_from_slice(&b[1..]);
            }
        }
        assert!(
            String::from_utf8(error)
                .unwrap()
                .starts_with("command terminated with non-zero exit code:"),
        );
    }

    #[tokio::test]
    async fn token_is_single_use() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["exit", "0"], false, false));
        client::exec_websocket(&url, None, false, None).await.unwrap();
        for err in [
            client::exec_websocket(&url, None, false, None).await.unwrap_err(),
            client::exec_spdy(&url, None, false, None).await.unwrap_err(),
        ] {
            let ClientError::Refused { status, body, .. } = err else {
                panic!("{err:?}")
            };
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(body.contains("not found"), "{body}");
        }
    }

    #[tokio::test]
    async fn token_for_another_kind_is_not_found() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["exit", "0"], false, false));
        let url = url.replace("/exec/", "/attach/");
        let err = client::exec_spdy(&url, None, false, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Refused {
                    status: StatusCode::NOT_FOUND,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn expired_token_is_not_found() {
        let f = fixture_with(StreamConfig {
            token_ttl: Duration::ZERO,
            ..StreamConfig::default()
        })
        .await;
        let url = f.server.exec_url(exec(&["exit", "0"], false, false));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let err = client::exec_websocket(&url, None, false, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Refused {
                    status: StatusCode::NOT_FOUND,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn try_url_fails_when_too_many_are_in_flight() {
        let f = fixture_with(StreamConfig {
            max_in_flight: 1,
            ..StreamConfig::default()
        })
        .await;
        f.server.try_exec_url(exec(&["cat"], true, false)).unwrap();
        assert!(matches!(
            f.server.try_exec_url(exec(&["cat"], true, false)),
            Err(TokenError::TooManyInFlight(1))
        ));
    }

    /// A raw upgrade request; returns the status, headers and body.
    async fn raw_request(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        use http_body_util::BodyExt;
        let (addr, path) = url["http://".len()..].split_once('/').unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::post(format!("/{path}")).header("Host", addr);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn spdy_protocol_negotiation_errors() {
        let f = fixture().await;
        let upgrade = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];

        let url = f.server.exec_url(exec(&["cat"], true, false));
        let (status, _, body) = raw_request(&url, &upgrade).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("X-Stream-Protocol-Version is required"), "{body}");

        let url = f.server.exec_url(exec(&["cat"], true, false));
        let mut headers = upgrade.to_vec();
        headers.push(("X-Stream-Protocol-Version", "v9.channel.k8s.io"));
        let (status, h, body) = raw_request(&url, &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("unable to negotiate protocol"), "{body}");
        let accepted: Vec<_> = h.get_all("x-accepted-stream-protocol-versions").iter().collect();
        assert_eq!(accepted.len(), 4);
        assert_eq!(accepted[0], "v4.channel.k8s.io");

        let url = f.server.exec_url(exec(&["cat"], true, false));
        let (status, _, body) =
            raw_request(&url, &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("missing upgrade headers"), "{body}");

        let url = f.server.port_forward_url(v1::PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![],
        });
        let mut headers = upgrade.to_vec();
        headers.push(("X-Stream-Protocol-Version", "v4.channel.k8s.io"));
        let (status, _, _) = raw_request(&url, &headers).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "port-forward speaks only portforward.k8s.io"
        );
    }

    #[tokio::test]
    async fn websocket_unknown_subprotocol_is_refused() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["cat"], true, false));
        let (status, _, body) = raw_request(
            &url,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Protocol", "v9.channel.k8s.io"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("not supported"), "{body}");
    }

    #[tokio::test]
    async fn port_forward_over_spdy_reaches_the_pod_port() {
        let f = fixture().await;
        let echo = echo().await;
        let url = f.server.port_forward_url(v1::PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![i32::from(echo.port)],
        });
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let back = client::port_forward_spdy(&url, echo.port, data.clone())
            .await
            .unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test]
    async fn port_forward_over_spdy_serves_pairs_concurrently() {
        let f = fixture().await;
        let echo = echo().await;
        let url = f.server.port_forward_url(v1::PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![],
        });
        let (addr, path) = url["http://".len()..].split_once('/').unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        let req = Request::post(format!("/{path}"))
            .header("Host", addr)
            .header("Connection", "Upgrade")
            .header("Upgrade", "SPDY/3.1")
            .header("X-Stream-Protocol-Version", "portforward.k8s.io")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
        let (conn, _incoming) = spdy::Connection::client(io);
        let port = echo.port.to_string();
        let h = |t: &str, id: &str| {
            vec![
                ("streamtype".to_string(), t.to_string()),
                ("port".to_string(), port.clone()),
                ("requestid".to_string(), id.to_string()),
            ]
        };
        // Both pairs open before either is used, interleaved.
        let e0 = conn.open(h("error", "0")).await.unwrap();
        let e1 = conn.open(h("error", "1")).await.unwrap();
        let mut d1 = conn.open(h("data", "1")).await.unwrap();
        let mut d0 = conn.open(h("data", "0")).await.unwrap();
        d1.write_all(b"second").await.unwrap();
        d0.write_all(b"first").await.unwrap();
        let mut buf = [0u8; 6];
        d1.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"second");
        let mut buf = [0u8; 5];
        d0.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"first");
        for (mut d, mut e) in [(d0, e0), (d1, e1)] {
            d.close_write().await.unwrap();
            let mut rest = Vec::new();
            d.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            let mut err = Vec::new();
            e.read_to_end(&mut err).await.unwrap();
            assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        }
        conn.close().await;
    }

    #[tokio::test]
    async fn port_forward_over_websocket_reaches_the_pod_port() {
        let f = fixture().await;
        let echo = echo().await;
        let url = f.server.port_forward_url(v1::PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![],
        });
        let back = client::port_forward_websocket(&url, echo.port, b"ping over ws".to_vec(), Some(12))
            .await
            .unwrap();
        assert_eq!(back, b"ping over ws");
    }

    #[tokio::test]
    async fn port_forward_reports_backend_errors_on_the_error_stream() {
        let f = fixture().await;
        let echo = echo().await;
        let req = v1::PortForwardRequest {
            pod_sandbox_id: "pod2".into(),
            port: vec![],
        };
        let url = f.server.port_forward_url(req.clone());
        let err = client::port_forward_spdy(&url, echo.port, b"x".to_vec())
            .await
            .unwrap_err();
        let ClientError::PortForward(msg) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            msg,
            format!(
                "error forwarding port {} to pod pod2, uid : pod pod2 has no network namespace",
                echo.port
            )
        );
        let url = f.server.port_forward_url(req);
        let err = client::port_forward_websocket(&url, echo.port, b"x".to_vec(), Some(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::PortForward(ref m) if m.contains("pod2")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn websocket_port_forward_without_ports_is_a_bad_request() {
        let f = fixture().await;
        let url = f.server.port_forward_url(v1::PortForwardRequest {
            pod_sandbox_id: "pod1".into(),
            port: vec![],
        });
        let (status, _, body) = raw_request(
            &url,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("\"port\" is required"), "{body}");
    }

    #[tokio::test]
    async fn vanished_websocket_client_ends_backend_io() {
        let mut f = fixture().await;
        let url = f.server.exec_url(exec(&["hold"], true, false));
        let ws = raw_websocket(&url, "v5.channel.k8s.io").await;
        drop(ws);
        assert_eq!(f.events.recv().await.unwrap(), "stdin ended");
        assert_eq!(f.events.recv().await.unwrap(), "stdout failed");
    }

    #[tokio::test]
    async fn vanished_spdy_client_ends_backend_io() {
        let mut f = fixture().await;
        let url = f.server.exec_url(exec(&["hold"], true, false));
        let (addr, path) = url["http://".len()..].split_once('/').unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        let req = Request::post(format!("/{path}"))
            .header("Host", addr)
            .header("Connection", "Upgrade")
            .header("Upgrade", "SPDY/3.1")
            .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
        let (conn, _incoming) = spdy::Connection::client(io);
        let h = |t: &str| vec![("streamtype".to_string(), t.to_string())];
        let streams = [
            conn.open(h("error")).await.unwrap(),
            conn.open(h("stdin")).await.unwrap(),
            conn.open(h("stdout")).await.unwrap(),
            conn.open(h("stderr")).await.unwrap(),
        ];
        drop(streams);
        conn.close().await;
        assert_eq!(f.events.recv().await.unwrap(), "stdin ended");
        assert_eq!(f.events.recv().await.unwrap(), "stdout failed");
    }

    #[tokio::test]
    async fn idle_session_is_closed_by_the_server() {
        let f = fixture_with(StreamConfig {
            idle_timeout: Duration::from_millis(50),
            ..StreamConfig::default()
        })
        .await;
        let url = f.server.exec_url(exec(&["idle"], true, false));
        let mut ws = raw_websocket(&url, "v5.channel.k8s.io").await;
        // The empty stdout frame, then nothing until the server gives up.
        let mut frames = 0;
        while let Some(Ok(_)) = ws.next().await {
            frames += 1;
        }
        assert_eq!(frames, 1);
    }

    #[tokio::test]
    async fn shutdown_ends_sessions_in_flight() {
        let f = fixture().await;
        let url = f.server.exec_url(exec(&["idle"], true, false));
        let mut ws = raw_websocket(&url, "v5.channel.k8s.io").await;
        assert!(matches!(ws.next().await, Some(Ok(Message::Binary(_)))));
        f.server.shutdown();
        while let Some(Ok(_)) = ws.next().await {}
    }
}
