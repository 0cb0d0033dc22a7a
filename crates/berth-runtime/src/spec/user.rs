//! The container's uid, gid and supplementary groups, resolved in the
//! image's own /etc/passwd and /etc/group. Those files come from the image,
//! so they are opened beneath the rootfs (`RESOLVE_IN_ROOT`: symlinks and
//! `..` cannot leave it) and read with a size cap.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::User;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::{SpecError, SpecInput};
use crate::model::SupplementalGroupsPolicy;

/// No real passwd or group file is near this; a bigger one is hostile.
const MAX_FILE: u64 = 4 << 20;

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads the rootfs' account files at most once each, on first need.
struct Accounts<'a> {
    rootfs: &'a Path,
    root: Option<OwnedFd>,
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl<'a> Accounts<'a> {
    fn new(rootfs: &'a Path) -> Self {
        Accounts {
            rootfs,
            root: None,
            passwd: None,
            group: None,
        }
    }

    fn read(&mut self, rel: &str) -> Result<String, SpecError> {
        let err = |source: std::io::Error| SpecError::ReadRootfsFile {
            rootfs: self.rootfs.to_path_buf(),
            path: format!("/{rel}"),
            source,
        };
        let root = match self.root.take() {
            Some(fd) => fd,
            None => rustix::fs::open(
                self.rootfs,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(e.into()))?,
        };
        let text = read_in_root(&root, rel).map_err(err);
        self.root = Some(root);
        text
    }

    fn passwd(&mut self) -> Result<&[PasswdEntry], SpecError> {
        if self.passwd.is_none() {
            let text = self.read("etc/passwd")?;
            self.passwd = Some(parse_passwd(&text));
        }
        Ok(self.passwd.as_deref().unwrap_or_default())
    }

    fn group(&mut self) -> Result<&[GroupEntry], SpecError> {
        if self.group.is_none() {
            let text = self.read("etc/group")?;
            self.group = Some(parse_group(&text));
        }
        Ok(self.group.as_deref().unwrap_or_default())
    }
}

pub fn resolve(input: &SpecInput) -> Result<User, SpecError> {
    let sec = &input.container.security;
    let pod = input.pod;
    let mut acc = Accounts::new(input.rootfs);
    let (uid, mut gid) = if let Some(uid) = sec.run_as_user {
        (uid, None)
    } else if let Some(name) = sec.run_as_username.as_deref().filter(|n| !n.is_empty()) {
        let e = by_name(&mut acc, name)?;
        (e.0, Some(e.1))
    } else if let Some(uid) = pod.run_as_user {
        (uid, None)
    } else {
        image_user(&mut acc, input.image.user.as_deref().unwrap_or(""))?
    };
    if let Some(g) = sec.run_as_group.or(pod.run_as_group) {
        gid = Some(g);
    }
    let username = acc
        .passwd()?
        .iter()
        .find(|e| e.uid == uid)
        .map(|e| (e.name.clone(), e.gid));
    let gid = gid.or(username.as_ref().map(|u| u.1)).unwrap_or(0);
    let mut additional = vec![gid];
    // Strict: the image's /etc/group is not consulted at all, so the
    // process holds exactly the groups the pod's author wrote down.
    let merge = sec.supplemental_groups_policy == SupplementalGroupsPolicy::Merge;
    if let Some((name, _)) = username.as_ref().filter(|_| merge) {
        let member_of: Vec<u32> = acc
            .group()?
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect();
        additional.extend(member_of);
    }
    additional.extend(&sec.supplemental_groups);
    additional.extend(&pod.supplemental_groups);
    let mut seen = std::collections::HashSet::new();
    additional.retain(|g| seen.insert(*g));

    let mut user = User::default();
    user.set_uid(uid);
    user.set_gid(gid);
    user.set_additional_gids(Some(additional));
    Ok(user)
}

/// The image's USER: `name`, `uid`, `name:group`, `uid:gid` (either half
/// may be a name or a number); empty means root.
fn image_user(acc: &mut Accounts, spec: &str) -> Result<(u32, Option<u32>), SpecError> {
    if spec.is_empty() {
        return Ok((0, None));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(SpecError::BadUserSpec {
            spec: spec.to_string(),
        });
    }
    let (uid, gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, None),
        Err(_) => {
            let (uid, gid) = by_name(acc, user)?;
            (uid, Some(gid))
        }
    };
    let gid = match group {
        None => gid,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => acc
                .group()?
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| SpecError::UnknownGroup { group: g.to_string() })?,
        }),
    };
    Ok((uid, gid))
}

fn by_name(acc: &mut Accounts, name: &str) -> Result<(u32, u32), SpecError> {
    acc.passwd()?
        .iter()
        .find(|e| e.name == name)
        .map(|e| (e.uid, e.gid))
        .ok_or_else(|| SpecError::UnknownUser {
            user: name.to_string(),
        })
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect();
            (!name.is_empty() && !name.starts_with('#')).then(|| GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// Reads `rel` beneath the directory `root` as if it were `/`; a missing
/// file reads as empty. Non-blocking open: a FIFO planted there must not
/// hang us.
fn read_in_root(root: &OwnedFd, rel: &str) -> std::io::Result<String> {
    let fd: OwnedFd = match rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut text = String::with_capacity(usize::try_from(st.st_size).unwrap_or(0).min(1 << 16));
    std::fs::File::from(fd).take(MAX_FILE).read_to_string(&mut text)?;
    Ok(text)
}
