//! The container's mounts: containerd's defaults, the pod's files and the
//! request's mounts, parents before children.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount as OciMount;

use super::namespaces::Modes;
use super::{SpecError, SpecInput};
use crate::model::{Mount, MountKind, NsMode, Propagation};

/// The mounts of a container and the rootfs propagation its bind mounts need.
pub struct MountPlan {
    pub mounts: Vec<OciMount>,
    pub rootfs_propagation: Option<String>,
}

pub fn plan(
    input: &SpecInput,
    privileged: bool,
    readonly_rootfs: bool,
    modes: &Modes,
) -> Result<MountPlan, SpecError> {
    let requested = requested_mounts(&input.container.mounts)?;
    let mut extra = pod_file_mounts(input, readonly_rootfs);
    extra.push(shm_mount(input, modes));
    let taken = |dest: &Path| requested.iter().any(|m| m.destination() == dest);
    let mut all: Vec<OciMount> = default_mounts(privileged)
        .into_iter()
        .chain(extra)
        .filter(|m| !taken(m.destination()))
        .collect();
    let rootfs_propagation = rootfs_propagation(&input.container.mounts);
    all.extend(requested);
    // Stable: among equal depths the order above (defaults first) stays.
    all.sort_by_key(|m| depth(m.destination()));
    Ok(MountPlan {
        mounts: all,
        rootfs_propagation,
    })
}

/// `path` without `.` and duplicate slashes, if it is absolute and has no `..`.
pub fn clean_absolute(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut clean = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => clean.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(clean)
}

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> OciMount {
    let mut m = OciMount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn default_mounts(privileged: bool) -> Vec<OciMount> {
    let rw = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", Path::new("proc"), &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", rw],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", rw],
        ),
    ]
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf from the pod, read-only
/// when the rootfs is.
fn pod_file_mounts(input: &SpecInput, readonly_rootfs: bool) -> Vec<OciMount> {
    let rw = if readonly_rootfs { "ro" } else { "rw" };
    let files = input.pod_files;
    [
        ("/etc/hostname", &files.hostname),
        ("/etc/hosts", &files.hosts),
        ("/etc/resolv.conf", &files.resolv_conf),
    ]
    .into_iter()
    .filter_map(|(dest, src)| {
        src.as_ref()
            .map(|s| mount(dest, "bind", s, &["rbind", "rprivate", rw]))
    })
    .collect()
}

/// The pod's /dev/shm when it shares IPC, the host's with host IPC, else a
/// private 64 MiB tmpfs.
fn shm_mount(input: &SpecInput, modes: &Modes) -> OciMount {
    let bind_opts = ["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"];
    match (modes.ipc, &input.pod_files.shm) {
        (NsMode::Node, _) => mount("/dev/shm", "bind", Path::new("/dev/shm"), &bind_opts),
        (NsMode::Pod, Some(shm)) => mount("/dev/shm", "bind", shm, &bind_opts),
        _ => mount(
            "/dev/shm",
            "tmpfs",
            Path::new("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    }
}

fn requested_mounts(mounts: &[Mount]) -> Result<Vec<OciMount>, SpecError> {
    mounts.iter().map(requested_mount).collect()
}

fn requested_mount(m: &Mount) -> Result<OciMount, SpecError> {
    let dest = clean_absolute(&m.destination).ok_or_else(|| SpecError::BadMountDestination {
        destination: m.destination.clone(),
    })?;
    let dest = dest.to_string_lossy();
    let rw = if m.readonly { "ro" } else { "rw" };
    Ok(match &m.kind {
        MountKind::Bind(src) => {
            if !src.is_absolute() {
                return Err(SpecError::BadMountSource {
                    source_path: src.clone(),
                    destination: m.destination.clone(),
                });
            }
            let propagation = match m.propagation {
                Propagation::Private => "rprivate",
                Propagation::HostToContainer => "rslave",
                Propagation::Bidirectional => "rshared",
            };
            let mut opts = vec!["rbind", propagation, rw];
            if m.recursive_readonly {
                // `ro` alone leaves the submounts rbind brings along
                // writable; `rro` (mount_setattr AT_RECURSIVE) covers them.
                opts.push("rro");
            }
            mount(&dest, "bind", src, &opts)
        }
        MountKind::Tmpfs => {
            let size = format!("size={}", m.size);
            let mut opts = vec!["nosuid", "nodev", "mode=1777", rw];
            if m.size > 0 {
                opts.push(&size);
            }
            mount(&dest, "tmpfs", Path::new("tmpfs"), &opts)
        }
    })
}

/// Shared or slave bind mounts only propagate when the container's root
/// mount does too (containerd sets rootfsPropagation the same way).
fn rootfs_propagation(mounts: &[Mount]) -> Option<String> {
    let bind = |p| {
        mounts
            .iter()
            .any(|m| matches!(m.kind, MountKind::Bind(_)) && m.propagation == p)
    };
    if bind(Propagation::Bidirectional) {
        Some("rshared".into())
    } else if bind(Propagation::HostToContainer) {
        Some("rslave".into())
    } else {
        None
    }
}
