//! The guest kernel: Debian's cloud kernel package unpacked into a directory
//! of berth's own (`scripts/install-deps.sh`), never installed as the host's
//! kernel. The directory holds `boot/vmlinuz-KV` and `lib/modules/KV` with a
//! `modules.dep` written by `depmod -b DIR KV` (the package ships none).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where `scripts/install-deps.sh` unpacks the guest kernel.
pub const DEFAULT_DIR: &str = "/usr/local/lib/berth/guest-kernel";

#[derive(Debug, Clone)]
pub struct GuestKernel {
    root: PathBuf,
    version: String,
}

impl GuestKernel {
    /// The kernel in `root`. With several versions unpacked there, the
    /// highest one that has its modules and a `modules.dep`.
    pub fn find(root: &Path) -> Result<GuestKernel> {
        let boot = root.join("boot");
        let err = |what: String| Error::Kernel {
            dir: root.to_owned(),
            what,
        };
        let entries = std::fs::read_dir(&boot).map_err(|e| err(format!("reading boot/: {e}")))?;
        let mut versions: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("vmlinuz-").map(str::to_owned)
            })
            .filter(|v| root.join("lib/modules").join(v).join("modules.dep").is_file())
            .collect();
        versions.sort_by(|a, b| version_cmp(a, b));
        let version = versions.pop().ok_or_else(|| {
            err("no boot/vmlinuz-KV with lib/modules/KV/modules.dep (run scripts/install-deps.sh)".into())
        })?;
        Ok(GuestKernel {
            root: root.to_owned(),
            version,
        })
    }

    /// The kernel `version` in `root`, checked to be there.
    pub fn at(root: &Path, version: &str) -> Result<GuestKernel> {
        let k = GuestKernel {
            root: root.to_owned(),
            version: version.to_owned(),
        };
        for p in [k.image(), k.modules_dir().join("modules.dep")] {
            if !p.is_file() {
                return Err(Error::Kernel {
                    dir: root.to_owned(),
                    what: format!("{} is missing", p.display()),
                });
            }
        }
        Ok(k)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The kernel release, e.g. `6.1.0-57-cloud-amd64`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The bzImage QEMU boots (`-kernel`).
    pub fn image(&self) -> PathBuf {
        self.root.join("boot").join(format!("vmlinuz-{}", self.version))
    }

    /// `lib/modules/KV`: the .ko files, `modules.dep`, `modules.builtin`.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.version)
    }
}

/// Orders kernel releases by their numeric parts first, so 6.1.0-100 sorts
/// after 6.1.0-57 (a plain string order would not).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<Result<u64, &str>> {
        s.split(['.', '-'])
            .map(|p| p.parse::<u64>().map_err(|_| p))
            .collect()
    }
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpacked(dir: &Path, versions: &[&str]) {
        for v in versions {
            std::fs::create_dir_all(dir.join("boot")).unwrap();
            std::fs::write(dir.join(format!("boot/vmlinuz-{v}")), b"").unwrap();
            let m = dir.join("lib/modules").join(v);
            std::fs::create_dir_all(&m).unwrap();
            std::fs::write(m.join("modules.dep"), b"").unwrap();
        }
    }

    #[test]
    fn finds_the_highest_complete_version() {
        let d = tempfile::tempdir().unwrap();
        unpacked(d.path(), &["6.1.0-57-cloud-amd64", "6.1.0-100-cloud-amd64"]);
        // a kernel without depmod's output does not count
        std::fs::write(d.path().join("boot/vmlinuz-6.2.0-1-cloud-amd64"), b"").unwrap();
        let k = GuestKernel::find(d.path()).unwrap();
        assert_eq!(k.version(), "6.1.0-100-cloud-amd64");
        assert_eq!(k.image(), d.path().join("boot/vmlinuz-6.1.0-100-cloud-amd64"));
        GuestKernel::at(d.path(), "6.1.0-57-cloud-amd64").unwrap();
    }

    #[test]
    fn an_empty_directory_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let e = GuestKernel::find(d.path()).unwrap_err().to_string();
        assert!(e.contains(&d.path().display().to_string()), "{e}");
        let e = GuestKernel::at(d.path(), "6.1.0-57").unwrap_err().to_string();
        assert!(e.contains("vmlinuz-6.1.0-57 is missing"), "{e}");
    }
}
