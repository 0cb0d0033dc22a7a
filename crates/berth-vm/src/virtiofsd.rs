//! virtiofsd, the vhost-user virtio-fs backend (`cargo install virtiofsd`).
//! It does not always exit when QEMU does, so its owner stops it: by its
//! process group (it forks a sandboxed child), on drop too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::{Error, Result};

/// virtiofsd's own sandbox around the shared directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sandbox {
    /// Mount, PID and network namespaces, pivoted into the shared dir.
    #[default]
    Namespace,
    Chroot,
    None,
}

#[derive(Debug, Clone)]
pub struct VirtiofsdConfig {
    pub binary: PathBuf,
    pub shared_dir: PathBuf,
    pub socket: PathBuf,
    pub readonly: bool,
    pub sandbox: Sandbox,
    /// `auto`, `always`, `never` or `metadata`.
    pub cache: String,
    /// Tell the guest which directories are host mount points, so it makes
    /// them submounts of its own. overlayfs refuses such automount points in
    /// a lower layer (EREMOTE), so an overlay over the share needs this off.
    pub announce_submounts: bool,
    /// virtiofsd's stderr; discarded when `None`.
    pub log: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

impl VirtiofsdConfig {
    pub fn new(shared_dir: &Path, socket: &Path) -> VirtiofsdConfig {
        VirtiofsdConfig {
            binary: "virtiofsd".into(),
            shared_dir: shared_dir.to_owned(),
            socket: socket.to_owned(),
            readonly: false,
            sandbox: Sandbox::default(),
            cache: "auto".into(),
            announce_submounts: true,
            log: None,
            extra_args: Vec::new(),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        let mut socket = std::ffi::OsString::from("--socket-path=");
        socket.push(&self.socket);
        let mut shared = std::ffi::OsString::from("--shared-dir=");
        shared.push(&self.shared_dir);
        c.arg(socket).arg(shared);
        c.arg(format!("--cache={}", self.cache));
        c.arg(match self.sandbox {
            Sandbox::Namespace => "--sandbox=namespace",
            Sandbox::Chroot => "--sandbox=chroot",
            Sandbox::None => "--sandbox=none",
        });
        if self.readonly {
            c.arg("--readonly");
        }
        if !self.announce_submounts {
            c.arg("--no-announce-submounts");
        }
        // Its default raises RLIMIT_NOFILE to a million, which fails where
        // the caller lacks CAP_SYS_RESOURCE (as on the build machines);
        // keep what we were given.
        c.arg("--rlimit-nofile=0");
        c.args(&self.extra_args);
        c
    }
}

/// A running virtiofsd, stopped on drop.
#[derive(Debug)]
pub struct Virtiofsd {
    child: Option<Child>,
    socket: PathBuf,
    shared_dir: PathBuf,
}

impl Virtiofsd {
    /// Starts virtiofsd and returns once its socket exists (QEMU fails to
    /// connect before that), or fails naming the shared dir when it exits
    /// or `timeout` passes first.
    pub fn start(cfg: &VirtiofsdConfig, timeout: Duration) -> Result<Virtiofsd> {
        let err = |what: String| Error::Virtiofsd {
            shared_dir: cfg.shared_dir.clone(),
            what,
        };
        // A socket left by an earlier run would look ready at once.
        match std::fs::remove_file(&cfg.socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing", &cfg.socket, e));
            }
            _ => {}
        }
        let stderr = match &cfg.log {
            Some(p) => Stdio::from(File::create(p).map_err(|e| Error::io("creating", p, e))?),
            None => Stdio::null(),
        };
        let mut cmd = cfg.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        crate::process::own_group(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("starting {}: {e}", cfg.binary.display())))?;
        let mut d = Virtiofsd {
            child: Some(child),
            socket: cfg.socket.clone(),
            shared_dir: cfg.shared_dir.clone(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(m) = std::fs::metadata(&cfg.socket)
                && std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())
            {
                return Ok(d);
            }
            let child = d.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                d.child = None;
                let log = cfg
                    .log
                    .as_ref()
                    .map(|p| format!(" (see {})", p.display()))
                    .unwrap_or_default();
                return Err(err(format!(
                    "exited with {status} before its socket appeared{log}"
                )));
            }
            if Instant::now() > deadline {
                let _ = d.stop();
                return Err(err(format!(
                    "no socket at {} after {timeout:?}",
                    cfg.socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// SIGTERM, SIGKILL after a second; removes the socket. Idempotent.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            crate::process::stop(&mut child, Signal::TERM, Duration::from_secs(1)).map_err(|e| {
                Error::Virtiofsd {
                    shared_dir: self.shared_dir.clone(),
                    what: format!("stopping pid {}: {e}", child.id()),
                }
            })?;
        }
        let _ = std::fs::remove_file(&self.socket);
        Ok(())
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "virtiofsd");
        }
    }
}
