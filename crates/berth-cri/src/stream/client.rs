//! A small streaming client that acts as crictl and kubectl do against a
//! URL from [`StreamServer`](super::StreamServer): exec and attach over
//! SPDY (`v4.channel.k8s.io`) or WebSocket (`v5.channel.k8s.io`), and
//! port-forward over either. For tests and diagnostics, not for terminals.

use std::io;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::header;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::TermSize;
use super::remotecommand::{self, EXIT_CODE_CAUSE, NON_ZERO_EXIT_CODE, Status, V4, V5};
use super::spdy::{self, SpdyError};
use super::websocket::{CLOSE_SIGNAL, ERROR, RESIZE, STDERR, STDIN, STDOUT};

/// What a remote command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("streaming url {url:?} is not an http://host:port/path url")]
    BadUrl { url: String },
    #[error("connecting to streaming server {addr} failed")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("streaming request {url} failed at the http level")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("streaming request {url} was refused with {status}: {body}")]
    Refused {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("spdy session with the streaming server failed")]
    Spdy(#[from] SpdyError),
    #[error("websocket session with {url} failed")]
    WebSocket {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("streaming i/o failed")]
    Io(#[from] io::Error),
    #[error("remote command failed: {0}")]
    Remote(String),
    #[error("error channel held no status the client understands: {0:?}")]
    BadStatus(String),
    #[error("port-forward failed: {0}")]
    PortForward(String),
}

/// `host:port` and the path of an `http://` URL.
fn split_url(url: &str) -> Result<(&str, &str), ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl { url: url.into() })?;
    match rest.find('/') {
        Some(i) => Ok((&rest[..i], &rest[i..])),
        None => Err(ClientError::BadUrl { url: url.into() }),
    }
}

async fn connect(addr: &str) -> Result<TcpStream, ClientError> {
    TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.into(),
            source,
        })
}

/// Upgrades `url` to SPDY/3.1 offering `protocols`; returns the socket and
/// the protocol the server chose.
async fn spdy_upgrade(
    url: &str,
    protocols: &[&str],
) -> Result<(TokioIo<hyper::upgrade::Upgraded>, String), ClientError> {
    let (addr, path) = split_url(url)?;
    let http_err = |source| ClientError::Http {
        url: url.into(),
        source,
    };
    let tcp = connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(http_err)?;
    tokio::spawn(conn.with_upgrades());
    let req = Request::post(path)
        .header(header::HOST, addr)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocols.join(","))
        .body(Empty::<Bytes>::new())
        .expect("request parts are valid");
    let resp = sender.send_request(req).await.map_err(http_err)?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        return Err(ClientError::Refused {
            url: url.into(),
            status,
            body,
        });
    }
    let protocol = resp
        .headers()
        .get("X-Stream-Protocol-Version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let upgraded = hyper::upgrade::on(resp).await.map_err(http_err)?;
    Ok((TokioIo::new(upgraded), protocol))
}

fn stream_headers(kind: &str) -> spdy::Headers {
    vec![("streamtype".to_owned(), kind.to_owned())]
}

/// Reads what the error channel holds to its end.
async fn read_to_end(mut r: impl tokio::io::AsyncRead + Unpin) -> Result<Vec<u8>, ClientError> {
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).await?;
    Ok(buf)
}

/// The exit code a v4/v5 error channel reports, as client-go reads it.
fn exit_code(error: &[u8]) -> Result<i32, ClientError> {
    if error.is_empty() {
        return Ok(0);
    }
    let text = String::from_utf8_lossy(error).into_owned();
    let status: Status = serde_json::from_slice(error).map_err(|_| ClientError::BadStatus(text.clone()))?;
    match status.status.as_str() {
        "Success" => Ok(0),
        "Failure" if status.reason == NON_ZERO_EXIT_CODE => status
            .details
            .iter()
            .flat_map(|d| &d.causes)
            .find(|c| c.reason == EXIT_CODE_CAUSE)
            .and_then(|c| c.message.parse().ok())
            .ok_or(ClientError::BadStatus(text)),
        "Failure" => Err(ClientError::Remote(status.message)),
        _ => Err(ClientError::BadStatus(text)),
    }
}

