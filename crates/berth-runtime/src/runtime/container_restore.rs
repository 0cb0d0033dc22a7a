//! Container restore (KEP-2008, as CRI-O does it): a CreateContainer whose
//! image is the path of a checkpoint archive (see `container_checkpoint`)
//! creates a container that its start restores instead of starting fresh.
//!
//! - create: the archive names the image the checkpointed container ran on
//!   (`config.dump`) and its command (`spec.dump`); the container is made on
//!   that image as any other, then the archive is unpacked into its state
//!   directory and `rootfs-diff.tar` / `deleted.files` are applied to its
//!   writable layer. No monitor is started yet;
//! - start: the monitor runs the handler's `restore` in place of `create`
//!   (`MonitorConfig::restore`), so the restored init is its child, with its
//!   stdout/stderr on the monitor's pipes and its output in the CRI log.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use super::container_checkpoint::{
    CHECKPOINT_DIR, CONFIG_DUMP, CheckpointConfig, DELETED_FILES, ROOTFS_DIFF, SPEC_DUMP,
};
use super::{ContainerRecord, Runtime, RuntimeError, now_nanos};
use crate::model::ContainerConfig;
use crate::monitor;

/// Where a container's checkpoint archive is unpacked, in its state dir.
const RESTORE_DIR: &str = "restore";

/// The most `config.dump`, `spec.dump` or `deleted.files` may hold: they are
/// read whole into memory, and real ones are a few KiB.
const MAX_DUMP_SIZE: u64 = 16 << 20;

/// A checkpoint archive as CreateContainer found it.
#[derive(Clone, Debug)]
pub struct CheckpointArchive {
    pub path: PathBuf,
    pub config: CheckpointConfig,
    /// The checkpointed container's OCI spec (`spec.dump`).
    pub spec: oci_spec::runtime::Spec,
}

impl CheckpointArchive {
    /// The archive at `image`, if `image` is the absolute path of one: a
    /// regular file, a tar holding `config.dump`, `spec.dump` and
    /// `checkpoint/`. `None` for anything else (an image reference).
    pub fn open(image: &str) -> Result<Option<Self>, RuntimeError> {
        let path = Path::new(image);
        if !path.is_absolute() || !path.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(None);
        }
        let bad = |what: String| {
            RuntimeError::InvalidArgument(format!("checkpoint archive {}: {what}", path.display()))
        };
        let file = std::fs::File::open(path).map_err(RuntimeError::io("open", path))?;
        let mut tar = tar::Archive::new(std::io::BufReader::new(file));
        let (mut config, mut spec, mut images) = (None, None, false);
        let entries = match tar.entries() {
            Ok(e) => e,
            Err(_) => return Ok(None),
        };
        for entry in entries {
            // Not a tar: not an archive, whatever else the file is.
            let Ok(mut entry) = entry else {
                return Ok(None);
            };
            let name = entry.path().map(|p| p.into_owned()).unwrap_or_default();
            let name = name.strip_prefix("./").unwrap_or(&name).to_owned();
            if name.starts_with(CHECKPOINT_DIR) {
                images = true;
                continue;
            }
            let slot = if name == Path::new(CONFIG_DUMP) {
                &mut config
            } else if name == Path::new(SPEC_DUMP) {
                &mut spec
            } else {
                continue;
            };
            // Read into memory: an archive names what it likes as its size.
            let too_big = || bad(format!("{} is larger than {MAX_DUMP_SIZE} bytes", name.display()));
            if entry.size() > MAX_DUMP_SIZE {
                return Err(too_big());
            }
            let mut data = Vec::new();
            entry
                .by_ref()
                .take(MAX_DUMP_SIZE + 1)
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("read {}: {e}", name.display())))?;
            if data.len() as u64 > MAX_DUMP_SIZE {
                return Err(too_big());
            }
            *slot = Some(data);
        }
        let Some(config) = config.filter(|_| images) else {
            return Ok(None);
        };
        let config: CheckpointConfig =
            serde_json::from_slice(&config).map_err(|e| bad(format!("{CONFIG_DUMP}: {e}")))?;
        let spec = spec.ok_or_else(|| bad(format!("no {SPEC_DUMP}")))?;
        let spec = serde_json::from_slice(&spec).map_err(|e| bad(format!("{SPEC_DUMP}: {e}")))?;
        if config.rootfs_image_name.is_empty() {
            return Err(bad(format!("{CONFIG_DUMP} names no image (rootfsImageName)")));
        }
        Ok(Some(CheckpointArchive {
            path: path.to_owned(),
            config,
            spec,
        }))
    }

    /// The image the checkpointed container ran on, which the restored one
    /// runs on too.
    pub fn image_name(&self) -> &str {
        &self.config.rootfs_image_name
    }

    /// Fills in what the request leaves to the checkpoint: the image by its
    /// name rather than the archive's path, and the command the checkpointed
    /// process was started with (it is restored, not run; the spec still
    /// describes it).
    pub fn complete(&self, config: &mut ContainerConfig) {
        config.image = self.config.rootfs_image_name.clone();
        if config.command.is_empty()
            && config.args.is_empty()
            && let Some(args) = self.spec.process().as_ref().and_then(|p| p.args().clone())
        {
            config.command = args;
        }
    }
}

