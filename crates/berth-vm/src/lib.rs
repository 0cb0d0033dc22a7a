//! Guest VMs of berth, host side: where the guest kernel lives and which of
//! its modules to load in what order, the initramfs (a newc cpio written
//! here), the QEMU command line, and virtiofsd.
//!
//! Today this serves `berth-vmtest`, which runs berth's test binaries in a
//! cgroup v2 guest on hosts that are not v2; the `vm` runtime handler builds
//! its pod VMs from the same parts.

pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod process;
pub mod qemu;
pub mod testvm;
pub mod virtiofsd;

use std::path::PathBuf;

/// What went wrong, naming the object it went wrong with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("guest kernel directory {dir}: {what}")]
    Kernel { dir: PathBuf, what: String },
    #[error("kernel module {name}: not in {dep_file} (nor built in)")]
    ModuleNotFound { name: String, dep_file: PathBuf },
    #[error("kernel module dependencies in {dep_file}: {what}")]
    ModuleDeps { dep_file: PathBuf, what: String },
    #[error("initramfs entry {path}: {what}")]
    Initramfs { path: String, what: String },
    #[error("virtiofsd for {shared_dir}: {what}")]
    Virtiofsd { shared_dir: PathBuf, what: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