/// Runs the exec or attach behind `url` over SPDY (`v4.channel.k8s.io`)
/// as crictl does: stdout always, stderr unless `tty`, stdin when given
/// (then half-closed), `resize` sent once when `tty`. The request behind
/// the URL must ask for the same streams.
pub async fn exec_spdy(
    url: &str,
    stdin: Option<Vec<u8>>,
    tty: bool,
    resize: Option<TermSize>,
) -> Result<ClientOutput, ClientError> {
    let (io, _) = spdy_upgrade(url, &[V4]).await?;
    let (conn, _incoming) = spdy::Connection::client(io);
    let mut error = conn.open(stream_headers("error")).await?;
    let stdin_stream = match stdin {
        Some(_) => Some(conn.open(stream_headers("stdin")).await?),
        None => None,
    };
    let stdout = conn.open(stream_headers("stdout")).await?;
    let stderr = match tty {
        false => Some(conn.open(stream_headers("stderr")).await?),
        true => None,
    };
    let mut resize_stream = match tty {
        true => Some(conn.open(stream_headers("resize")).await?),
        false => None,
    };

    let send = async {
        // The resize stream stays open, as kubectl keeps it, until the
        // command ends.
        if let (Some(s), Some(size)) = (resize_stream.as_mut(), resize) {
            s.write_all(&remotecommand::encode_resize(size)).await?;
        }
        if let (Some(mut s), Some(data)) = (stdin_stream, stdin) {
            s.write_all(&data).await?;
            s.close_write().await?;
        }
        Ok::<_, ClientError>(())
    };
    let out = read_to_end(stdout);
    let err = async {
        match stderr {
            Some(s) => read_to_end(s).await,
            None => Ok(Vec::new()),
        }
    };
    let (sent, out, err) = tokio::join!(send, out, err);
    sent?;
    drop(resize_stream);
    let mut status = Vec::new();
    error.read_to_end(&mut status).await?;
    conn.close().await;
    Ok(ClientOutput {
        stdout: out?,
        stderr: err?,
        exit_code: exit_code(&status)?,
    })
}

async fn websocket_connect(
    url: &str,
    protocol: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, ClientError> {
    let (addr, _) = split_url(url)?;
    let ws_err = |source| ClientError::WebSocket {
        url: url.into(),
        source: Box::new(source),
    };
    let ws_url = format!("ws://{}", &url["http://".len()..]);
    let mut req = ws_url.into_client_request().map_err(ws_err)?;
    req.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        protocol.parse().expect("protocol is a valid header"),
    );
    let tcp = connect(addr).await?;
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let (parts, body) = resp.into_parts();
            Err(ClientError::Refused {
                url: url.into(),
                status: parts.status,
                body: String::from_utf8_lossy(&body.unwrap_or_default())
                    .trim()
                    .to_owned(),
            })
        }
        Err(e) => Err(ws_err(e)),
    }
}

fn frame(channel: usize, data: &[u8]) -> Message {
    let mut f = Vec::with_capacity(data.len() + 1);
    f.push(channel as u8);
    f.extend_from_slice(data);
    Message::Binary(f.into())
}

