//! Exec: the CRI call hands out a single-use URL of the streaming server;
//! when the client connects there, [`run`] starts the command in the
//! container wired to the client's streams.
//!
//! Without a tty the runtime's `exec` runs in the foreground with pipes.
//! With one, the runtime needs a console socket, which it accepts only when
//! it detaches: the pty master comes over that socket, and the monitor's
//! `--exec-wait` mode waits for the detached process and reports its exit
//! code (see `berth_runtime::monitor::exec_wait`).

use std::process::Stdio;
use std::time::Duration;

use berth_runtime::runtime::{ContainerState, ExecRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;

use crate::error::CriError;
use crate::pty::PtyMaster;
use crate::service::CriService;
use crate::stream::{BackendError, StreamIo};
use crate::v1;

/// How long output may keep flowing after the command exited: a process it
/// left behind can hold the pipes or the pty open forever.
const DRAIN: Duration = Duration::from_secs(2);
/// How long the runtime may take to send the pty.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

impl CriService {
    pub(crate) fn exec(&self, req: v1::ExecRequest) -> Result<v1::ExecResponse, CriError> {
        validate_streams("exec", req.tty, req.stdin, req.stdout, req.stderr)?;
        if req.cmd.is_empty() {
            return Err(CriError::InvalidArgument("exec: cmd is empty".into()));
        }
        let c = self.container(&req.container_id)?;
        let status = self.runtime.container_status(&c)?;
        if status.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition(format!(
                "exec in container {}: it is not running",
                c.id
            )));
        }
        let url = self.streams()?.exec_url(v1::ExecRequest {
            container_id: c.id,
            ..req
        });
        Ok(v1::ExecResponse { url })
    }
}

/// What Exec and Attach requests must say about their streams.
pub(crate) fn validate_streams(
    call: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), CriError> {
    if !(stdin || stdout || stderr) {
        return Err(CriError::InvalidArgument(format!(
            "{call}: one of stdin, stdout or stderr must be set"
        )));
    }
    if tty && stderr {
        return Err(CriError::InvalidArgument(format!(
            "{call}: tty and stderr cannot both be set (a terminal has one output)"
        )));
    }
    Ok(())
}

/// Runs the exec the client connected for; resolves to its exit code.
pub(crate) async fn run(svc: CriService, req: v1::ExecRequest, io: StreamIo) -> Result<i32, BackendError> {
    let exec_req = ExecRequest {
        args: req.cmd.clone(),
        tty: req.tty,
        ..Default::default()
    };
    if req.tty {
        with_tty(svc, &req.container_id, exec_req, io).await
    } else {
        with_pipes(svc, &req.container_id, exec_req, io).await
    }
}

async fn with_pipes(svc: CriService, id: &str, req: ExecRequest, io: StreamIo) -> Result<i32, BackendError> {
    let runtime = svc.runtime.clone();
    let owned_id = id.to_string();
    // Kept until the command ends: dropping it removes the process file.
    let mut exec = blocking(move || {
        runtime
            .exec_command(&owned_id, &req, None)
            .map_err(CriError::from)
    })
    .await?;
    let std_cmd = std::mem::replace(&mut exec.command, std::process::Command::new("true"));
    let mut cmd = Command::from(std_cmd);
    cmd.stdin(piped_if(io.stdin.is_some()))
        .stdout(piped_if(io.stdout.is_some()))
        .stderr(piped_if(io.stderr.is_some()))
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| BackendError(format!("container {id}: start the runtime's exec: {e}")))?;
    let stdin = match (io.stdin, child.stdin.take()) {
        (Some(from), Some(to)) => Some(tokio::spawn(copy_and_close(from, to))),
        _ => None,
    };
    let mut outputs = Vec::new();
    if let (Some(from), Some(to)) = (child.stdout.take(), io.stdout) {
        outputs.push(tokio::spawn(copy_and_close(from, to)));
    }
    if let (Some(from), Some(to)) = (child.stderr.take(), io.stderr) {
        outputs.push(tokio::spawn(copy_and_close(from, to)));
    }
    let status = child
        .wait()
        .await
        .map_err(|e| BackendError(format!("container {id}: wait for exec: {e}")))?;
    if let Some(s) = stdin {
        s.abort();
    }
    drain(outputs).await;
    drop(exec);
    Ok(exit_code(status))
}