impl Runtime {
    /// Creates a container in a ready pod that [`Runtime::start_container`]
    /// restores from `archive`; `image` is the archive's image, resolved.
    pub fn create_container_from_checkpoint(
        &self,
        pod_id: &str,
        mut config: ContainerConfig,
        image: &super::ResolvedImage,
        archive: &CheckpointArchive,
    ) -> Result<ContainerRecord, RuntimeError> {
        archive.complete(&mut config);
        self.create_container_with(pod_id, config, image, Some(archive))
    }

    /// Where the CRIU images of a container created from a checkpoint are.
    pub(super) fn restore_images_dir(&self, id: &str) -> PathBuf {
        self.ctr_state_dir(id).join(RESTORE_DIR).join(CHECKPOINT_DIR)
    }

    /// Unpacks `archive` into the container's state directory and applies
    /// its file system changes to the mounted `rootfs`. Written through the
    /// overlay, they land in the container's writable layer as its own
    /// changes would (copy-ups, whiteouts).
    pub(super) fn unpack_checkpoint(
        &self,
        id: &str,
        archive: &CheckpointArchive,
        rootfs: &Path,
    ) -> Result<(), RuntimeError> {
        let dir = self.ctr_state_dir(id).join(RESTORE_DIR);
        std::fs::create_dir_all(&dir).map_err(RuntimeError::io("create directory", &dir))?;
        let file = std::fs::File::open(&archive.path).map_err(RuntimeError::io("open", &archive.path))?;
        tar::Archive::new(std::io::BufReader::new(file))
            .unpack(&dir)
            .map_err(RuntimeError::io("unpack", &archive.path))?;

        let diff = dir.join(ROOTFS_DIFF);
        if diff.exists() {
            let file = std::fs::File::open(&diff).map_err(RuntimeError::io("open", &diff))?;
            let mut tar = tar::Archive::new(std::io::BufReader::new(file));
            tar.set_preserve_permissions(true);
            tar.set_preserve_ownerships(true);
            tar.set_preserve_mtime(true);
            tar.set_unpack_xattrs(true);
            tar.set_overwrite(true);
            tar.unpack(rootfs).map_err(RuntimeError::io("apply", &diff))?;
        }
        let deleted = dir.join(DELETED_FILES);
        let list: Vec<String> = match std::fs::File::open(&deleted).and_then(|f| {
            let mut data = Vec::new();
            f.take(MAX_DUMP_SIZE + 1).read_to_end(&mut data).map(|_| data)
        }) {
            Ok(data) if data.len() as u64 > MAX_DUMP_SIZE => {
                return Err(RuntimeError::InvalidArgument(format!(
                    "checkpoint archive {}: {DELETED_FILES} is larger than {MAX_DUMP_SIZE} bytes",
                    archive.path.display()
                )));
            }
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                RuntimeError::InvalidArgument(format!(
                    "checkpoint archive {}: {DELETED_FILES}: {e}",
                    archive.path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(RuntimeError::io("read", &deleted)(e)),
        };
        delete_listed(rootfs, &list, &archive.path)
    }

    /// The start of a container created from a checkpoint: its monitor,
    /// started only now, runs the handler's restore; the restored process
    /// runs on from where it was checkpointed.
    pub(super) fn start_restoring(&self, mut rec: ContainerRecord) -> Result<(), RuntimeError> {
        let state_dir = self.ctr_state_dir(&rec.id);
        let mcfg = monitor::read_config(&state_dir)?;
        let _ = self.cgroups.prime_migration();
        let started = match monitor::spawn(&self.opts.monitor.0, &self.opts.monitor_args(), &state_dir, &mcfg)
        {
            Ok(s) => s,
            Err(e) => {
                rec.error = Some(e.to_string());
                self.save_container(&rec)?;
                return Err(e.into());
            }
        };
        rec.pid = Some(started.container_pid);
        rec.monitor_pid = Some(started.monitor_pid);
        rec.started_at = Some(now_nanos());
        rec.error = None;
        self.save_container(&rec)?;
        tracing::info!(container = %rec.id, pid = started.container_pid, "container restored");
        Ok(())
    }
}

/// Deletes the paths `list` (a checkpoint's `deleted.files`, from
/// `archive`) below `rootfs`. The list and the tree it is applied to both
/// come from the archive, which may plant a symlink (`a -> /`) for a later
/// entry to go through (`a/etc`): each entry's parent is resolved and must
/// lie inside the root, and its last component is removed without being
/// followed. Nothing runs in the container yet, so nothing swaps a path
/// between the check and the removal.
fn delete_listed(rootfs: &Path, list: &[String], archive: &Path) -> Result<(), RuntimeError> {
    let refuse = |name: &str, why: &str| {
        RuntimeError::InvalidArgument(format!(
            "checkpoint archive {}: {DELETED_FILES} holds {name:?}, {why}",
            archive.display()
        ))
    };
    let root = std::fs::canonicalize(rootfs).map_err(RuntimeError::io("resolve", rootfs))?;
    for name in list {
        let rel = Path::new(name.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(refuse(name, "not a path inside the root"));
        }
        let (Some(parent), Some(last)) = (rel.parent(), rel.file_name()) else {
            return Err(refuse(name, "not a path inside the root"));
        };
        let parent = match std::fs::canonicalize(root.join(parent)) {
            Ok(p) => p,
            // Already gone with its parent (an earlier entry, or never there).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(RuntimeError::io("resolve", &root.join(parent))(e)),
        };
        if !parent.starts_with(&root) {
            return Err(refuse(name, "a path through a link out of the root"));
        }
        let p = parent.join(last);
        // lstat: a symlink is removed itself, never what it points to;
        // remove_dir_all does not follow the links it meets either.
        let removed = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(e) => Err(e),
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::io("delete", &p)(e));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(path: &Path, entries: &[(&str, &[u8])]) {
        let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, *data).unwrap();
        }
        tar.finish().unwrap();
    }

