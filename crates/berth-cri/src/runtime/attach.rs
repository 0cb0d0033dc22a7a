//! Attach: the CRI call hands out a single-use URL of the streaming server;
//! when the client connects there, [`run`] wires its streams to the
//! container's monitor (its attach socket) until the container exits or the
//! client goes away.

use berth_runtime::monitor::{AttachClient, AttachFrame};
use berth_runtime::runtime::ContainerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::exec::{blocking, validate_streams};
use crate::error::CriError;
use crate::service::CriService;
use crate::stream::{BackendError, BoxWrite, StreamIo};
use crate::v1;

impl CriService {
    pub(crate) fn attach(&self, req: v1::AttachRequest) -> Result<v1::AttachResponse, CriError> {
        validate_streams("attach", req.tty, req.stdin, req.stdout, req.stderr)?;
        let c = self.container(&req.container_id)?;
        let status = self.runtime.container_status(&c)?;
        if status.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition(format!(
                "attach to container {}: it is not running",
                c.id
            )));
        }
        if req.stdin && !c.config.stdin {
            return Err(CriError::InvalidArgument(format!(
                "attach to container {}: stdin requested, but the container was created without stdin",
                c.id
            )));
        }
        let url = self.streams()?.attach_url(v1::AttachRequest {
            container_id: c.id,
            ..req
        });
        Ok(v1::AttachResponse { url })
    }
}

/// What the client sends the monitor, in order.
enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(u16, u16),
}

/// Serves one attach until the container exits or the client leaves.
pub(crate) async fn run(svc: CriService, req: v1::AttachRequest, io: StreamIo) -> Result<(), BackendError> {
    let runtime = svc.runtime.clone();
    let id = req.container_id.clone();
    let (client, stdin_once) = blocking(move || {
        let c = runtime.get_container(&id)?;
        let client = AttachClient::connect(&runtime.attach_socket(&c.id))
            .map_err(|e| CriError::FailedPrecondition(format!("attach to container {}: {e}", c.id)))?;
        Ok((client, c.config.stdin_once))
    })
    .await?;
    let id = req.container_id.as_str();
    let reader = client
        .try_clone()
        .map_err(|e| BackendError(format!("container {id}: {e}")))?;
    let closer = client
        .try_clone()
        .map_err(|e| BackendError(format!("container {id}: {e}")))?;
    let (frames_tx, mut frames) = mpsc::channel(16);
    std::thread::spawn(move || read_frames(reader, frames_tx));
    let (input_tx, input_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || write_input(client, input_rx));
    let mut tasks = Vec::new();
    if let Some(mut stdin) = io.stdin {
        let tx = input_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Input::Stdin(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
            // The client's stdin ending closes the container's only when
            // it was created to take stdin once, as containerd does.
            if stdin_once {
                let _ = tx.send(Input::CloseStdin);
            }
        }));
    }
    if let Some(mut sizes) = io.resize {
        let tx = input_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(s) = sizes.recv().await {
                if tx.send(Input::Resize(s.height, s.width)).is_err() {
                    return;
                }
            }
        }));
    }
    drop(input_tx);
    let (mut stdout, mut stderr) = (io.stdout, io.stderr);
    while let Some(frame) = frames.recv().await {
        let (to, data) = match frame {
            AttachFrame::Stdout(d) => (&mut stdout, d),
            AttachFrame::Stderr(d) => (&mut stderr, d),
            AttachFrame::Exit(_) => break,
            AttachFrame::LogReopened(_) => continue,
        };
        if let Some(w) = to
            && w.write_all(&data).await.is_err()
        {
            break;
        }
    }
    closer.shutdown();
    for t in tasks {
        t.abort();
    }
    close(stdout).await;
    close(stderr).await;
    Ok(())
}

async fn close(w: Option<BoxWrite>) {
    if let Some(mut w) = w {
        let _ = w.shutdown().await;
    }
}

fn read_frames(mut client: AttachClient, tx: mpsc::Sender<AttachFrame>) {
    while let Ok(Some(frame)) = client.recv() {
        let last = matches!(frame, AttachFrame::Exit(_));
        if tx.blocking_send(frame).is_err() || last {
            return;
        }
    }
}

fn write_input(mut client: AttachClient, rx: std::sync::mpsc::Receiver<Input>) {
    for input in rx {
        let sent = match input {
            Input::Stdin(d) => client.send_stdin(&d),
            Input::CloseStdin => client.close_stdin(),
            Input::Resize(rows, cols) => client.resize(rows, cols),
        };
        if sent.is_err() {
            return;
        }
    }
}
