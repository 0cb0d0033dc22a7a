//! User namespaces for pods (Kubernetes' KEP-127, CRI userns mode POD):
//! the checks on kubelet's mappings, and idmapped mounts, which show files
//! owned by host ids `h..h+n` as owned by `0..n` inside the pod without
//! chowning a byte of them.
//!
//! The mounts are made here, on the host side, rather than by the OCI
//! runtime from `uidMappings` on each mount: libcontainer 0.7 refuses
//! idmapped mounts in a spec, and a mount made here serves every handler
//! the same way (the runtime bind-mounts it as it is; a bind of an
//! idmapped mount keeps its idmapping).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::model::{IdMapping, UserNamespace};

/// Why kubelet's user namespace request cannot be honoured.
pub fn validate(u: &UserNamespace) -> Result<(), String> {
    for (what, maps) in [("uid", &u.uids), ("gid", &u.gids)] {
        // containerd and CRI-O take exactly one mapping, which is what
        // kubelet sends: one contiguous range per pod.
        let [m] = maps.as_slice() else {
            return Err(format!(
                "user namespace: exactly one {what} mapping is supported, got {}",
                maps.len()
            ));
        };
        if m.container_id != 0 {
            return Err(format!(
                "user namespace: the {what} mapping must start at container id 0, not {}",
                m.container_id
            ));
        }
        if m.length == 0 || m.host_id.checked_add(m.length - 1).is_none() {
            return Err(format!(
                "user namespace: {what} mapping of {} ids from host id {} is empty or overflows",
                m.length, m.host_id
            ));
        }
        if m.host_id == 0 {
            return Err(format!(
                "user namespace: the {what} mapping would map the host's root (host id 0)"
            ));
        }
    }
    Ok(())
}

/// The text of a uid_map or gid_map file.
pub fn map_text(maps: &[IdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// The host uid and gid of root inside the namespace.
pub fn host_root(u: &UserNamespace) -> (u32, u32) {
    let root = |maps: &[IdMapping]| maps.iter().find(|m| m.container_id == 0).map_or(0, |m| m.host_id);
    (root(&u.uids), root(&u.gids))
}

/// As OCI `linux.uidMappings`/`gidMappings`.
pub fn to_oci(maps: &[IdMapping]) -> Vec<oci_spec::runtime::LinuxIdMapping> {
    maps.iter()
        .map(|m| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .expect("all fields set")
        })
        .collect()
}

/// Whether this kernel has idmapped mounts (mount_setattr, 5.12), which
/// a pod's user namespace needs for its rootfs and volumes.
pub fn supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // An invalid call: ENOSYS means no mount_setattr at all.
        // SAFETY: a null attribute pointer with size 0 is rejected, not read.
        let r = unsafe { libc::syscall(libc::SYS_mount_setattr, -1, c"".as_ptr(), 0, 0usize, 0usize) };
        !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
    })
}

/// struct mount_attr of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Makes idmapped mounts with the mappings of one user namespace.
pub struct Idmapper {
    userns: File,
}

impl Idmapper {
    /// `ns_file` is the pod's pinned user namespace.
    pub fn open(ns_file: &Path) -> io::Result<Idmapper> {
        Ok(Idmapper {
            userns: File::open(ns_file)?,
        })
    }

    /// Mounts `src` at `dst` (an existing directory, or file for a file)
    /// idmapped: what the filesystem stores as id `i` shows as the id `i`
    /// maps to on the host, so a file stored as 0 is owned by the pod's
    /// root. Submounts come along (and are idmapped too) where every one
    /// of them supports it; otherwise `src` alone is mounted.
    pub fn bind(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let tree = match self.idmapped_tree(src, true) {
            Ok(t) => t,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.idmapped_tree(src, false)?,
            Err(e) => return Err(e),
        };
        let dst_c = crate::namespaces::cpath(dst)?;
        // SAFETY: valid fd and NUL-terminated paths.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                dst_c.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A detached copy of the mount tree at `src`, idmapped.
    fn idmapped_tree(&self, src: &Path, recursive: bool) -> io::Result<OwnedFd> {
        let src_c = crate::namespaces::cpath(src)?;
        let mut flags = (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint;
        if recursive {
            flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        // SAFETY: NUL-terminated path; returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, src_c.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: open_tree returned a new fd that nothing else owns.
        let tree = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: self.userns.as_raw_fd() as u64,
        };
        let mut at = libc::AT_EMPTY_PATH;
        if recursive {
            at |= libc::AT_RECURSIVE;
        }
        // SAFETY: attr lives across the call and its size is given.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                at,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tree)
    }
}

/// A container in a user namespace sets up its mounts as the pod's root,
/// which is no one on the host: every directory on the way to its rootfs,
/// pod files and namespace pins must be searchable by others. berth's own
/// directories below `own` get that (0711-like: search, no listing);
/// another's directory above it that lacks it is an error naming it.
pub fn ensure_searchable(path: &Path, own: &Path) -> io::Result<()> {
    for dir in path.ancestors().skip(1) {
        let meta = std::fs::metadata(dir)?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if dir.starts_with(own) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode((mode | 0o011) & 0o7777))?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} (mode {:o}) is not searchable by others, which a pod's user namespace needs: make it at least 0711",
                    dir.display(),
                    mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(uids: Vec<IdMapping>) -> UserNamespace {
        UserNamespace {
            gids: uids.clone(),
            uids,
        }
    }

    fn m(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            container_id,
            host_id,
            length,
        }
    }

    #[test]
    fn kubelets_mapping_passes_and_others_are_refused_naming_why() {
        assert_eq!(validate(&ns(vec![m(0, 65536, 65536)])), Ok(()));
        let two = validate(&ns(vec![m(0, 1000, 10), m(10, 2000, 10)])).unwrap_err();
        assert!(two.contains("exactly one uid mapping"), "{two}");
        let not_zero = validate(&ns(vec![m(1, 1000, 10)])).unwrap_err();
        assert!(not_zero.contains("container id 0"), "{not_zero}");
        assert!(validate(&ns(vec![])).is_err());
        assert!(validate(&ns(vec![m(0, 1000, 0)])).is_err());
        assert!(validate(&ns(vec![m(0, u32::MAX, 2)])).is_err());
        assert!(
            validate(&ns(vec![m(0, 0, 65536)]))
                .unwrap_err()
                .contains("host's root")
        );
    }

    #[test]
    fn map_text_and_host_root() {
        let u = UserNamespace {
            uids: vec![m(0, 65536, 65536)],
            gids: vec![m(0, 131072, 65536)],
        };
        assert_eq!(map_text(&u.uids), "0 65536 65536\n");
        assert_eq!(host_root(&u), (65536, 131072));
        let oci = to_oci(&u.gids);
        assert_eq!(
            (oci[0].container_id(), oci[0].host_id(), oci[0].size()),
            (0, 131072, 65536)
        );
    }
}