    const CONFIG: &[u8] = br#"{"id":"c1","name":"counter","rootfsImageName":"reg/busybox:latest"}"#;
    const SPEC: &[u8] = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["sh","-c","count"]}}"#;

    #[test]
    fn an_archive_is_recognised_and_completes_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        tar_of(
            &p,
            &[
                ("checkpoint/inventory.img", b"x"),
                (CONFIG_DUMP, CONFIG),
                (SPEC_DUMP, SPEC),
            ],
        );
        let a = CheckpointArchive::open(p.to_str().unwrap()).unwrap().unwrap();
        assert_eq!(a.image_name(), "reg/busybox:latest");
        let mut config = ContainerConfig {
            name: "counter".into(),
            image: p.display().to_string(),
            ..Default::default()
        };
        a.complete(&mut config);
        assert_eq!(config.image, "reg/busybox:latest");
        assert_eq!(config.command, ["sh", "-c", "count"]);
        // A command of the request's own wins.
        let mut config = ContainerConfig {
            args: vec!["own".into()],
            ..Default::default()
        };
        a.complete(&mut config);
        assert!(config.command.is_empty());
    }

    #[test]
    fn anything_else_is_an_image_reference() {
        let dir = tempfile::tempdir().unwrap();
        let no_images = dir.path().join("b.tar");
        tar_of(&no_images, &[(CONFIG_DUMP, CONFIG), (SPEC_DUMP, SPEC)]);
        let not_tar = dir.path().join("c");
        std::fs::write(&not_tar, b"hello").unwrap();
        for image in [
            "busybox:latest",
            "relative/path.tar",
            dir.path().to_str().unwrap(),
            no_images.to_str().unwrap(),
            not_tar.to_str().unwrap(),
            "/no/such/file.tar",
        ] {
            assert!(CheckpointArchive::open(image).unwrap().is_none(), "{image}");
        }
    }

    #[test]
    fn an_archive_without_an_image_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        tar_of(
            &p,
            &[
                ("checkpoint/inventory.img", b"x"),
                (CONFIG_DUMP, br#"{"id":"c1","name":"n"}"#),
                (SPEC_DUMP, SPEC),
            ],
        );
        let e = CheckpointArchive::open(p.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("rootfsImageName"), "{e}");
    }

    #[test]
    fn deleted_files_never_go_through_a_link_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (rootfs, outside) = (dir.path().join("rootfs"), dir.path().join("host"));
        std::fs::create_dir_all(rootfs.join("etc/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"host").unwrap();
        std::fs::write(rootfs.join("etc/gone"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("a")).unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("etc/link")).unwrap();
        let archive = Path::new("/archive.tar");

        // Entries inside go; a symlink is removed, not what it points to.
        let list = [
            "/etc/gone".to_owned(),
            "etc/link".into(),
            "etc/sub".into(),
            "no/such".into(),
        ];
        delete_listed(&rootfs, &list, archive).unwrap();
        assert!(!rootfs.join("etc/gone").exists());
        assert!(rootfs.join("etc/link").symlink_metadata().is_err());
        assert!(!rootfs.join("etc/sub").exists());
        assert!(outside.join("victim").exists());

        for name in ["a/victim", "/a/victim", "etc/../a/victim", "a/../../host/victim"] {
            let e = delete_listed(&rootfs, &[name.to_owned()], archive).unwrap_err();
            assert!(e.to_string().contains(&format!("{name:?}")), "{name}: {e}");
            assert!(outside.join("victim").exists(), "{name}");
        }
    }

    #[test]
    fn an_oversized_dump_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        let big = vec![b' '; MAX_DUMP_SIZE as usize + 1];
        tar_of(
            &p,
            &[
                ("checkpoint/inventory.img", b"x"),
                (CONFIG_DUMP, CONFIG),
                (SPEC_DUMP, &big),
            ],
        );
        let e = CheckpointArchive::open(p.to_str().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains(SPEC_DUMP) && e.to_string().contains("larger"),
            "{e}"
        );
    }
}