async fn with_tty(
    svc: CriService,
    id: &str,
    req: ExecRequest,
    mut io: StreamIo,
) -> Result<i32, BackendError> {
    let dir = tempfile::Builder::new()
        .prefix("berth-tty-")
        .tempdir()
        .map_err(|e| BackendError(format!("container {id}: console socket dir: {e}")))?;
    let socket = dir.path().join("c.sock");
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| BackendError(format!("container {id}: bind {}: {e}", socket.display())))?;
    let runtime = svc.runtime.clone();
    let (owned_id, sock) = (id.to_string(), socket.clone());
    let (exec, waiter) = blocking(move || {
        let exec = runtime.exec_command(&owned_id, &req, Some(&sock))?;
        let waiter = runtime.exec_waiter(&exec)?;
        Ok((exec, waiter))
    })
    .await?;
    let mut waiter = Command::from(waiter);
    waiter
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = waiter
        .spawn()
        .map_err(|e| BackendError(format!("container {id}: start the exec waiter: {e}")))?;
    let mut report = child.stdout.take().expect("piped");
    let mut errors = child.stderr.take().expect("piped");
    let master = tokio::select! {
        m = tokio::time::timeout(CONSOLE_TIMEOUT, receive_master(&listener)) => match m {
            Ok(m) => m.map_err(|e| BackendError(format!("container {id}: receive the exec's pty: {e}")))?,
            Err(_) => return Err(BackendError(format!("container {id}: the runtime sent no pty within {CONSOLE_TIMEOUT:?}"))),
        },
        _ = child.wait() => {
            let mut text = String::new();
            let _ = report.read_to_string(&mut text).await;
            let _ = errors.read_to_string(&mut text).await;
            return Err(BackendError(format!("container {id}: exec failed: {}", text.trim())));
        }
    };
    let master = PtyMaster::new(master).map_err(|e| BackendError(format!("container {id}: pty: {e}")))?;
    if let Some(mut sizes) = io.resize.take() {
        let m = master.clone();
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                let _ = m.resize(size);
            }
        });
    }
    let stdin = io.stdin.map(|from| {
        let mut to = master.clone();
        tokio::spawn(async move {
            let mut from = from;
            let _ = tokio::io::copy(&mut from, &mut to).await;
        })
    });
    let output = io
        .stdout
        .map(|to| tokio::spawn(copy_and_close(master.clone(), to)));
    drop(master);
    let mut text = String::new();
    let _ = report.read_to_string(&mut text).await;
    let _ = child.wait().await;
    let mut stderr_text = String::new();
    let _ = errors.read_to_string(&mut stderr_text).await;
    if let Some(s) = stdin {
        s.abort();
    }
    drain(output.into_iter().collect()).await;
    drop(exec);
    parse_report(id, &text, &stderr_text)
}

/// The waiter's one line: `exit CODE` or `error MESSAGE`.
fn parse_report(id: &str, line: &str, stderr: &str) -> Result<i32, BackendError> {
    let line = line.trim();
    if let Some(code) = line.strip_prefix("exit ").and_then(|c| c.parse().ok()) {
        return Ok(code);
    }
    let message = line.strip_prefix("error ").unwrap_or(line);
    Err(BackendError(format!(
        "container {id}: exec failed: {message} {}",
        stderr.trim()
    )))
}

/// Accepts the runtime's connection on the console socket and receives the
/// pty master it sends.
async fn receive_master(listener: &tokio::net::UnixListener) -> std::io::Result<std::os::fd::OwnedFd> {
    let (conn, _) = listener.accept().await?;
    loop {
        conn.readable().await?;
        match conn.try_io(tokio::io::Interest::READABLE, || {
            let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let mut name = [0u8; 256];
            let mut iov = [std::io::IoSliceMut::new(&mut name)];
            rustix::net::recvmsg(
                &conn,
                &mut iov,
                &mut anc,
                rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::DONTWAIT,
            )?;
            for msg in anc.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg
                    && let Some(fd) = fds.next()
                {
                    return Ok(Some(fd));
                }
            }
            Ok(None)
        }) {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => {
                return Err(std::io::Error::other(
                    "the runtime sent no pty over the console socket",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

fn piped_if(wanted: bool) -> Stdio {
    if wanted { Stdio::piped() } else { Stdio::null() }
}

/// Copies to the end of `from`, then shuts `to` down so the client sees EOF.
pub(crate) async fn copy_and_close(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> std::io::Result<u64> {
    let n = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
    n
}

/// Waits up to [`DRAIN`] for the output copies, then stops them.
async fn drain(tasks: Vec<tokio::task::JoinHandle<std::io::Result<u64>>>) {
    let deadline = tokio::time::Instant::now() + DRAIN;
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            abort.abort();
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs blocking runtime work (store reads, forks) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CriError> + Send + 'static,
) -> Result<T, BackendError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| BackendError(e.to_string())),
        Err(e) => Err(BackendError(format!("streaming work panicked: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiter_reports_parse() {
        assert_eq!(parse_report("c", "exit 3\n", "").unwrap(), 3);
        let e = parse_report("c", "error runc exec failed (exit status: 1)\n", "no such file").unwrap_err();
        assert!(
            e.0.contains("runc exec failed") && e.0.contains("no such file"),
            "{e}"
        );
        assert!(parse_report("c", "", "").is_err());
    }

    #[test]
    fn streams_are_validated() {
        assert!(validate_streams("exec", false, false, false, false).is_err());
        let e = validate_streams("exec", true, false, true, true).unwrap_err();
        assert!(e.to_string().contains("tty and stderr"), "{e}");
        assert!(validate_streams("exec", true, true, true, false).is_ok());
    }
}
