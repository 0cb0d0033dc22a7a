//! Port-forward (kubelet's `portforward/`): over SPDY the client opens a
//! data and an error stream per connection it forwards, paired by the
//! `requestID` header, any number of pairs at a time; over WebSocket the
//! ports are fixed up front and channel `2i` carries port i's data, `2i+1`
//! its errors, each starting with the port as two little-endian bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;

use super::Backend;
use super::remotecommand::STREAM_TYPE;
use super::spdy;
use super::websocket::{ChannelConn, ChannelKind, Subprotocol};

/// The SPDY protocol name kubelet negotiates for port-forward.
pub(crate) const PROTOCOL: &str = "portforward.k8s.io";

const PORT: &str = "port";
const REQUEST_ID: &str = "requestid";

/// A forward that failed, worded as kubelet words it (the uid is empty
/// behind CRI).
fn forward_error(port: u16, pod: &str, err: &dyn std::fmt::Display) -> String {
    format!("error forwarding port {port} to pod {pod}, uid : {err}")
}

/// Connects to `port` in the pod and copies both ways. The client's EOF
/// half-closes the pod connection; the forward ends when the pod side has
/// nothing more to send (or fails), which is what clients wait for.
async fn forward<R, W, E>(
    backend: &Arc<dyn Backend>,
    pod: &str,
    port: u16,
    mut from_client: R,
    mut to_client: W,
    error: &mut E,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let tcp = match backend.port_forward(pod.to_owned(), port).await {
        Ok(tcp) => tcp,
        Err(e) => {
            let msg = forward_error(port, pod, &e);
            tracing::warn!(pod_sandbox_id = pod, port, error = %e, "port-forward failed");
            let _ = error.write_all(msg.as_bytes()).await;
            return;
        }
    };
    let (mut pod_read, mut pod_write) = tcp.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut pod_write).await;
        let _ = pod_write.shutdown().await;
        // Keep the pod-bound half open until the download side finishes.
        std::future::pending::<()>().await
    };
    let down = async {
        let result = tokio::io::copy(&mut pod_read, &mut to_client).await;
        let _ = to_client.shutdown().await;
        result
    };
    tokio::select! {
        result = down => {
            if let Err(e) = result {
                tracing::debug!(pod_sandbox_id = pod, port, error = %e, "port-forward copy ended");
            }
        }
        _ = up => {}
    }
}

/// A port-forward session over WebSocket for `ports`.
pub(crate) async fn serve_websocket<IO>(
    ws: WebSocketStream<IO>,
    protocol: Subprotocol,
    pod: String,
    ports: Vec<u16>,
    backend: Arc<dyn Backend>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let channels: Vec<ChannelKind> = ports
        .iter()
        .flat_map(|_| [ChannelKind::ReadWrite, ChannelKind::Write])
        .collect();
    let mut conn = ChannelConn::start(ws, protocol, &channels);
    let mut pairs = JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (Some(data_in), Some(mut data_out), Some(mut error)) = (
            conn.take_reader(2 * i),
            conn.take_writer(2 * i),
            conn.take_writer(2 * i + 1),
        ) else {
            continue;
        };
        // Tells the client which port each channel is for.
        let prefix = port.to_le_bytes();
        if data_out.write_all(&prefix).await.is_err() || error.write_all(&prefix).await.is_err() {
            break;
        }
        let backend = backend.clone();
        let pod = pod.clone();
        pairs.spawn(async move {
            forward(&backend, &pod, port, data_in, data_out, &mut error).await;
        });
    }
    while pairs.join_next().await.is_some() {}
    conn.close().await;
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct PendingPair {
    data: Option<spdy::Stream>,
    error: Option<spdy::Stream>,
}

/// A stream's port and role, checked as kubelet checks them before
/// accepting it.
fn stream_port(stream: &spdy::Stream) -> Result<(u16, bool), String> {
    let port = stream
        .header(PORT)
        .ok_or_else(|| format!("{PORT:?} header is required"))?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port == 0 {
        return Err("port \"0\" must be > 0".into());
    }
    match stream.header(STREAM_TYPE) {
        Some("data") => Ok((port, true)),
        Some("error") => Ok((port, false)),
        Some(other) => Err(format!("invalid stream type {other:?}")),
        None => Err(format!("{STREAM_TYPE:?} header is required")),
    }
}

/// The pair a stream belongs to. Clients older than the `requestID`
/// header open the error stream right before the data stream, so kubelet
/// pairs them by stream id; so do we.
fn request_id(stream: &spdy::Stream, is_data: bool) -> String {
    match stream.header(REQUEST_ID) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ if is_data => stream.id().wrapping_sub(2).to_string(),
        _ => stream.id().to_string(),
    }
}

/// A port-forward session over SPDY: pairs streams by request id and
/// forwards each complete pair until the client closes the connection.
pub(crate) async fn serve_spdy(
    conn: spdy::Connection,
    mut incoming: mpsc::Receiver<spdy::Stream>,
    pod: String,
    backend: Arc<dyn Backend>,
    creation_timeout: Duration,
) {
    let mut pending: HashMap<String, PendingPair> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut timers = JoinSet::new();
    loop {
        tokio::select! {
            stream = incoming.recv() => {
                let Some(stream) = stream else { break };
                let (port, is_data) = match stream_port(&stream) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(error = %e, "port-forward stream rejected");
                        stream.reset();
                        continue;
                    }
                };
                let id = request_id(&stream, is_data);
                let pair = pending.entry(id.clone()).or_insert_with(|| {
                    let id = id.clone();
                    timers.spawn(async move {
                        tokio::time::sleep(creation_timeout).await;
                        id
                    });
                    PendingPair::default()
                });
                let slot = if is_data { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    let kind = if is_data { "data" } else { "error" };
                    let msg = format!("error processing stream for request {id}: {kind} stream already assigned");
                    tracing::debug!("{msg}");
                    if let Some(error) = pair.error.as_mut() {
                        let _ = error.write_all(msg.as_bytes()).await;
                    }
                    stream.reset();
                    continue;
                }
                *slot = Some(stream);
                if pair.data.is_some() && pair.error.is_some() {
                    let pair = pending.remove(&id).expect("pair just completed");
                    let (Some(data), Some(error)) = (pair.data, pair.error) else { continue };
                    let backend = backend.clone();
                    let pod = pod.clone();
                    forwards.spawn(forward_spdy(backend, pod, port, data, error));
                }
            }
            Some(Ok(id)) = timers.join_next(), if !timers.is_empty() => {
                if let Some(mut pair) = pending.remove(&id) {
                    let msg = format!("timed out waiting for streams of request {id}");
                    tracing::debug!("{msg}");
                    if let Some(mut error) = pair.error.take() {
                        let _ = error.write_all(msg.as_bytes()).await;
                        let _ = error.shutdown().await;
                    }
                    if let Some(data) = pair.data.take() {
                        data.reset();
                    }
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
    // The client is gone: forwards still running have nobody to talk to.
    forwards.shutdown().await;
    conn.close().await;
}

async fn forward_spdy(
    backend: Arc<dyn Backend>,
    pod: String,
    port: u16,
    data: spdy::Stream,
    mut error: spdy::Stream,
) {
    let (data_in, data_out) = data.split();
    forward(&backend, &pod, port, data_in, data_out, &mut error).await;
    let _ = error.shutdown().await;
}
