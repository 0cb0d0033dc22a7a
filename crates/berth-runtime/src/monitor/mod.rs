//! `berth monitor`: one small, single-threaded process per container, in the
//! role of conmon or containerd-shim.
//!
//! [`spawn`] starts `EXE monitor DIR` detached (the monitor forks once more
//! at start, so the starter only reaps a short-lived intermediate and the
//! monitor is reparented away from it) and blocks until the monitor reports
//! the outcome of the runtime's `create` (or `restore`, see
//! [`MonitorConfig::restore`]). From then on the monitor, run by
//! [`run`], holds the container's stdio, writes the CRI log, serves attach
//! clients, reaps the container's init (it is a child subreaper) and finally
//! writes the [`ExitRecord`] to `exit_file` atomically.
//!
//! Files in `DIR`: `monitor.json` ([`MonitorConfig`], written by [`spawn`]),
//! `monitor.pid` (the monitor's pid, for recovery), `console.sock` (tty only,
//! while the runtime's `create` runs), `monitor.err` (the monitor's own fatal
//! error, if any, after it reported success).
//!
//! # Sync pipe
//! [`spawn`] hands the monitor the write end of a pipe as fd 3 and names it in
//! the `BERTH_MONITOR_SYNC_FD` environment variable. The monitor writes one
//! JSON object ([`SyncReport`]) and closes it.
//!
//! # Attach protocol
//! A stream unix socket at `socket`. Every message, both directions, is a
//! frame `[kind u8][len u32 big-endian][len bytes of payload]`.
//!
//! | kind | direction | payload |
//! | --- | --- | --- |
//! | `0x01` stdin | client → monitor | bytes for the container's stdin (≤ [`MAX_CLIENT_PAYLOAD`]) |
//! | `0x02` close stdin | client → monitor | empty |
//! | `0x03` resize | client → monitor | rows u16 BE, cols u16 BE (`TIOCSWINSZ` on the pty) |
//! | `0x04` reopen log | client → monitor | empty |
//! | `0x81` stdout | monitor → client | output bytes (pty output is stdout) |
//! | `0x82` stderr | monitor → client | output bytes |
//! | `0x83` exit | monitor → client | exit code i32 BE; the monitor closes the connection after it |
//! | `0x84` log reopened | monitor → client | empty on success, else the error text |
//! | `0x85` welcome | monitor → client | empty: the first frame, sent on accept |
//!
//! Clients receive the output produced after the monitor accepted them
//! (`AttachClient::connect` returns once the welcome arrived); several may be
//! connected at once. A client whose pending output would exceed
//! [`MAX_CLIENT_BACKLOG`] is dropped, so no client can stall the container.
//! With `stdin_once`, the container's stdin is closed when the first client
//! that connected goes away.

mod attach;
pub mod exec_wait;
mod exit;
pub mod memory;
mod run;
mod spawn;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use attach::{AttachClient, AttachFrame};
pub use exit::{ExitRecord, read_exit};
pub use run::run;
pub use spawn::{Started, spawn};

/// Largest payload the monitor accepts in one client frame.
pub const MAX_CLIENT_PAYLOAD: usize = 32 * 1024;
/// Output queued for one attach client beyond which the client is dropped.
pub const MAX_CLIENT_BACKLOG: usize = 256 * 1024;

/// Name of the environment variable that carries the sync pipe's fd number.
pub const SYNC_FD_ENV: &str = "BERTH_MONITOR_SYNC_FD";
/// File name of the monitor configuration inside the monitor directory.
pub const CONFIG_FILE: &str = "monitor.json";
/// File name of the monitor's pid inside the monitor directory.
pub const PID_FILE: &str = "monitor.pid";

/// Everything one monitor needs; stored as `DIR/monitor.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Container id, passed to the runtime.
    pub id: String,
    /// OCI bundle directory.
    pub bundle: PathBuf,
    /// argv prefix of a runc-compatible runtime including its global flags.
    pub runtime: Vec<String>,
    /// CRI log file.
    pub log_path: PathBuf,
    /// Where the [`ExitRecord`] goes once the container's init exits.
    pub exit_file: PathBuf,
    /// Attach socket.
    pub socket: PathBuf,
    /// Pid file the runtime writes the container's init pid into.
    pub pid_file: PathBuf,
    /// Give the container a pty (received through `--console-socket`).
    pub tty: bool,
    /// Keep the container's stdin open for attach clients.
    pub stdin: bool,
    /// Close stdin when the first attach client detaches.
    pub stdin_once: bool,
    /// cgroup files holding the `oom_kill` counter (v1 `memory.oom_control`,
    /// v2 `memory.events`), read when the container exits.
    #[serde(default)]
    pub oom_files: Vec<PathBuf>,
    /// CRIU images (a checkpoint) to restore the container from: the
    /// runtime's `restore --detach` runs in place of `create`, and the
    /// restored init, already running, is left to this monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<PathBuf>,
}

/// What the monitor tells [`spawn`] over the sync pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum SyncReport {
    Created {
        monitor_pid: u32,
        container_pid: u32,
    },
    Failed {
        /// The runtime's exit code, or 128+signal; `None` when it never ran.
        status: Option<i32>,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("monitor config {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("monitor config {path} is malformed: {source}")]
    ConfigFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("container {id}: cannot start monitor: {source}")]
    Spawn {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: monitor exited without reporting ({detail})")]
    MonitorLost { id: String, detail: String },
    #[error("container {id}: runtime create failed{}: {message}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Create {
        id: String,
        status: Option<i32>,
        message: String,
    },
    #[error("exit record {path}: {source}")]
    ExitRecord {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("exit record {path} is malformed: {source}")]
    ExitRecordFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("attach socket {socket}: {source}")]
    Attach {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("attach socket {socket}: protocol error: {detail}")]
    Protocol { socket: PathBuf, detail: String },
    #[error("attach socket {socket}: reopening the log failed: {message}")]
    Reopen { socket: PathBuf, message: String },
}

/// Reads `DIR/monitor.json`.
pub fn read_config(dir: &Path) -> Result<MonitorConfig, MonitorError> {
    let path = dir.join(CONFIG_FILE);
    let data = std::fs::read(&path).map_err(|source| MonitorError::Config {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| MonitorError::ConfigFormat { path, source })
}

/// Writes `DIR/monitor.json` atomically.
pub fn write_config(dir: &Path, cfg: &MonitorConfig) -> Result<(), MonitorError> {
    let path = dir.join(CONFIG_FILE);
    let data = serde_json::to_vec_pretty(cfg).expect("MonitorConfig serializes");
    exit::write_atomic(&path, &data).map_err(|source| MonitorError::Config { path, source })
}
