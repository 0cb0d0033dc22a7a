//! Kernel modules the guest loads before it can reach its root: their files
//! and load order from `modules.dep`, as modprobe would find them. The
//! initramfs has no modprobe database of its own; it `insmod`s a list.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// `modules.dep` and `modules.builtin` of one kernel.
#[derive(Debug)]
pub struct ModuleDeps {
    dep_file: PathBuf,
    /// normalized name → (path relative to the modules dir, its dependencies' names)
    modules: HashMap<String, (PathBuf, Vec<String>)>,
    builtin: HashSet<String>,
}

/// Module names use `-` and `_` interchangeably (`virtio-mmio` is
/// `virtio_mmio`); the file name without `.ko` (or `.ko.xz`, …) is the name.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

impl ModuleDeps {
    /// Reads `DIR/modules.dep` and, when present, `DIR/modules.builtin`.
    pub fn load(modules_dir: &Path) -> Result<ModuleDeps> {
        let dep_file = modules_dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep_file).map_err(|e| Error::io("reading", &dep_file, e))?;
        let builtin = std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
        ModuleDeps::parse(dep_file, &text, &builtin)
    }

    pub fn parse(dep_file: PathBuf, dep: &str, builtin: &str) -> Result<ModuleDeps> {
        let mut modules = HashMap::new();
        for (n, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                return Err(Error::ModuleDeps {
                    dep_file,
                    what: format!("line {}: no ':' in {line:?}", n + 1),
                });
            };
            let deps = deps.split_whitespace().map(name_of).collect();
            modules.insert(name_of(path), (PathBuf::from(path.trim()), deps));
        }
        let builtin = builtin.lines().filter(|l| !l.is_empty()).map(name_of).collect();
        Ok(ModuleDeps {
            dep_file,
            modules,
            builtin,
        })
    }

    /// The files to insmod for `names`, dependencies first, each once.
    /// Modules built into the kernel are skipped; an unknown name is an
    /// error, so a missing driver shows at build time, not as a guest that
    /// cannot find its root.
    pub fn load_order<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for name in names {
            self.visit(&normalize(name.as_ref()), &mut done, &mut Vec::new(), &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut HashSet<String>,
        path: &mut Vec<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        let Some((file, deps)) = self.modules.get(name) else {
            if self.builtin.contains(name) {
                done.insert(name.to_owned());
                return Ok(());
            }
            return Err(Error::ModuleNotFound {
                name: name.to_owned(),
                dep_file: self.dep_file.clone(),
            });
        };
        if path.iter().any(|p| p == name) {
            return Err(Error::ModuleDeps {
                dep_file: self.dep_file.clone(),
                what: format!("dependency cycle {} -> {name}", path.join(" -> ")),
            });
        }
        path.push(name.to_owned());
        for d in deps {
            self.visit(d, done, path, order)?;
        }
        path.pop();
        done.insert(name.to_owned());
        order.push(file.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/fuse/fuse.ko:
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";

    fn deps() -> ModuleDeps {
        ModuleDeps::parse("/m/modules.dep".into(), DEP, "kernel/fs/ext4/ext4.ko\n").unwrap()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let order = deps()
            .load_order(&["virtio-mmio", "virtiofs", "overlay", "ext4"])
            .unwrap();
        let names: Vec<_> = order.iter().map(|p| name_of(&p.to_string_lossy())).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_ring",
                "virtio_mmio",
                "fuse",
                "virtiofs",
                "overlay"
            ]
        );
        assert_eq!(order[4], PathBuf::from("kernel/fs/fuse/virtiofs.ko"));
    }

    #[test]
    fn an_unknown_module_is_named() {
        let e = deps().load_order(&["virtio_blk"]).unwrap_err().to_string();
        assert!(e.contains("virtio_blk") && e.contains("/m/modules.dep"), "{e}");
    }

    #[test]
    fn a_cycle_is_an_error_not_a_hang() {
        let d = ModuleDeps::parse("x".into(), "a.ko: b.ko\nb.ko: a.ko\n", "").unwrap();
        assert!(d.load_order(&["a"]).unwrap_err().to_string().contains("cycle"));
    }
}
