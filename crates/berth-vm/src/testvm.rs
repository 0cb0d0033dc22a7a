//! The test guest: a cgroup v2 system whose root is the host's own root
//! (read-only through virtio-fs, a tmpfs overlay on top), so test binaries
//! and tools run at the same paths as on the host. `berth-vmtest` boots it;
//! this module assembles its initramfs and reads its console markers.
//!
//! The guest reports through the serial console, the one channel it has
//! from its first instruction: `BERTH-VM-READY <nonce> <uptime>` when the
//! command starts, `BERTH-VM-EXIT <nonce> <status>` when it ended, and
//! `BERTH-VM-FAIL <nonce> <what>` when the guest could not be set up. The
//! nonce is fresh per boot so a command's own output cannot forge them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::initramfs::{Compression, Initramfs};
use crate::kernel::GuestKernel;
use crate::modules::ModuleDeps;
use crate::{Error, Result};

const INIT: &str = include_str!("guest/init.sh");
const STAGE2: &str = include_str!("guest/stage2.sh");

/// What the initramfs needs before it can reach the root: the virtio-mmio
/// transport (found through ACPI), virtio-fs, and overlayfs. Everything
/// else loads later with modprobe from the bind-mounted module tree.
pub const ROOT_MODULES: &[&str] = &["virtio_mmio", "virtiofs", "overlay"];

/// Enabled in the root's `cgroup.subtree_control`, as systemd does.
pub const CONTROLLERS: &str = "+cpu +cpuset +memory +pids +io";

/// The virtio-fs tag of the host's root.
pub const FS_TAG: &str = "berth-host";

#[derive(Debug, Clone)]
pub struct GuestSetup {
    pub kernel: GuestKernel,
    /// A static busybox (Debian's busybox-static).
    pub busybox: PathBuf,
    pub modules: Vec<String>,
    /// argv of the command to run in the guest.
    pub command: Vec<OsString>,
    pub workdir: PathBuf,
    /// Exported to the command; nothing else of the host's environment is.
    pub env: Vec<(String, String)>,
    pub nonce: String,
}

impl GuestSetup {
    pub fn initramfs(&self) -> Result<Initramfs> {
        let mut i = Initramfs::new();
        i.file_from("bin/busybox", 0o755, &self.busybox)?;
        i.file("init", 0o755, INIT.as_bytes())?;
        for d in ["proc", "sys", "dev", "tmp"] {
            i.dir(d, 0o755)?;
        }
        let modules_dir = self.kernel.modules_dir();
        let order = ModuleDeps::load(&modules_dir)?.load_order(&self.modules)?;
        let mut list = String::new();
        for rel in &order {
            let rel_s = rel.to_string_lossy();
            i.file_from(&format!("lib/modules/{rel_s}"), 0o644, &modules_dir.join(rel))?;
            list.push_str(&rel_s);
            list.push('\n');
        }
        i.file("etc/berth-vm/modules", 0o644, list.as_bytes())?;
        i.file("etc/berth-vm/stage2.sh", 0o755, STAGE2.as_bytes())?;
        i.file("etc/berth-vm/conf", 0o644, self.conf()?.as_bytes())?;
        i.file("etc/berth-vm/env", 0o644, self.env_file()?.as_bytes())?;
        i.file("etc/berth-vm/command", 0o644, self.command_file()?.as_bytes())?;
        Ok(i)
    }

    /// Builds and writes the initramfs.
    pub fn write_initramfs(&self, dest: &Path, compression: Compression) -> Result<()> {
        self.initramfs()?.write(dest, compression)
    }

    fn conf(&self) -> Result<String> {
        let kdir = utf8("guest kernel directory", self.kernel.root().as_os_str())?;
        let workdir = utf8("working directory", self.workdir.as_os_str())?;
        Ok(format!(
            "NONCE={}\nKVER={}\nKDIR={}\nWORKDIR={}\nFS_TAG={}\nCONTROLLERS={}\n",
            quote(&self.nonce),
            quote(self.kernel.version()),
            quote(kdir),
            quote(workdir),
            quote(FS_TAG),
            quote(CONTROLLERS),
        ))
    }

    fn env_file(&self) -> Result<String> {
        let mut s = String::new();
        for (k, v) in &self.env {
            if k.is_empty()
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || k.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(Error::Initramfs {
                    path: "etc/berth-vm/env".into(),
                    what: format!("{k:?} is not a shell variable name"),
                });
            }
            s.push_str(&format!("export {k}={}\n", quote(v)));
        }
        Ok(s)
    }

    fn command_file(&self) -> Result<String> {
        if self.command.is_empty() {
            return Err(Error::Initramfs {
                path: "etc/berth-vm/command".into(),
                what: "no command to run".into(),
            });
        }
        let mut s = String::from("set --");
        for a in &self.command {
            s.push(' ');
            s.push_str(&quote(utf8("command argument", a)?));
        }
        s.push('\n');
        Ok(s)
    }
}

fn utf8<'a>(what: &str, s: &'a std::ffi::OsStr) -> Result<&'a str> {
    s.to_str().ok_or_else(|| Error::Initramfs {
        path: s.to_string_lossy().into_owned(),
        what: format!("{what} is not UTF-8"),
    })
}

/// Single-quoted for sh: nothing inside is special but the quote itself.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A console line the guest wrote for the host.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// The command starts; the guest's uptime in seconds.
    Ready {
        uptime: String,
    },
    Exit {
        status: i32,
    },
    Fail {
        what: String,
    },
}

/// The marker on `line` if it carries this boot's nonce. Lines come from a
/// serial console: a trailing `\r` is ignored.
pub fn parse_marker(line: &str, nonce: &str) -> Option<Marker> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix(nonce)?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    match kind {
        "BERTH-VM-READY" => Some(Marker::Ready {
            uptime: rest.to_owned(),
        }),
        "BERTH-VM-EXIT" => rest.parse().ok().map(|status| Marker::Exit { status }),
        "BERTH-VM-FAIL" => Some(Marker::Fail {
            what: rest.to_owned(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_need_this_boots_nonce() {
        assert_eq!(
            parse_marker("BERTH-VM-EXIT ab12 3\r", "ab12"),
            Some(Marker::Exit { status: 3 })
        );
        assert_eq!(
            parse_marker("BERTH-VM-READY ab12 4.51", "ab12"),
            Some(Marker::Ready {
                uptime: "4.51".into()
            })
        );
        assert_eq!(
            parse_marker("BERTH-VM-FAIL ab12 insmod x", "ab12"),
            Some(Marker::Fail {
                what: "insmod x".into()
            })
        );
        assert_eq!(parse_marker("BERTH-VM-EXIT 0000 0", "ab12"), None);
        assert_eq!(parse_marker("test stats ... ok", "ab12"), None);
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME `x`"), "'$HOME `x`'");
    }
}