/// [`exec_spdy`] over WebSocket (`v5.channel.k8s.io`): stdin is ended with
/// v5's close signal.
pub async fn exec_websocket(
    url: &str,
    stdin: Option<Vec<u8>>,
    tty: bool,
    resize: Option<TermSize>,
) -> Result<ClientOutput, ClientError> {
    let ws = websocket_connect(url, V5).await?;
    let ws_err = |source| ClientError::WebSocket {
        url: url.into(),
        source: Box::new(source),
    };
    let (mut sink, mut stream) = ws.split();
    let send = async {
        if let (true, Some(size)) = (tty, resize) {
            sink.send(frame(RESIZE, &remotecommand::encode_resize(size)))
                .await?;
        }
        if let Some(data) = stdin {
            if !data.is_empty() {
                sink.send(frame(STDIN, &data)).await?;
            }
            sink.send(Message::Binary(vec![CLOSE_SIGNAL, STDIN as u8].into()))
                .await?;
        }
        Ok(())
    };
    let receive = async {
        let mut out = ClientOutput::default();
        let mut status = Vec::new();
        while let Some(msg) = stream.next().await {
            let data = match msg? {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match usize::from(channel) {
                STDOUT => out.stdout.extend_from_slice(payload),
                STDERR => out.stderr.extend_from_slice(payload),
                ERROR => status.extend_from_slice(payload),
                _ => {}
            }
        }
        Ok((out, status))
    };
    let (sent, received) = tokio::join!(send, receive);
    sent.map_err(ws_err)?;
    let (mut out, status) = received.map_err(ws_err)?;
    out.exit_code = exit_code(&status)?;
    Ok(out)
}

/// Forwards one connection to `port` over SPDY (`portforward.k8s.io`):
/// sends `send`, half-closes, and returns everything the pod side sent
/// back before it closed.
pub async fn port_forward_spdy(url: &str, port: u16, send: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    let (io, _) = spdy_upgrade(url, &["portforward.k8s.io"]).await?;
    let (conn, _incoming) = spdy::Connection::client(io);
    let headers = |kind: &str| -> spdy::Headers {
        vec![
            ("streamtype".into(), kind.into()),
            ("port".into(), port.to_string()),
            ("requestid".into(), "0".into()),
        ]
    };
    let error = conn.open(headers("error")).await?;
    let data = conn.open(headers("data")).await?;
    let (mut data_in, mut data_out) = data.split();
    let send = async {
        data_out.write_all(&send).await?;
        data_out.shutdown().await?;
        Ok::<_, io::Error>(())
    };
    let mut received = Vec::new();
    let receive = data_in.read_to_end(&mut received);
    let (sent, got) = tokio::join!(send, receive);
    let message = read_to_end(error).await?;
    conn.close().await;
    if !message.is_empty() {
        return Err(ClientError::PortForward(
            String::from_utf8_lossy(&message).into_owned(),
        ));
    }
    sent?;
    got?;
    Ok(received)
}

/// Forwards one connection to `port` over WebSocket (`v4.channel.k8s.io`,
/// the port in the query): sends `send` and returns once `reply_len` bytes
/// came back (channels cannot be half-closed here) or, with `None`, once the
/// server closed.
pub async fn port_forward_websocket(
    url: &str,
    port: u16,
    send: Vec<u8>,
    reply_len: Option<usize>,
) -> Result<Vec<u8>, ClientError> {
    let url = format!("{url}?port={port}");
    let ws_err = |source| ClientError::WebSocket {
        url: url.clone(),
        source: Box::new(source),
    };
    let mut ws = websocket_connect(&url, V4).await?;
    if !send.is_empty() {
        ws.send(frame(0, &send)).await.map_err(ws_err)?;
    }
    // Each channel's first frame is the port it serves.
    let mut seen_port = [false, false];
    let mut received = Vec::new();
    let mut error = Vec::new();
    // WebSocket port-forward has no half-close: a client learns the reply
    // is complete from its length (an echo) or from the server closing
    // once the pod side ended (HTTP/1.0).
    while reply_len.is_none_or(|n| received.len() < n) {
        let Some(msg) = ws.next().await else { break };
        let data = match msg.map_err(ws_err)? {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        let channel = usize::from(channel);
        if channel > 1 {
            continue;
        }
        if !seen_port[channel] {
            seen_port[channel] = true;
            continue;
        }
        if channel == 0 {
            received.extend_from_slice(payload);
        } else {
            error.extend_from_slice(payload);
            break;
        }
    }
    let _ = ws.close(None).await;
    if !error.is_empty() {
        return Err(ClientError::PortForward(
            String::from_utf8_lossy(&error).into_owned(),
        ));
    }
    Ok(received)
}
