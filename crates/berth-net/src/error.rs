use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The error JSON a plugin prints on stdout when it fails
/// (`{"cniVersion","code","msg","details"}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct PluginErrorBody {
    #[serde(default)]
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl PluginErrorBody {
    /// Well-known codes: 1 incompatible version, 2 unsupported field,
    /// 3 container unknown, 4 invalid environment, 5 I/O, 6 decode,
    /// 7 invalid config, 11 try again later, 50 not available, 51 limited.
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
}

/// How a failed plugin ended: the exit status and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginFailure {
    /// `exit status 1`, `signal 9`…
    pub status: String,
    /// Parsed from stdout when the plugin printed the spec's error JSON.
    pub body: Option<PluginErrorBody>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        match &self.body {
            Some(b) => {
                write!(f, ", code {}: {}", b.code, b.msg)?;
                if !b.details.is_empty() {
                    write!(f, " ({})", b.details)?;
                }
            }
            None if !self.stdout.trim().is_empty() => write!(f, ", stdout: {}", self.stdout.trim())?,
            None => {}
        }
        if !self.stderr.trim().is_empty() {
            write!(f, ", stderr: {}", self.stderr.trim())?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI plugin {plugin:?} not found in {searched:?}")]
    PluginNotFound { plugin: String, searched: Vec<PathBuf> },
    #[error("CNI plugin {plugin:?} {command}: spawning {path} failed: {source}")]
    Spawn {
        plugin: String,
        command: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("CNI plugin {plugin:?} {command}: {step} failed: {source}")]
    Io {
        plugin: String,
        command: &'static str,
        step: &'static str,
        source: io::Error,
    },
    #[error("CNI plugin {plugin:?} {command} timed out after {timeout:?} and was killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error("CNI plugin {plugin:?} {command} failed: {failure}")]
    Plugin {
        plugin: String,
        command: &'static str,
        failure: Box<PluginFailure>,
    },
    #[error("CNI plugin {plugin:?} {command} printed output that is not valid: {reason}")]
    BadOutput {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    #[error("CNI config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("CNI config dir {dir}: reading it failed: {source}")]
    ConfDir { dir: PathBuf, source: io::Error },
    #[error("no CNI network config (.conflist, .conf, .json) in {dirs:?}")]
    NoNetwork { dirs: Vec<PathBuf> },
    #[error("CNI network {name:?} not found in {dirs:?}")]
    NetworkNotFound { name: String, dirs: Vec<PathBuf> },
    #[error("CNI attachment: {0}")]
    InvalidAttachment(String),
    #[error("CNI network {network:?}: {command} is not supported by cniVersion {version}")]
    Unsupported {
        network: String,
        command: &'static str,
        version: String,
    },
    #[error("CNI network {network:?}: no cached ADD result for container {container_id} {ifname}")]
    NotAttached {
        network: String,
        container_id: String,
        ifname: String,
    },
    #[error("CNI result cache {path}: {step} failed: {source}")]
    Cache {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("CNI result cache {path}: not valid: {reason}")]
    BadCache { path: PathBuf, reason: String },
    #[error("CNI result (cniVersion {version:?}) is not valid: {reason}")]
    BadResult { version: String, reason: String },
}

impl CniError {
    /// The plugin's error JSON, when the failure came with one.
    pub fn plugin_error(&self) -> Option<&PluginErrorBody> {
        match self {
            CniError::Plugin { failure, .. } => failure.body.as_ref(),
            _ => None,
        }
    }

    /// The plugin type this error is about, if any.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            CniError::PluginNotFound { plugin, .. }
            | CniError::Spawn { plugin, .. }
            | CniError::Io { plugin, .. }
            | CniError::Timeout { plugin, .. }
            | CniError::Plugin { plugin, .. }
            | CniError::BadOutput { plugin, .. } => Some(plugin),
            _ => None,
        }
    }
}
