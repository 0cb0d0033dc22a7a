//! SPDY/3.1 sessions as Kubernetes speaks them: `k8s.io/apimachinery`'s
//! `httpstream/spdy` on `github.com/moby/spdystream`, which kubectl,
//! crictl and the kubelet use for exec, attach and port-forward.
//!
//! What spdystream does, and so what we do:
//! - Stream ids: the client's are odd, the server's even, each side's
//!   increasing. A peer stream id that is not of the peer's parity or not
//!   above the last one is answered with RST_STREAM PROTOCOL_ERROR.
//! - The server answers every SYN_STREAM with an empty SYN_REPLY before
//!   the stream is handed out; the client waits for it ([`Connection::open`]).
//! - No flow control: spdystream never sends WINDOW_UPDATE and ignores the
//!   ones it gets, so we neither send nor wait for any. Memory stays bounded
//!   by backpressure instead: a stream buffers at most [`RECV_BUFFER`] bytes
//!   before the session stops reading the socket until its reader catches up
//!   (spdystream likewise blocks its frame workers), and writers share a
//!   [`SEND_BUFFER`]-byte budget of frames not yet written to the socket.
//! - Header names are lower-case on the wire: Go's `http.Header` key
//!   `Streamtype` (set as `streamType`) arrives as `streamtype`.
//! - No SETTINGS are sent; received SETTINGS, WINDOW_UPDATE, HEADERS and
//!   unknown control frames are skipped (header blocks still decompressed,
//!   the zlib stream being shared).
//! - GOAWAY from the peer refuses new streams; open streams go on until the
//!   peer closes the socket, which is when kubectl's side closes.

mod dictionary;
mod frame;
mod session;
mod stream;
mod zlib;

#[cfg(test)]
mod tests;

pub use session::Connection;
pub use stream::{Stream, StreamReader, StreamWriter};
pub use zlib::HeaderBlockError;

/// Header name/value pairs; names lower-case, as SPDY/3 requires. A name
/// may appear more than once (it travels as one NUL-joined value).
pub type Headers = Vec<(String, String)>;

/// Largest DATA frame we send: what Go's `io.Copy` writes per frame.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Bytes one stream buffers for its reader before the session stops reading.
pub const RECV_BUFFER: usize = 512 * 1024;
/// Bytes of DATA all streams of a session may have queued for the socket.
pub const SEND_BUFFER: usize = 1024 * 1024;

/// Why a SPDY session or stream failed.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy connection i/o failed")]
    Io(#[from] std::io::Error),
    #[error("spdy {frame} frame uses protocol version {version}, only 3 is spoken")]
    UnsupportedVersion { version: u16, frame: &'static str },
    #[error("spdy {frame} frame is invalid: {reason}")]
    InvalidFrame { frame: &'static str, reason: String },
    #[error("spdy {frame} frame for stream {stream_id}: bad header block")]
    HeaderBlock {
        frame: &'static str,
        stream_id: u32,
        #[source]
        source: HeaderBlockError,
    },
    #[error("spdy connection ended with {0} bytes of a partial frame")]
    TruncatedFrame(usize),
    #[error("spdy stream {stream_id} was reset by the peer ({})", rst_status_name(*status))]
    Reset { stream_id: u32, status: u32 },
    #[error("spdy stream {stream_id} was reset locally")]
    ResetLocally { stream_id: u32 },
    #[error("spdy stream {stream_id}: write after this side finished the stream (FIN)")]
    WriteAfterFin { stream_id: u32 },
    #[error("spdy stream {stream_id}: connection closed before the stream finished")]
    StreamConnectionClosed { stream_id: u32 },
    #[error("spdy connection is closed")]
    ConnectionClosed,
    #[error("spdy connection is going away (GOAWAY): no new streams")]
    GoingAway,
    #[error("spdy connection has used up its stream ids")]
    StreamIdsExhausted,
}

impl From<SpdyError> for std::io::Error {
    fn from(err: SpdyError) -> Self {
        use std::io::ErrorKind;
        let kind = match &err {
            SpdyError::Io(e) => e.kind(),
            SpdyError::Reset { .. } | SpdyError::ResetLocally { .. } => ErrorKind::ConnectionReset,
            SpdyError::WriteAfterFin { .. } => ErrorKind::BrokenPipe,
            SpdyError::StreamConnectionClosed { .. } | SpdyError::ConnectionClosed | SpdyError::GoingAway => {
                ErrorKind::ConnectionAborted
            }
            _ => ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, err)
    }
}

/// RST_STREAM status names from the SPDY/3 spec.
pub fn rst_status_name(status: u32) -> &'static str {
    match status {
        1 => "PROTOCOL_ERROR",
        2 => "INVALID_STREAM",
        3 => "REFUSED_STREAM",
        4 => "UNSUPPORTED_VERSION",
        5 => "CANCEL",
        6 => "INTERNAL_ERROR",
        7 => "FLOW_CONTROL_ERROR",
        8 => "STREAM_IN_USE",
        9 => "STREAM_ALREADY_CLOSED",
        10 => "INVALID_CREDENTIALS",
        11 => "FRAME_TOO_LARGE",
        _ => "unknown status",
    }
}
