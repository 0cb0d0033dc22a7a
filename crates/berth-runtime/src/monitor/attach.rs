//! Frames of the attach protocol (see the module docs of `monitor`) and a
//! blocking client for it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::{MAX_CLIENT_PAYLOAD, MonitorError};

pub(crate) const KIND_STDIN: u8 = 0x01;
pub(crate) const KIND_CLOSE_STDIN: u8 = 0x02;
pub(crate) const KIND_RESIZE: u8 = 0x03;
pub(crate) const KIND_REOPEN_LOG: u8 = 0x04;
pub(crate) const KIND_STDOUT: u8 = 0x81;
pub(crate) const KIND_STDERR: u8 = 0x82;
pub(crate) const KIND_EXIT: u8 = 0x83;
pub(crate) const KIND_LOG_REOPENED: u8 = 0x84;
pub(crate) const KIND_ATTACHED: u8 = 0x85;

/// How long [`AttachClient::connect`] waits for the monitor's welcome. A
/// monitor from before the welcome existed never sends one: the client then
/// goes on after this (and may miss output printed meanwhile).
const WELCOME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) const HEADER_LEN: usize = 5;
/// Bound on what a client accepts from the monitor in one frame; the monitor
/// never sends more than its read buffer.
const MAX_SERVER_PAYLOAD: usize = 1024 * 1024;

pub(crate) fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    [kind, l[0], l[1], l[2], l[3]]
}

/// A message from the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachFrame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The container exited with this code (128+signal when killed).
    Exit(i32),
    /// Answer to a reopen request: `None` on success, else the error.
    LogReopened(Option<String>),
}

/// Blocking client of a monitor's attach socket. Clone it with
/// [`AttachClient::try_clone`] to write stdin from one thread while another
/// reads output.
#[derive(Debug)]
pub struct AttachClient {
    stream: UnixStream,
    socket: PathBuf,
    /// A frame header read while waiting for the welcome, from a monitor
    /// that sends none (one from before the welcome existed).
    pending: Option<[u8; HEADER_LEN]>,
}

impl AttachClient {
    /// Connects and waits until the monitor has accepted the connection:
    /// from then on every byte of output reaches this client. (A connect
    /// alone returns once the kernel queued it, before the monitor's
    /// accept: output in between would reach only the log.)
    pub fn connect(socket: &Path) -> Result<Self, MonitorError> {
        let stream = UnixStream::connect(socket).map_err(|source| MonitorError::Attach {
            socket: socket.to_owned(),
            source,
        })?;
        let mut client = AttachClient {
            stream,
            socket: socket.to_owned(),
            pending: None,
        };
        client.set_read_timeout(Some(WELCOME_TIMEOUT))?;
        let mut hdr = [0u8; HEADER_LEN];
        match client.stream.read_exact(&mut hdr) {
            Ok(()) if hdr == header(KIND_ATTACHED, 0) => {}
            // An older monitor's output or exit: keep it for `recv`.
            Ok(()) => client.pending = Some(hdr),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                tracing::warn!(socket = %socket.display(), "the monitor sent no welcome: an older monitor?");
            }
            Err(e) => return Err(client.io_err(e)),
        }
        client.set_read_timeout(None)?;
        Ok(client)
    }

    pub fn try_clone(&self) -> Result<Self, MonitorError> {
        let stream = self.stream.try_clone().map_err(|e| self.io_err(e))?;
        Ok(AttachClient {
            stream,
            socket: self.socket.clone(),
            pending: None,
        })
    }

    /// Shuts the connection down both ways, for every clone: a thread
    /// blocked in [`AttachClient::recv`] returns.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Bounds how long [`AttachClient::recv`] waits; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> Result<(), MonitorError> {
        self.stream.set_read_timeout(timeout).map_err(|e| self.io_err(e))
    }

    /// Sends bytes to the container's stdin, in frames the monitor accepts.
    pub fn send_stdin(&mut self, data: &[u8]) -> Result<(), MonitorError> {
        for chunk in data.chunks(MAX_CLIENT_PAYLOAD) {
            self.send(KIND_STDIN, chunk)?;
        }
        Ok(())
    }

    pub fn close_stdin(&mut self) -> Result<(), MonitorError> {
        self.send(KIND_CLOSE_STDIN, &[])
    }

    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<(), MonitorError> {
        let r = rows.to_be_bytes();
        let c = cols.to_be_bytes();
        self.send(KIND_RESIZE, &[r[0], r[1], c[0], c[1]])
    }

    /// Asks the monitor to reopen its log file (after it was rotated) and
    /// waits for the answer. Output frames arriving meanwhile are discarded,
    /// so use a connection of its own for this.
    pub fn reopen_log(&mut self) -> Result<(), MonitorError> {
        self.send(KIND_REOPEN_LOG, &[])?;
        loop {
            match self.recv()? {
                Some(AttachFrame::LogReopened(None)) => return Ok(()),
                Some(AttachFrame::LogReopened(Some(message))) => {
                    return Err(MonitorError::Reopen {
                        socket: self.socket.clone(),
                        message,
                    });
                }
                Some(AttachFrame::Exit(_)) | None => {
                    return Err(MonitorError::Reopen {
                        socket: self.socket.clone(),
                        message: "the container exited first".into(),
                    });
                }
                Some(_) => {}
            }
        }
    }

    /// Next frame; `Ok(None)` when the monitor closed the connection.
    pub fn recv(&mut self) -> Result<Option<AttachFrame>, MonitorError> {
        let hdr = loop {
            let hdr = match self.pending.take() {
                Some(h) => h,
                None => {
                    let mut hdr = [0u8; HEADER_LEN];
                    match self.stream.read_exact(&mut hdr) {
                        Ok(()) => hdr,
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                        Err(e) => return Err(self.io_err(e)),
                    }
                }
            };
            // A welcome that came after `connect` stopped waiting for it.
            if hdr != header(KIND_ATTACHED, 0) {
                break hdr;
            }
        };
        let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
        if len > MAX_SERVER_PAYLOAD {
            return Err(self.protocol(format!("frame of {len} bytes is too large")));
        }
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).map_err(|e| self.io_err(e))?;
        let frame = match hdr[0] {
            KIND_STDOUT => AttachFrame::Stdout(payload),
            KIND_STDERR => AttachFrame::Stderr(payload),
            KIND_EXIT => {
                let code: [u8; 4] = payload
                    .as_slice()
                    .try_into()
                    .map_err(|_| self.protocol(format!("exit frame of {len} bytes")))?;
                AttachFrame::Exit(i32::from_be_bytes(code))
            }
            KIND_LOG_REOPENED if payload.is_empty() => AttachFrame::LogReopened(None),
            KIND_LOG_REOPENED => {
                AttachFrame::LogReopened(Some(String::from_utf8_lossy(&payload).into_owned()))
            }
            k => return Err(self.protocol(format!("unknown frame kind {k:#04x}"))),
        };
        Ok(Some(frame))
    }

    fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), MonitorError> {
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        buf.extend_from_slice(&header(kind, payload.len()));
        buf.extend_from_slice(payload);
        self.stream.write_all(&buf).map_err(|e| self.io_err(e))
    }

    fn io_err(&self, source: std::io::Error) -> MonitorError {
        MonitorError::Attach {
            socket: self.socket.clone(),
            source,
        }
    }

    fn protocol(&self, detail: String) -> MonitorError {
        MonitorError::Protocol {
            socket: self.socket.clone(),
            detail,
        }
    }
}
