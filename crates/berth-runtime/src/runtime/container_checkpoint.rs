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

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
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
///
/// The container may still run (it is left running) and rename, replace or
/// symlink anything in its layer while this walks it, so no path below
/// `upper` is ever resolved: each entry is opened `O_PATH|O_NOFOLLOW`
/// relative to its directory's fd, described from that fd, and only a
/// regular file or a directory is reopened (through /proc/self/fd, the
/// same inode) to be read. A symlink is archived as a symlink, a file
/// swapped for one as what the walk found, never the link's target.
fn write_rootfs_diff(upper: &Path, dest: &Path) -> Result<Vec<String>, RuntimeError> {
    let file = std::fs::File::create(dest).map_err(RuntimeError::io("create", dest))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut deleted = Vec::new();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(upper, flags, Mode::empty()) {
        Ok(root) => archive_dir(&mut tar, upper, root, Path::new(""), &mut deleted)?,
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(RuntimeError::io("open", upper)(e.into())),
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(RuntimeError::io("write", dest))?;
    deleted.sort();
    Ok(deleted)
}

/// Archives the entries of the directory open at `dir` (`rel` below
/// `upper`, which only names it in errors), depth first: one fd per level.
fn archive_dir<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    upper: &Path,
    dir: OwnedFd,
    rel: &Path,
    deleted: &mut Vec<String>,
) -> Result<(), RuntimeError> {
    let here = upper.join(rel);
    let entries =
        rustix::fs::Dir::read_from(&dir).map_err(|e| RuntimeError::io("read directory", &here)(e.into()))?;
    for entry in entries {
        let entry = entry.map_err(|e| RuntimeError::io("read directory", &here)(e.into()))?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let name = rel.join(std::ffi::OsStr::from_bytes(bytes));
        let path = upper.join(&name);
        let io = |op| move |e: rustix::io::Errno| RuntimeError::io(op, &path)(e.into());
        let fd = rustix::fs::openat(
            &dir,
            entry.file_name(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match fd {
            Ok(fd) => fd,
            // Gone since the listing: the container's change, not an error.
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(io("open")(e)),
        };
        let found = std::fs::File::from(fd);
        let meta = found
            .metadata()
            .map_err(RuntimeError::io("stat", &upper.join(&name)))?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            deleted.push(name.to_string_lossy().into_owned());
            continue;
        }
        if kind.is_socket() {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let path = upper.join(&name);
        let archived = if kind.is_symlink() {
            let target = rustix::fs::readlinkat(&found, c"", Vec::new()).map_err(io("read link"))?;
            let target = std::ffi::OsStr::from_bytes(target.as_bytes());
            tar.append_link(&mut header, &name, target)
        } else if kind.is_file() {
            // Exactly the size the header announces, however the file
            // changes while it is read.
            let size = meta.len();
            let data = reopen(&found, OFlags::RDONLY).map_err(io("open"))?;
            let data = data.take(size).chain(std::io::repeat(0)).take(size);
            tar.append_data(&mut header, &name, data)
        } else if kind.is_dir() {
            let sub = reopen(&found, OFlags::RDONLY | OFlags::DIRECTORY).map_err(io("open"))?;
            tar.append_data(&mut header, &name, std::io::empty())
                .map_err(RuntimeError::io("archive", &path))?;
            archive_dir(tar, upper, sub.into(), &name, deleted)?;
            continue;
        } else {
            // Fifos and device nodes: their header is all there is.
            tar.append_data(&mut header, &name, std::io::empty())
        };
        archived.map_err(RuntimeError::io("archive", &path))?;
    }
    Ok(())
}

/// Opens the inode `found` (an `O_PATH` fd) is, for reading.
fn reopen(found: &std::fs::File, flags: OFlags) -> Result<std::fs::File, rustix::io::Errno> {
    let proc_path = format!("/proc/self/fd/{}", found.as_raw_fd());
    rustix::fs::open(proc_path.as_str(), flags | OFlags::CLOEXEC, Mode::empty()).map(std::fs::File::from)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_diff_archives_links_as_links_and_nothing_they_point_to() {
        let dir = tempfile::tempdir().unwrap();
        let (upper, host) = (dir.path().join("upper"), dir.path().join("host"));
        std::fs::create_dir_all(upper.join("var/lib")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("shadow"), b"secret").unwrap();
        std::fs::write(upper.join("var/lib/data"), b"mine").unwrap();
        // What a directory swapped for a link looks like to the walk.
        std::os::unix::fs::symlink(&host, upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(host.join("shadow"), upper.join("var/passwd")).unwrap();
        let whiteout = rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            0,
        );
        let dest = dir.path().join("diff.tar");
        let deleted = write_rootfs_diff(&upper, &dest).unwrap();
        if whiteout.is_ok() {
            assert_eq!(deleted, ["gone"]);
        }

        let mut seen = Vec::new();
        let mut tar = tar::Archive::new(std::fs::File::open(&dest).unwrap());
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            assert!(!data.contains("secret"), "{name}");
            seen.push((name, e.header().entry_type(), link, data));
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        use tar::EntryType::{Directory, Regular, Symlink};
        let host_str = host.display().to_string();
        let shadow = host.join("shadow").display().to_string();
        assert_eq!(
            seen,
            [
                ("etc".to_owned(), Symlink, Some(host_str), String::new()),
                ("var".into(), Directory, None, String::new()),
                ("var/lib".into(), Directory, None, String::new()),
                ("var/lib/data".into(), Regular, None, "mine".into()),
                ("var/passwd".into(), Symlink, Some(shadow), String::new()),
            ]
        );
    }

    #[test]
    fn a_missing_upper_is_an_empty_diff() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("diff.tar");
        assert!(
            write_rootfs_diff(&dir.path().join("none"), &dest)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            tar::Archive::new(std::fs::File::open(&dest).unwrap())
                .entries()
                .unwrap()
                .count(),
            0
        );
    }
}
