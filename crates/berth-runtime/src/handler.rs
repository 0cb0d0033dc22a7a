//! Runtime handlers: any runc-compatible command line. The embedded one is
//! `berth oci`; runc, crun or youki can be named instead in the config.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

/// A runc-compatible runtime: binary, the arguments that select it (e.g.
/// `oci` for `berth oci`) and its own state root.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OciHandler {
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    /// The runtime's `--root`: where it keeps its own container state.
    pub root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("runtime {handler}: {verb} of container {id}: cannot run {}: {source}", path.display())]
    Spawn {
        handler: String,
        verb: &'static str,
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime {handler}: {verb} of container {id} failed ({status}): {message}")]
    Failed {
        handler: String,
        verb: &'static str,
        id: String,
        status: std::process::ExitStatus,
        message: String,
    },
    #[error("runtime {handler}: state of container {id}: unreadable output: {source}")]
    BadState {
        handler: String,
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The runtime's view of a container (`runc state`).
#[derive(Clone, Debug, Deserialize)]
pub struct OciState {
    pub id: String,
    #[serde(default)]
    pub pid: i64,
    pub status: String,
}

impl OciHandler {
    /// The argv prefix every verb starts with (the monitor runs `create` with it).
    pub fn argv(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.args.len() + 3);
        v.push(self.path.to_string_lossy().into_owned());
        v.extend(self.args.iter().cloned());
        v.push("--root".into());
        v.push(self.root.to_string_lossy().into_owned());
        v
    }

    /// A command for `verb` with the global flags in place.
    pub fn command(&self, verb: &str) -> Command {
        let mut c = Command::new(&self.path);
        c.args(&self.args).arg("--root").arg(&self.root).arg(verb);
        c
    }

    fn run<I, S>(&self, verb: &'static str, id: &str, args: I) -> Result<Output, HandlerError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self
            .command(verb)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HandlerError::Spawn {
                handler: self.name.clone(),
                verb,
                id: id.to_string(),
                path: self.path.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(HandlerError::Failed {
                handler: self.name.clone(),
                verb,
                id: id.to_string(),
                status: out.status,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out)
    }

    pub fn start(&self, id: &str) -> Result<(), HandlerError> {
        self.run("start", id, [id]).map(drop)
    }

    /// Sends `signal` (a name like `TERM` or a number) to the container's
    /// init, or with `all` to every process of it.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), HandlerError> {
        if all {
            self.run("kill", id, ["--all", id, signal]).map(drop)
        } else {
            self.run("kill", id, [id, signal]).map(drop)
        }
    }

    /// Forgets the container; `force` kills it first. A container the
    /// runtime does not know is not an error with `force`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), HandlerError> {
        let r = if force {
            self.run("delete", id, ["--force", id])
        } else {
            self.run("delete", id, [id])
        };
        match r {
            Err(HandlerError::Failed { message, .. }) if force && is_missing(&message) => Ok(()),
            r => r.map(drop),
        }
    }

    /// `None` when the runtime does not know the container.
    pub fn state(&self, id: &str) -> Result<Option<OciState>, HandlerError> {
        match self.run("state", id, [id]) {
            Ok(out) => {
                serde_json::from_slice(&out.stdout)
                    .map(Some)
                    .map_err(|source| HandlerError::BadState {
                        handler: self.name.clone(),
                        id: id.to_string(),
                        source,
                    })
            }
            Err(HandlerError::Failed { message, .. }) if is_missing(&message) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies new resources (an OCI `linux.resources` document in a file).
    pub fn update(&self, id: &str, resources: &Path) -> Result<(), HandlerError> {
        let r = resources.as_os_str();
        self.run("update", id, [OsStr::new("--resources"), r, OsStr::new(id)])
            .map(drop)
    }

    /// PIDs of the container's processes.
    pub fn ps(&self, id: &str) -> Result<Vec<u32>, HandlerError> {
        let out = self.run("ps", id, ["--format", "json", id])?;
        serde_json::from_slice(&out.stdout).map_err(|source| HandlerError::BadState {
            handler: self.name.clone(),
            id: id.to_string(),
            source,
        })
    }

    /// Checkpoints a running container with CRIU, leaving it running: CRIU's
    /// images into `images`, its log and statistics into `work`.
    pub fn checkpoint(&self, id: &str, images: &Path, work: &Path) -> Result<(), HandlerError> {
        let args = [
            OsStr::new("--image-path"),
            images.as_os_str(),
            OsStr::new("--work-path"),
            work.as_os_str(),
            OsStr::new("--leave-running"),
            OsStr::new("--file-locks"),
            OsStr::new("--tcp-established"),
            OsStr::new(id),
        ];
        self.run("checkpoint", id, args).map(drop)
    }

    /// `exec --process FILE` of a prepared process; the caller sets stdio
    /// and adds `--tty`/`--console-socket`/`--detach` as it needs.
    pub fn exec_command(&self, id: &str, process: &Path, extra: &[&OsStr]) -> Command {
        let mut c = self.command("exec");
        c.arg("--process").arg(process).args(extra).arg(id);
        c
    }
}

/// runc, crun, youki and berth all say "does not exist" or "not found" for
/// an unknown container id.
fn is_missing(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such file")
}
