//! A container's root filesystem: an overlay of the image's layer snapshots
//! (each an independent lowerdir) and a fresh upper directory of its own.

use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {}: {what}: {source}", target.display())]
    Io {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rootfs {}: overlay options are {len} bytes, over the kernel's page-sized limit ({layers} layers)", target.display())]
    TooManyLayers {
        target: PathBuf,
        len: usize,
        layers: usize,
    },
    #[error("rootfs {}: the image has no layers", target.display())]
    NoLayers { target: PathBuf },
}

/// Mounts `layers` (bottom first, as the image lists them) with `upper` and
/// `work` (created if missing) at `target`.
pub fn mount(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), RootfsError> {
    let io = |what, source| RootfsError::Io {
        what,
        target: target.to_path_buf(),
        source,
    };
    if layers.is_empty() {
        return Err(RootfsError::NoLayers {
            target: target.to_path_buf(),
        });
    }
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(|e| io("create directory", e))?;
    }
    mount_overlay(layers, upper, work, target)
}

/// As [`mount`], for a container in a user namespace: each layer is
/// stacked through an idmapped mount of it, so the image's files, stored
/// as owned by 0, show as owned by the host ids of the pod's root (and so
/// as root's inside), with not a byte of the shared layers chowned.
///
/// Overlayfs itself cannot be idmapped (mount_setattr: EINVAL), and an
/// idmapped upper does not work either: overlayfs writes the upper layer
/// with its mounter's credentials, the host's root, whom the idmapping
/// cannot map (the overlay comes up read-only). So the upper layer is a
/// plain directory owned by the pod's root: what the container writes is
/// stored with the host ids it runs as, and copy-up takes the owner the
/// idmapped lower layer shows. The idmapped layer mounts are made under
/// `stage` and detached as soon as the overlay holds them.
pub fn mount_idmapped(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    stage: &Path,
    idmap: &crate::userns::Idmapper,
    root: (u32, u32),
) -> Result<(), RootfsError> {
    let io = |what, source| RootfsError::Io {
        what,
        target: target.to_path_buf(),
        source,
    };
    if layers.is_empty() {
        return Err(RootfsError::NoLayers {
            target: target.to_path_buf(),
        });
    }
    for d in [upper, work, target, stage] {
        std::fs::create_dir_all(d).map_err(|e| io("create directory", e))?;
    }
    std::os::unix::fs::chown(upper, Some(root.0), Some(root.1))
        .map_err(|e| io("chown the upper directory", e))?;
    let mut staged = Vec::with_capacity(layers.len());
    let res = (|| {
        for (i, layer) in layers.iter().enumerate() {
            let at = stage.join(i.to_string());
            std::fs::create_dir_all(&at).map_err(|e| io("create directory", e))?;
            idmap
                .bind(layer, &at)
                .map_err(|e| io("idmapped mount of a layer", e))?;
            staged.push(at);
        }
        mount_overlay(&staged, upper, work, target)
    })();
    // The overlay keeps its own references to the layers.
    // Never remove_dir_all: a mount that failed to go would take a layer's
    // files with it.
    for i in 0..layers.len() {
        let at = stage.join(i.to_string());
        let _ = unmount(&at);
        let _ = std::fs::remove_dir(&at);
    }
    let _ = std::fs::remove_dir(stage);
    res
}

fn mount_overlay(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), RootfsError> {
    let io = |what, source| RootfsError::Io {
        what,
        target: target.to_path_buf(),
        source,
    };
    // overlay lists lowerdirs top first.
    let mut opts = String::from("lowerdir=");
    for (i, l) in layers.iter().rev().enumerate() {
        if i > 0 {
            opts.push(':');
        }
        opts.push_str(&l.to_string_lossy());
    }
    opts.push_str(",upperdir=");
    opts.push_str(&upper.to_string_lossy());
    opts.push_str(",workdir=");
    opts.push_str(&work.to_string_lossy());
    // The index and redirect features only cost lookups here: the layers
    // are never renamed in place.
    opts.push_str(",index=off,redirect_dir=off");
    if opts.len() >= 4096 {
        return Err(RootfsError::TooManyLayers {
            target: target.to_path_buf(),
            len: opts.len(),
            layers: layers.len(),
        });
    }
    let data = std::ffi::CString::new(opts).map_err(|e| io("overlay options", std::io::Error::other(e)))?;
    rustix::mount::mount("overlay", target, "overlay", MountFlags::NODEV, data.as_c_str())
        .map_err(|e| io("mount overlay", e.into()))
}

/// Unmounts `target` if it is mounted; gone or never mounted is fine.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    match rustix::mount::unmount(target, UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(RootfsError::Io {
            what: "unmount",
            target: target.to_path_buf(),
            source: e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_stack_bottom_first_and_writes_land_in_upper() {
        let dir = tempfile::tempdir().unwrap();
        let (l1, l2) = (dir.path().join("1"), dir.path().join("2"));
        std::fs::create_dir_all(&l1).unwrap();
        std::fs::create_dir_all(&l2).unwrap();
        std::fs::write(l1.join("f"), "bottom").unwrap();
        std::fs::write(l2.join("f"), "top").unwrap();
        std::fs::write(l1.join("only-bottom"), "b").unwrap();
        let target = dir.path().join("rootfs");
        let upper = dir.path().join("upper");
        mount(
            &[l1.clone(), l2.clone()],
            &upper,
            &dir.path().join("work"),
            &target,
        )
        .unwrap();
        struct Guard(PathBuf);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = unmount(&self.0);
            }
        }
        let _g = Guard(target.clone());
        assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "top");
        assert_eq!(std::fs::read_to_string(target.join("only-bottom")).unwrap(), "b");
        std::fs::write(target.join("new"), "x").unwrap();
        assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "x");
        assert!(!l2.join("new").exists());
        unmount(&target).unwrap();
        assert!(!target.join("f").exists());
        unmount(&target).unwrap();
    }

    #[test]
    fn no_layers_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("r");
        let err = mount(&[], &dir.path().join("u"), &dir.path().join("w"), &t).unwrap_err();
        assert!(err.to_string().contains("no layers"), "{err}");
    }
}
