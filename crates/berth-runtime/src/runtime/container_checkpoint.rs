//! Container checkpoint (KEP-2008, forensic checkpointing): the handler's
//! `checkpoint` (CRIU, the container left running) → an archive in the
//! layout CRI-O and containerd write and checkpointctl reads:
//!
//! | entry | content |
//! | --- | --- |
//! | `checkpoint/` | CRIU's images (plus the handler's own files) |
//! | `config.dump` | container metadata: id, name, image, runtime, times |
//! | `spec.dump` | the container's OCI spec |
//! | `rootfs-diff.tar` | the writable layer, whiteouts left out |
//! | `deleted.files` | JSON list of the paths those whiteouts delete |
//! | `stats-dump` | CRIU's dump statistics |

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ContainerRecord, ContainerState, Runtime, RuntimeError, remove_dir};
use crate::logs::format_rfc3339nano;

/// Archive entry names (checkpointctl's constants).
pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const CONFIG_DUMP: &str = "config.dump";
pub const SPEC_DUMP: &str = "spec.dump";
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
pub const DELETED_FILES: &str = "deleted.files";
pub const STATS_DUMP: &str = "stats-dump";

/// `config.dump`: the fields CRI-O writes (checkpointctl reads id, name,
/// rootfsImageName, runtime, createdTime).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointConfig {
    pub id: String,
    pub name: String,
    /// Config digest of the image.
    #[serde(default)]
    pub rootfs_image: String,
    /// Manifest digest of the image.
    #[serde(default)]
    pub rootfs_image_ref: String,
    /// The image's name in the store: what a restore runs on.
    #[serde(default)]
    pub rootfs_image_name: String,
    #[serde(default)]
    pub runtime: String,
    #[serde(default)]
    pub created_time: String,
    #[serde(default)]
    pub checkpointed_time: String,
}

impl Runtime {
    /// Checkpoints a running container into a tar archive at `location`;
    /// the container keeps running.
    pub fn checkpoint_container(&self, id: &str, location: &Path) -> Result<(), RuntimeError> {
        let _lock = self.lock_container(id)?;
        let rec = self.get_container(id)?;
        let status = self.container_status(&rec)?;
        if status.state != ContainerState::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {} ({}) is {:?}, not running: only a running container can be checkpointed",
                rec.config.name, rec.id, status.state
            )));
        }
        if !location.is_absolute() {
            return Err(RuntimeError::InvalidArgument(format!(
                "checkpoint location {} is not an absolute path",
                location.display()
            )));
        }
        let handler = self.handler(&rec.handler)?;
        if find_in_path("criu").is_none() {
            return Err(RuntimeError::FailedPrecondition(format!(
                "runtime handler {}: checkpointing needs CRIU, and no criu is in PATH",
                handler.name
            )));
        }
        let work = self
            .ctr_state_dir(id)
            .join(format!("checkpoint-{}", super::now_nanos()));
        let images = work.join(CHECKPOINT_DIR);
        let criu_work = work.join("work");
        for d in [&images, &criu_work] {
            std::fs::create_dir_all(d).map_err(RuntimeError::io("create directory", d))?;
        }
        let made = handler
            .checkpoint(id, &images, &criu_work)
            .map_err(RuntimeError::from)
            .and_then(|()| self.write_checkpoint_archive(&rec, &work, &criu_work, location));
        let _ = remove_dir(&work);
        made?;
        tracing::info!(container = %id, location = %location.display(), "container checkpointed");
        Ok(())
    }

    fn write_checkpoint_archive(
        &self,
        rec: &ContainerRecord,
        work: &Path,
        criu_work: &Path,
        location: &Path,
    ) -> Result<(), RuntimeError> {
        let config = CheckpointConfig {
            id: rec.id.clone(),
            name: rec.config.name.clone(),
            rootfs_image: rec.image_config.clone(),
            rootfs_image_ref: rec.image_id.clone(),
            rootfs_image_name: rec.image_name.clone(),
            runtime: rec.handler.clone(),
            created_time: format_rfc3339nano(nanos_to_time(rec.created_at)),
            checkpointed_time: crate::logs::now_rfc3339nano(),
        };
        let write = |name: &str, data: &[u8]| {
            let p = work.join(name);
            std::fs::write(&p, data).map_err(RuntimeError::io("write", &p))
        };
        write(
            CONFIG_DUMP,
            &serde_json::to_vec_pretty(&config).expect("config serializes"),
        )?;
        let spec = self.ctr_state_dir(&rec.id).join("config.json");
        let spec_data = std::fs::read(&spec).map_err(RuntimeError::io("read", &spec))?;
        write(SPEC_DUMP, &spec_data)?;
        let upper = self.ctr_root_dir(&rec.id).join("upper");
        let deleted = write_rootfs_diff(&upper, &work.join(ROOTFS_DIFF))?;
        write(
            DELETED_FILES,
            &serde_json::to_vec(&deleted).expect("strings serialize"),
        )?;
        let stats = criu_work.join(STATS_DUMP);
        if stats.exists() {
            std::fs::rename(&stats, work.join(STATS_DUMP)).map_err(RuntimeError::io("move", &stats))?;
        }

        // Written next to its place and renamed: kubelet never sees half an
        // archive at `location`.
        let dir = location.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(RuntimeError::io("create directory", dir))?;
        let mut tmp_name = location.as_os_str().to_owned();
        tmp_name.push(format!(".tmp-{}", super::now_nanos()));
        let tmp = PathBuf::from(tmp_name);
        let file = std::fs::File::create(&tmp).map_err(RuntimeError::io("create", &tmp))?;
        let written = archive_into(file, work)
            .and_then(|()| std::fs::rename(&tmp, location).map_err(RuntimeError::io("write", location)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// Tars the archive's entries that exist in `work` into `file`.
fn archive_into(file: std::fs::File, work: &Path) -> Result<(), RuntimeError> {
    {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        tar.follow_symlinks(false);
        let entries = [
            CHECKPOINT_DIR,
            CONFIG_DUMP,
            SPEC_DUMP,
            ROOTFS_DIFF,
            DELETED_FILES,
            STATS_DUMP,
        ];
        for name in entries {
            let p = work.join(name);
            if p.is_dir() {
                tar.append_dir_all(name, &p)
            } else if p.exists() {
                tar.append_path_with_name(&p, name)
            } else {
                continue;
            }
            .map_err(RuntimeError::io("archive", &p))?;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(RuntimeError::io("write the archive from", work))?;
    }
    Ok(())
}

/// Tars the writable layer `upper` into `dest`, leaving out overlay
/// whiteouts (0/0 character devices); returns the paths they delete,
/// relative to the root (as CRI-O's `deleted.files`).
fn write_rootfs_diff(upper: &Path, dest: &Path) -> Result<Vec<String>, RuntimeError> {
    let file = std::fs::File::create(dest).map_err(RuntimeError::io("create", dest))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    let mut deleted = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if rel.as_os_str().is_empty() && e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(RuntimeError::io("read directory", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(RuntimeError::io("read directory", &dir))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(RuntimeError::io("stat", &path))?;
            let name = rel.join(entry.file_name());
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                deleted.push(name.to_string_lossy().into_owned());
                continue;
            }
            tar.append_path_with_name(&path, &name)
                .map_err(RuntimeError::io("archive", &path))?;
            if meta.is_dir() {
                stack.push(name);
            }
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(RuntimeError::io("write", dest))?;
    deleted.sort();
    Ok(deleted)
}

fn nanos_to_time(nanos: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
