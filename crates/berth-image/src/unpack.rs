//! Layer applier: unpacks one uncompressed OCI/Docker layer tar stream into an empty
//! snapshot directory that later serves as one overlayfs lowerdir.
//!
//! The stream is hostile input. Entry names are read as if the snapshot root were `/`
//! (as containerd does): a leading `/` or `./` is dropped and `..` is cleaned lexically
//! without ever climbing above the root, so `../../etc/x` and `/etc/x` both mean
//! `<root>/etc/x`. Parent directories are resolved with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink met on the way is followed inside the root only; the final component is
//! created or changed with `*at` calls on that parent and is never followed.
//! Nothing is ever renamed, so every directory fd held here stays inside the root.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

const COPY_BUF_SIZE: usize = 128 * 1024;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const XATTR_PAX_PREFIX: &[u8] = b"SCHILY.xattr.";
// NO_XDEV: a fresh snapshot holds no mounts, so crossing one means something is wrong.
const RESOLVE_BENEATH_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries applied; PAX global headers and skipped aufs metadata are not counted.
    pub entries: u64,
    /// Regular file bytes written.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("opening layer root {}: {source}", root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading layer tar stream: {0}")]
    Stream(#[source] io::Error),
    #[error("layer entry {entry:?}: {reason}")]
    Invalid { entry: String, reason: String },
    #[error("layer entry {entry:?}: hardlink target {target:?} is not present in the layer")]
    MissingLinkTarget { entry: String, target: String },
    #[error("layer entry {entry:?}: {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Applies the tar stream to `root` (an existing, empty directory). Reads `tar` to EOF
/// (including any padding after the end-of-archive blocks) so a caller hashing the stream
/// sees every byte.
pub fn apply_layer<R: Read>(tar: &mut R, root: &Path) -> Result<UnpackStats, UnpackError> {
    let root_fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Root {
        root: root.to_owned(),
        source: e.into(),
    })?;
    let root_fd = root_fd.as_fd();
    let mut applier = Applier::new();
    let mut archive = tar::Archive::new(&mut *tar);
    for entry in archive.entries().map_err(UnpackError::Stream)? {
        let mut entry = entry.map_err(UnpackError::Stream)?;
        applier.apply(root_fd, &mut entry)?;
    }
    applier.finish_dirs(root_fd)?;
    io::copy(archive.into_inner(), &mut io::sink()).map_err(UnpackError::Stream)?;
    Ok(applier.stats)
}

struct Applier {
    raw_path: Vec<u8>,
    path: Vec<u8>,
    target: Vec<u8>,
    xattrs: Vec<Xattr>,
    buf: Box<[u8]>,
    parents: ParentCache,
    /// Directory mtimes are set last: creating children changes them.
    dirs: Vec<(Box<[u8]>, Timespec)>,
    stats: UnpackStats,
}

/// Name and value, from a PAX `SCHILY.xattr.` record.
type Xattr = (Vec<u8>, Vec<u8>);

struct Meta {
    mode: Mode,
    uid: Uid,
    gid: Gid,
    times: Timestamps,
}

impl Applier {
    fn new() -> Self {
        Self {
            raw_path: Vec::new(),
            path: Vec::new(),
            target: Vec::new(),
            xattrs: Vec::new(),
            buf: vec![0; COPY_BUF_SIZE].into_boxed_slice(),
            parents: ParentCache::default(),
            dirs: Vec::new(),
            stats: UnpackStats::default(),
        }
    }

    fn apply<R: Read>(
        &mut self,
        root: BorrowedFd<'_>,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let Self {
            raw_path,
            path,
            target,
            xattrs,
            buf,
            parents,
            dirs,
            stats,
        } = self;
        raw_path.clear();
        raw_path.extend_from_slice(&entry.path_bytes());
        let cx = Cx(raw_path);
        // Pre-POSIX tars mark directories only by a trailing slash (Go and tar-rs agree).
        let kind = match kind {
            EntryType::Regular if raw_path.ends_with(b"/") => EntryType::Directory,
            kind => kind,
        };

        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => {}
            other => return Err(cx.invalid(format!("unsupported entry type {other:?}"))),
        }
        if raw_path.contains(&0) {
            return Err(cx.invalid("name contains a NUL byte"));
        }
        clean_path(raw_path, path);
        let meta = read_meta(entry, xattrs, &cx)?;

        if path.is_empty() {
            if kind != EntryType::Directory {
                return Err(cx.invalid("names the layer root but is not a directory"));
            }
            rfs::fchown(root, Some(meta.uid), Some(meta.gid)).map_err(cx.io("changing owner"))?;
            rfs::fchmod(root, meta.mode).map_err(cx.io("changing mode"))?;
            set_xattrs(XattrOn::Fd(root), xattrs, true, &cx)?;
            dirs.push((Box::default(), meta.times.last_modification));
            stats.entries += 1;
            return Ok(());
        }

        let whiteout = classify_whiteout(path).map_err(|reason| cx.invalid(reason))?;
        if let Whiteout::AufsMeta = whiteout {
            tracing::debug!(entry = %cx.name(), "skipping aufs metadata entry");
            return Ok(());
        }
        let (parent, name) = split_parent(path);
        let parent_fd = parents
            .take(root, parent)
            .map_err(cx.io("resolving parent directory"))?;
        let mut at = At {
            dir: parent_fd.as_ref().map_or(root, |fd| fd.as_fd()),
            name,
            removed: &mut parents.removed,
        };
        let meta = &meta;
        match whiteout {
            Whiteout::AufsMeta => unreachable!("returned above"),
            Whiteout::Opaque => rfs::setxattr(
                proc_fd_path(at.dir, None),
                OVERLAY_OPAQUE_XATTR,
                b"y",
                XattrFlags::empty(),
            )
            .map_err(cx.io("setting the opaque xattr on the parent directory"))?,
            Whiteout::Remove(hidden) => {
                at.name = hidden;
                make_whiteout(&mut at, meta).map_err(cx.io("creating whiteout"))?;
            }
            Whiteout::Plain => match kind {
                EntryType::Directory => {
                    make_dir(&mut at, meta, xattrs, &cx)?;
                    dirs.push((path.as_slice().into(), meta.times.last_modification));
                }
                EntryType::Regular | EntryType::Continuous => {
                    stats.bytes += write_file(&mut at, entry, buf, meta, xattrs, &cx)?;
                }
                EntryType::Symlink => make_symlink(&mut at, entry, meta, xattrs, &cx)?,
                EntryType::Link => make_hardlink(root, &mut at, entry, path, target, &cx)?,
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    make_node(&mut at, kind, entry.header(), meta, xattrs, &cx)?;
                }
                _ => unreachable!("entry types are checked above"),
            },
        }
        parents.put(parent, parent_fd);
        stats.entries += 1;
        Ok(())
    }

    fn finish_dirs(&mut self, root: BorrowedFd<'_>) -> Result<(), UnpackError> {
        for (path, mtime) in self.dirs.drain(..) {
            let times = Timestamps {
                last_access: mtime,
                last_modification: mtime,
            };
            let result = if path.is_empty() {
                rfs::futimens(root, &times)
            } else {
                // O_NOFOLLOW|O_DIRECTORY: a later entry may have replaced it; its own times stand.
                match open_in_root(root, &path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
                    Ok(fd) => rfs::futimens(&fd, &times),
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                    Err(e) => Err(e),
                }
            };
            result.map_err(Cx(&path).io("setting directory times"))?;
        }
        Ok(())
    }
}

/// Where an entry goes: a name in its resolved parent directory.
struct At<'a> {
    dir: BorrowedFd<'a>,
    name: &'a [u8],
    /// Set when something already there was removed (see [`ParentCache`]).
    removed: &'a mut bool,
}

impl At<'_> {
    /// Runs `create`; if the name is taken, removes whatever is there and runs it again.
    fn create_replacing<T>(&mut self, mut create: impl FnMut() -> Result<T, Errno>) -> io::Result<T> {
        match create() {
            Err(Errno::EXIST) => {
                *self.removed |= remove_all(self.dir, self.name)?;
                Ok(create()?)
            }
            result => Ok(result?),
        }
    }

    /// Owner, then mode (chown clears setuid/setgid), on a name just created here.
    /// Symlinks have no mode of their own on Linux (`chmod_too` false).
    fn chown_chmod(&self, meta: &Meta, chmod_too: bool, cx: &Cx<'_>) -> Result<(), UnpackError> {
        rfs::chownat(
            self.dir,
            self.name,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(cx.io("changing owner"))?;
        if chmod_too {
            // fchmodat follows symlinks, but the name was just created (or checked) as a non-symlink.
            rfs::chmodat(self.dir, self.name, meta.mode, AtFlags::empty()).map_err(cx.io("changing mode"))?;
        }
        Ok(())
    }

    fn set_times(&self, meta: &Meta, cx: &Cx<'_>) -> Result<(), UnpackError> {
        rfs::utimensat(self.dir, self.name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(cx.io("setting times"))
    }
}

/// An overlayfs whiteout: a 0/0 character device replacing anything of that name.
fn make_whiteout(at: &mut At<'_>, meta: &Meta) -> io::Result<()> {
    *at.removed |= remove_all(at.dir, at.name)?;
    rfs::mknodat(at.dir, at.name, FileType::CharacterDevice, Mode::empty(), 0)?;
    rfs::chownat(
        at.dir,
        at.name,
        Some(meta.uid),
        Some(meta.gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Creates the directory, or merges into one already there. Its mtime is the caller's.
fn make_dir(at: &mut At<'_>, meta: &Meta, xattrs: &[Xattr], cx: &Cx<'_>) -> Result<(), UnpackError> {
    match rfs::mkdirat(at.dir, at.name, Mode::RWXU) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            let st = rfs::statat(at.dir, at.name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(cx.io("inspecting existing path"))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                *at.removed |= remove_all(at.dir, at.name).map_err(cx.io("removing existing path"))?;
                rfs::mkdirat(at.dir, at.name, Mode::RWXU).map_err(cx.io("creating directory"))?;
            }
        }
        Err(e) => return Err(cx.io("creating directory")(e)),
    }
    at.chown_chmod(meta, true, cx)?;
    set_xattrs(XattrOn::At(at.dir, at.name), xattrs, true, cx)
}

/// Returns the bytes written.
fn write_file<R: Read>(
    at: &mut At<'_>,
    entry: &mut tar::Entry<'_, R>,
    buf: &mut [u8],
    meta: &Meta,
    xattrs: &[Xattr],
    cx: &Cx<'_>,
) -> Result<u64, UnpackError> {
    let (dir, name) = (at.dir, at.name);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = at
        .create_replacing(|| rfs::openat(dir, name, flags, Mode::RUSR | Mode::WUSR))
        .map_err(cx.io("creating file"))?;
    let mut file = File::from(fd);
    let size = entry.size();
    let mut written = 0u64;
    loop {
        let n = entry.read(buf).map_err(cx.io("reading file data"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(cx.io("writing file"))?;
        written += n as u64;
    }
    if written != size {
        return Err(cx.io("reading file data")(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("stream ended after {written} of {size} bytes"),
        )));
    }
    // chown clears setuid/setgid and file capabilities: mode and xattrs after it.
    rfs::fchown(&file, Some(meta.uid), Some(meta.gid)).map_err(cx.io("changing owner"))?;
    rfs::fchmod(&file, meta.mode).map_err(cx.io("changing mode"))?;
    set_xattrs(XattrOn::Fd(file.as_fd()), xattrs, true, cx)?;
    rfs::futimens(&file, &meta.times).map_err(cx.io("setting times"))?;
    Ok(written)
}

/// The target is stored verbatim and never followed here.
fn make_symlink<R: Read>(
    at: &mut At<'_>,
    entry: &tar::Entry<'_, R>,
    meta: &Meta,
    xattrs: &[Xattr],
    cx: &Cx<'_>,
) -> Result<(), UnpackError> {
    let link = entry
        .link_name_bytes()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| cx.invalid("symlink has no target"))?;
    if link.contains(&0) {
        return Err(cx.invalid("symlink target contains a NUL byte"));
    }
    let (dir, name) = (at.dir, at.name);
    at.create_replacing(|| rfs::symlinkat(&*link, dir, name))
        .map_err(cx.io("creating symlink"))?;
    at.chown_chmod(meta, false, cx)?;
    set_xattrs(XattrOn::At(dir, name), xattrs, false, cx)?;
    at.set_times(meta, cx)
}

/// The target is cleaned like an entry name and resolved beneath the root without
/// following its last component, so only an inode of this layer can be linked. The
/// link shares the target's metadata: the entry's own is not applied.
fn make_hardlink<R: Read>(
    root: BorrowedFd<'_>,
    at: &mut At<'_>,
    entry: &tar::Entry<'_, R>,
    path: &[u8],
    target: &mut Vec<u8>,
    cx: &Cx<'_>,
) -> Result<(), UnpackError> {
    let link = entry
        .link_name_bytes()
        .ok_or_else(|| cx.invalid("hardlink has no target"))?;
    if link.contains(&0) {
        return Err(cx.invalid("hardlink target contains a NUL byte"));
    }
    clean_path(&link, target);
    let missing = || UnpackError::MissingLinkTarget {
        entry: cx.name(),
        target: String::from_utf8_lossy(&link).into_owned(),
    };
    if target.is_empty() {
        return Err(cx.invalid("hardlink to the layer root"));
    }
    let (dir, name) = (at.dir, at.name);
    if target == path {
        // A link to itself changes nothing, provided the file is there.
        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|_| missing())?;
        return Ok(());
    }
    let (target_parent, target_name) = split_parent(target);
    let target_dir_fd = match target_parent {
        [] => None,
        _ => match open_in_root(root, target_parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => Some(fd),
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(cx.io("resolving hardlink target directory")(e)),
        },
    };
    let target_dir = target_dir_fd.as_ref().map_or(root, |fd| fd.as_fd());
    // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
    match at.create_replacing(|| rfs::linkat(target_dir, target_name, dir, name, AtFlags::empty())) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing()),
        Err(e) => Err(cx.io("creating hardlink")(e)),
    }
}

/// Character and block devices and fifos.
fn make_node(
    at: &mut At<'_>,
    kind: EntryType,
    header: &tar::Header,
    meta: &Meta,
    xattrs: &[Xattr],
    cx: &Cx<'_>,
) -> Result<(), UnpackError> {
    let file_type = match kind {
        EntryType::Char => FileType::CharacterDevice,
        EntryType::Block => FileType::BlockDevice,
        _ => FileType::Fifo,
    };
    let dev = if file_type == FileType::Fifo {
        0
    } else {
        let major = header.device_major().map_err(cx.io("reading device major"))?;
        let minor = header.device_minor().map_err(cx.io("reading device minor"))?;
        rfs::makedev(major.unwrap_or(0), minor.unwrap_or(0))
    };
    let (dir, name) = (at.dir, at.name);
    at.create_replacing(|| rfs::mknodat(dir, name, file_type, Mode::RUSR | Mode::WUSR, dev))
        .map_err(cx.io("creating special file"))?;
    at.chown_chmod(meta, true, cx)?;
    set_xattrs(XattrOn::At(dir, name), xattrs, false, cx)?;
    at.set_times(meta, cx)
}

/// The entry being applied, for error messages.
struct Cx<'a>(&'a [u8]);

impl Cx<'_> {
    fn name(&self) -> String {
        String::from_utf8_lossy(self.0).into_owned()
    }

    fn invalid(&self, reason: impl Into<String>) -> UnpackError {
        UnpackError::Invalid {
            entry: self.name(),
            reason: reason.into(),
        }
    }

    fn io<E: Into<io::Error>>(&self, op: &'static str) -> impl FnOnce(E) -> UnpackError + '_ {
        move |e| UnpackError::Io {
            entry: self.name(),
            op,
            source: e.into(),
        }
    }
}

fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    xattrs: &mut Vec<Xattr>,
    cx: &Cx<'_>,
) -> Result<Meta, UnpackError> {
    let header = entry.header();
    let old = header.as_old();
    // Go's archive/tar (so Docker and containerd) reads a blank numeric field as 0.
    let field = |name: &str, raw: &[u8], v: io::Result<u64>| match v {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(cx.invalid(format!("bad {name} field: {e}"))),
        Ok(v) => Ok(v),
    };
    let mode = field("mode", &old.mode, header.mode().map(u64::from))? as u32 & 0o7777;
    // u32::MAX is chown's "leave unchanged", not an id.
    let id = |name: &str, v: u64| match u32::try_from(v) {
        Ok(v) if v != u32::MAX => Ok(v),
        _ => Err(cx.invalid(format!("{name} {v} is out of range"))),
    };
    let uid = id("uid", field("uid", &old.uid, header.uid())?)?;
    let gid = id("gid", field("gid", &old.gid, header.gid())?)?;
    let mtime = field("mtime", &old.mtime, header.mtime())?;
    let mut mtime = Timespec {
        tv_sec: i64::try_from(mtime).map_err(|_| cx.invalid("mtime is out of range"))?,
        tv_nsec: 0,
    };
    xattrs.clear();
    if let Some(pax) = entry.pax_extensions().map_err(cx.io("reading PAX header"))? {
        for ext in pax {
            let ext = ext.map_err(|e| cx.invalid(format!("malformed PAX record: {e}")))?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                if let Some(t) = parse_pax_time(ext.value_bytes()) {
                    mtime = t;
                }
            } else if key.starts_with(b"GNU.sparse.") {
                return Err(cx.invalid("sparse files are not supported"));
            }
        }
    }
    Ok(Meta {
        mode: Mode::from_raw_mode(mode),
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        times: Timestamps {
            last_access: mtime,
            last_modification: mtime,
        },
    })
}

/// PAX times are decimal seconds with an optional fraction, e.g. `1700000000.123456789`.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let value = std::str::from_utf8(value).ok()?;
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let negative = secs.starts_with('-');
    let secs: i64 = secs.parse().ok()?;
    if frac.is_empty() {
        return Some(Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        });
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let mut nsec: i64 = digits.parse().ok()?;
    for _ in digits.len()..9 {
        nsec *= 10;
    }
    if negative && nsec > 0 {
        Some(Timespec {
            tv_sec: secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        })
    } else {
        Some(Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        })
    }
}

/// Cleans `raw` into `out` as a path relative to the root: no empty, `.` or `..`
/// components, `..` at the root stays at the root.
fn clean_path(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                let keep = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(keep);
            }
            name => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

enum Whiteout<'a> {
    Plain,
    Opaque,
    /// Hide this name of the parent directory.
    Remove(&'a [u8]),
    /// aufs bookkeeping (`.wh..wh.plnk`, …): Docker skips it, so do we.
    AufsMeta,
}

fn classify_whiteout(path: &[u8]) -> Result<Whiteout<'_>, &'static str> {
    let mut components = path.split(|&b| b == b'/').peekable();
    while let Some(component) = components.next() {
        let last = components.peek().is_none();
        if component == WHITEOUT_OPAQUE && last {
            return Ok(Whiteout::Opaque);
        }
        if component.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(Whiteout::AufsMeta);
        }
        if let Some(hidden) = component.strip_prefix(WHITEOUT_PREFIX) {
            if !last {
                return Err("a whiteout cannot be a parent directory");
            }
            if matches!(hidden, b"" | b"." | b"..") {
                return Err("whiteout does not name a file");
            }
            return Ok(Whiteout::Remove(hidden));
        }
    }
    Ok(Whiteout::Plain)
}

/// The dirfd of the most recently used parent directory: layers are mostly sorted, so
/// consecutive entries share it.
#[derive(Default)]
struct ParentCache {
    key: Vec<u8>,
    fd: Option<OwnedFd>,
    /// Set when the current entry removed something: that may change what any cached
    /// path resolves to (a directory replaced by a symlink), so the cache is dropped.
    removed: bool,
}

impl ParentCache {
    /// `None` is the root itself.
    fn take(&mut self, root: BorrowedFd<'_>, parent: &[u8]) -> io::Result<Option<OwnedFd>> {
        self.removed = false;
        if parent.is_empty() {
            return Ok(None);
        }
        if self.key == parent
            && let Some(fd) = self.fd.take()
        {
            return Ok(Some(fd));
        }
        resolve_or_create_dir(root, parent).map(Some)
    }

    fn put(&mut self, parent: &[u8], fd: Option<OwnedFd>) {
        if self.removed {
            self.fd = None;
        } else if let Some(fd) = fd {
            self.key.clear();
            self.key.extend_from_slice(parent);
            self.fd = Some(fd);
        }
    }
}

fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut retries = 0;
    loop {
        match rfs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE_BENEATH_ROOT,
        ) {
            // openat2 asks for a retry when a rename raced the lookup.
            Err(Errno::AGAIN) if retries < 16 => retries += 1,
            result => return result,
        }
    }
}

/// Resolves `path` beneath the root, creating missing directories (0755, like
/// containerd) the way `mkdir -p` would. A dangling symlink on the way is an error
/// (EEXIST), not a directory to create at its target.
fn resolve_or_create_dir(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY;
    match open_in_root(root, path, dir_flags) {
        Err(Errno::NOENT) => {}
        result => return Ok(result?),
    }
    let mut current: Option<OwnedFd> = None;
    let mut creating = false;
    let mut end = 0;
    for component in path.split(|&b| b == b'/') {
        end += component.len();
        if !creating {
            match open_in_root(root, &path[..end], dir_flags) {
                Ok(fd) => current = Some(fd),
                Err(Errno::NOENT) => creating = true,
                Err(e) => return Err(e.into()),
            }
        }
        if creating {
            let base = current.as_ref().map_or(root, |fd| fd.as_fd());
            let mode = Mode::from_raw_mode(0o755);
            rfs::mkdirat(base, component, mode)?;
            rfs::chmodat(base, component, mode, AtFlags::empty())?;
            current = Some(rfs::openat(
                base,
                component,
                dir_flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?);
        }
        end += 1;
    }
    current.ok_or_else(|| io::Error::from(Errno::NOENT))
}

/// Removes `name` in `dir` and, for a directory, everything below it, never following a
/// symlink. Iterative, so a hostile deep tree cannot overflow the stack. Returns whether
/// anything was there.
fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    struct Frame {
        fd: OwnedFd,
        children: Vec<Vec<u8>>,
        name: Vec<u8>,
    }
    let open = |parent: BorrowedFd<'_>, name: &[u8]| -> io::Result<Frame> {
        let fd = rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut children = Vec::new();
        let mut entries = rfs::Dir::read_from(&fd)?;
        while let Some(child) = entries.read() {
            let child = child?;
            let child = child.file_name().to_bytes();
            if child != b"." && child != b".." {
                children.push(child.to_vec());
            }
        }
        Ok(Frame {
            fd,
            children,
            name: name.to_vec(),
        })
    };
    let mut stack = vec![open(dir, name)?];
    while let Some(frame) = stack.last_mut() {
        if let Some(child) = frame.children.pop() {
            match rfs::unlinkat(&frame.fd, &*child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => {
                    let sub = open(frame.fd.as_fd(), &child)?;
                    stack.push(sub);
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let done = stack.pop().expect("stack is not empty");
        let parent = stack.last().map_or(dir, |frame| frame.fd.as_fd());
        rfs::unlinkat(parent, &*done.name, AtFlags::REMOVEDIR)?;
    }
    Ok(true)
}

enum XattrOn<'a> {
    Fd(BorrowedFd<'a>),
    /// A name in a directory, never followed.
    At(BorrowedFd<'a>, &'a [u8]),
}

fn set_xattrs(
    on: XattrOn<'_>,
    xattrs: &[Xattr],
    user_ns_allowed: bool,
    cx: &Cx<'_>,
) -> Result<(), UnpackError> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let at_path = match on {
        XattrOn::At(dir, name) => Some(proc_fd_path(dir, Some(name))),
        XattrOn::Fd(_) => None,
    };
    for (name, value) in xattrs {
        // Whiteouts are the layer's only say in overlayfs internals; redirect, metacopy
        // or origin xattrs from a layer could make overlayfs look elsewhere.
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            tracing::warn!(entry = %cx.name(), xattr = %String::from_utf8_lossy(name), "dropping overlayfs xattr from layer");
            continue;
        }
        // The kernel allows user.* only on regular files and directories.
        if !user_ns_allowed && name.starts_with(b"user.") {
            continue;
        }
        let result = match (&on, &at_path) {
            (XattrOn::Fd(fd), _) => rfs::fsetxattr(fd, &name[..], value, XattrFlags::empty()),
            (XattrOn::At(..), Some(path)) => rfs::lsetxattr(&path[..], &name[..], value, XattrFlags::empty()),
            (XattrOn::At(..), None) => unreachable!("path is built for At"),
        };
        match result {
            Ok(()) => {}
            // containerd ignores these too: a filesystem without xattrs, a namespace we may not write.
            Err(e @ (Errno::OPNOTSUPP | Errno::PERM)) => {
                tracing::warn!(entry = %cx.name(), xattr = %String::from_utf8_lossy(name), error = %e, "xattr not set");
            }
            Err(e) => return Err(cx.io("setting xattr")(e)),
        }
    }
    Ok(())
}

/// `/proc/thread-self/fd/N[/name]`: the path-taking xattr calls reach the object through
/// the fd's magic link, without a lookup by name from any root.
fn proc_fd_path(dir: BorrowedFd<'_>, name: Option<&[u8]>) -> Vec<u8> {
    let mut path = Vec::with_capacity(64);
    write!(path, "/proc/thread-self/fd/{}", dir.as_raw_fd()).expect("writing to a Vec");
    if let Some(name) = name {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    path
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use tar::{Builder, Header};

    use super::*;

    const MTIME: u64 = 1_600_000_000;

    struct Env {
        tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn setup() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        Env { tmp, root, outside }
    }

    impl Env {
        fn apply(&self, layer: &[u8]) -> Result<UnpackStats, UnpackError> {
            apply_layer(&mut &layer[..], &self.root)
        }

        fn r(&self, path: &str) -> PathBuf {
            self.root.join(path)
        }

        /// `outside` still holds exactly the one file, unlinked elsewhere, and the
        /// tempdir holds nothing new.
        fn assert_outside_untouched(&self) {
            let names: Vec<_> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["secret"]);
            let secret = self.outside.join("secret");
            let md = fs::symlink_metadata(&secret).unwrap();
            assert!(md.file_type().is_file());
            assert_eq!(md.nlink(), 1);
            assert_eq!(fs::read(&secret).unwrap(), b"secret");
            assert!(xattr(&self.outside, "trusted.overlay.opaque").is_none());
            let mut top: Vec<_> = fs::read_dir(self.tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            top.sort();
            assert_eq!(top, ["outside", "root"]);
        }
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        let n = rfs::lgetxattr(path, name, &mut buf[..]).ok()?;
        Some(buf[..n].to_vec())
    }

    /// A header whose name bytes are written verbatim: the builder refuses `..` and
    /// absolute names.
    fn hdr(name: &[u8], kind: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h
    }

    fn link_hdr(name: &[u8], kind: EntryType, target: &[u8]) -> Header {
        let mut h = hdr(name, kind);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
        h
    }

    struct Layer(Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Self(Builder::new(Vec::new()))
        }

        fn add(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.add(hdr(name.as_bytes(), EntryType::Regular), data)
        }

        fn dir(&mut self, name: &str) -> &mut Self {
            self.add(hdr(name.as_bytes(), EntryType::Directory), b"")
        }

        fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            let h = link_hdr(name.as_bytes(), EntryType::Symlink, target.as_bytes());
            self.add(h, b"")
        }

        fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            let h = link_hdr(name.as_bytes(), EntryType::Link, target.as_bytes());
            self.add(h, b"")
        }

        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            self.0
                .append_pax_extensions(records.iter().map(|&(k, v)| (k, v)))
                .unwrap();
            self
        }

        fn finish(&mut self) -> Vec<u8> {
            std::mem::replace(&mut self.0, Builder::new(Vec::new()))
                .into_inner()
                .unwrap()
        }
    }

    #[test]
    fn round_trips_files_dirs_links_and_metadata() {
        let env = setup();
        let mut layer = Layer::new();
        let mut h = hdr(b"./", EntryType::Directory);
        h.set_mode(0o751);
        h.set_mtime(1_500_000_000);
        layer.add(h, b"");
        let mut h = hdr(b"./d/", EntryType::Directory);
        h.set_mode(0o750);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_500_000_001);
        layer.add(h, b"");
        layer.pax(&[("SCHILY.xattr.user.berth", b"hello")]);
        let mut h = hdr(b"./d/f", EntryType::Regular);
        h.set_mode(0o640);
        h.set_uid(1001);
        h.set_gid(1002);
        h.set_mtime(1_500_000_002);
        layer.add(h, b"content");
        let mut h = link_hdr(b"./d/l", EntryType::Symlink, b"f");
        h.set_uid(1003);
        h.set_gid(1004);
        h.set_mtime(1_500_000_003);
        layer.add(h, b"");
        layer.hardlink("./d/h", "./d/f");
        let long = format!("d/{}", "n".repeat(150));
        let mut h = hdr(b"", EntryType::Regular);
        h.set_size(4);
        layer.0.append_data(&mut h, &long, &b"long"[..]).unwrap();
        layer.pax(&[("mtime", b"1500000004.5")]);
        layer.file("d/p", b"");
        layer.file("old-style-dir/", b"");
        let stats = env.apply(&layer.finish()).unwrap();
        assert_eq!(
            stats,
            UnpackStats {
                entries: 8,
                bytes: 11
            }
        );

        let root = fs::metadata(&env.root).unwrap();
        assert_eq!((root.mode() & 0o7777, root.mtime()), (0o751, 1_500_000_000));
        let d = fs::symlink_metadata(env.r("d")).unwrap();
        assert!(d.is_dir());
        assert_eq!(d.mode() & 0o7777, 0o750);
        assert_eq!((d.uid(), d.gid()), (1000, 2000));
        // Set after its children were created.
        assert_eq!(d.mtime(), 1_500_000_001);
        let f = fs::symlink_metadata(env.r("d/f")).unwrap();
        assert_eq!(fs::read(env.r("d/f")).unwrap(), b"content");
        assert_eq!(f.mode() & 0o7777, 0o640);
        assert_eq!((f.uid(), f.gid(), f.mtime()), (1001, 1002, 1_500_000_002));
        assert_eq!(xattr(&env.r("d/f"), "user.berth").as_deref(), Some(&b"hello"[..]));
        assert_eq!(f.nlink(), 2);
        assert_eq!(fs::symlink_metadata(env.r("d/h")).unwrap().ino(), f.ino());
        let l = fs::symlink_metadata(env.r("d/l")).unwrap();
        assert!(l.file_type().is_symlink());
        assert_eq!(fs::read_link(env.r("d/l")).unwrap(), Path::new("f"));
        assert_eq!((l.uid(), l.gid(), l.mtime()), (1003, 1004, 1_500_000_003));
        assert_eq!(fs::read(env.r(&long)).unwrap(), b"long");
        let p = fs::metadata(env.r("d/p")).unwrap();
        assert_eq!((p.mtime(), p.mtime_nsec()), (1_500_000_004, 500_000_000));
        assert!(fs::symlink_metadata(env.r("old-style-dir")).unwrap().is_dir());
        env.assert_outside_untouched();
    }

    #[test]
    fn dotdot_entries_stay_inside_root() {
        let env = setup();
        let layer = Layer::new()
            .file("../outside/x", b"1")
            .file("a/../../outside/y", b"2")
            .file("../../../../z", b"3")
            .file("a/b/../../../outside/secret", b"4")
            .finish();
        env.apply(&layer).unwrap();
        assert_eq!(fs::read(env.r("outside/x")).unwrap(), b"1");
        assert_eq!(fs::read(env.r("outside/y")).unwrap(), b"2");
        assert_eq!(fs::read(env.r("z")).unwrap(), b"3");
        assert_eq!(fs::read(env.r("outside/secret")).unwrap(), b"4");
        env.assert_outside_untouched();
    }

    #[test]
    fn absolute_paths_are_relative_to_root() {
        let env = setup();
        let mut layer = Layer::new();
        let mut h = hdr(b"/", EntryType::Directory);
        h.set_mode(0o711);
        layer.add(h, b"");
        layer.file("/x", b"x").file("//abs/./y", b"y");
        env.apply(&layer.finish()).unwrap();
        assert_eq!(fs::read(env.r("x")).unwrap(), b"x");
        assert_eq!(fs::read(env.r("abs/y")).unwrap(), b"y");
        assert_eq!(fs::metadata(&env.root).unwrap().mode() & 0o7777, 0o711);
        env.assert_outside_untouched();
    }

    #[test]
    fn symlinked_parents_resolve_inside_root() {
        let env = setup();
        let layer = Layer::new()
            .dir("outside/")
            .symlink("evil", "/")
            .file("evil/x", b"x")
            .symlink("evil2", "../../outside")
            .file("evil2/x", b"x2")
            // The cached parent "d" is replaced by a symlink: "d/b" must follow it.
            .dir("d/")
            .file("d/a", b"a")
            .symlink("d", "/outside")
            .file("d/b", b"b")
            .finish();
        env.apply(&layer).unwrap();
        assert_eq!(fs::read(env.r("x")).unwrap(), b"x");
        assert_eq!(fs::read(env.r("outside/x")).unwrap(), b"x2");
        assert!(fs::symlink_metadata(env.r("d")).unwrap().is_symlink());
        assert_eq!(fs::read(env.r("outside/b")).unwrap(), b"b");
        env.assert_outside_untouched();

        let outside = env.outside.to_str().unwrap().to_owned();
        let layer = Layer::new().symlink("abs", &outside).file("abs/x", b"x").finish();
        assert!(env.apply(&layer).is_err(), "{outside} does not exist in root");
        env.assert_outside_untouched();
    }

    #[test]
    fn hardlinks_never_reach_outside_inodes() {
        let passwd_links = fs::metadata("/etc/passwd").unwrap().nlink();
        for (link, target) in [
            (None, "/etc/passwd"),
            (None, "../outside/secret"),
            (Some("ABS"), "s/secret"),
            (Some("../outside"), "s/secret"),
        ] {
            let env = setup();
            let mut layer = Layer::new();
            if let Some(link) = link {
                layer.symlink("s", &link.replace("ABS", env.outside.to_str().unwrap()));
            }
            layer.hardlink("l", target);
            let err = env.apply(&layer.finish()).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, UnpackError::MissingLinkTarget { .. }), "{msg}");
            assert!(msg.contains("\"l\"") && msg.contains(target), "{msg}");
            env.assert_outside_untouched();
        }
        assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);

        // Through a symlinked dir to a same-named file the layer itself holds; and to
        // a symlink pointing out, which links the symlink, not its target.
        let env = setup();
        let layer = Layer::new()
            .symlink("s", "../outside")
            .dir("outside/")
            .file("outside/secret", b"mine")
            .hardlink("l", "s/secret")
            .symlink("p", env.outside.join("secret").to_str().unwrap())
            .hardlink("q", "p")
            .finish();
        env.apply(&layer).unwrap();
        let l = fs::symlink_metadata(env.r("l")).unwrap();
        assert_eq!(l.ino(), fs::metadata(env.r("outside/secret")).unwrap().ino());
        assert_eq!(fs::read(env.r("l")).unwrap(), b"mine");
        let q = fs::symlink_metadata(env.r("q")).unwrap();
        assert!(q.file_type().is_symlink());
        assert_eq!(q.ino(), fs::symlink_metadata(env.r("p")).unwrap().ino());
        env.assert_outside_untouched();
    }

    #[test]
    fn whiteouts_never_reach_outside() {
        for (link, entry) in [
            (Some("ABS"), "s/.wh.secret"),
            (Some("../../outside"), "s/.wh.secret"),
            (Some("ABS"), "s/.wh..wh..opq"),
            (None, "../.wh.secret"),
            (None, "../outside/.wh.secret"),
        ] {
            let env = setup();
            let mut layer = Layer::new();
            if let Some(link) = link {
                layer.symlink("s", &link.replace("ABS", env.outside.to_str().unwrap()));
            }
            layer.file(entry, b"");
            let _ = env.apply(&layer.finish());
            env.assert_outside_untouched();
        }
        let env = setup();
        env.apply(&Layer::new().file("../.wh.secret", b"").finish())
            .unwrap();
        assert!(
            fs::symlink_metadata(env.r("secret"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        env.assert_outside_untouched();
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let env = setup();
        let layer = Layer::new()
            .file("a/f", b"f")
            .file("a/sub/x", b"x")
            .file("a/.wh.f", b"")
            .file("a/.wh.sub", b"")
            .file("b/.wh.gone", b"")
            .file("o/keep", b"k")
            .file("o/.wh..wh..opq", b"")
            .file("n/.wh..wh..opq", b"")
            .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere")])
            .file("r", b"")
            .finish();
        let stats = env.apply(&layer).unwrap();
        assert_eq!(stats.entries, 9);
        for whiteout in ["a/f", "a/sub", "b/gone"] {
            let md = fs::symlink_metadata(env.r(whiteout)).unwrap();
            assert!(md.file_type().is_char_device(), "{whiteout}");
            assert_eq!(md.rdev(), 0, "{whiteout}");
        }
        assert_eq!(
            xattr(&env.r("o"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(
            xattr(&env.r("n"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(env.r("o/keep").exists());
        assert!(!env.r("o/.wh..wh..opq").exists());
        assert!(xattr(&env.r("a"), "trusted.overlay.opaque").is_none());
        assert!(xattr(&env.r("r"), "trusted.overlay.redirect").is_none());

        for bad in ["d/.wh.", "d/.wh..", "d/.wh...", ".wh.x/y"] {
            let env = setup();
            let err = env.apply(&Layer::new().file(bad, b"").finish()).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn entries_replace_existing_paths() {
        let env = setup();
        let layer = Layer::new()
            .file("x/y/z", b"deep")
            .file("x", b"file now")
            .file("f", b"old")
            .dir("f/")
            .file("f/w", b"w")
            .file("s", b"old")
            .symlink("s", "/target")
            .dir("m/")
            .file("m/keep", b"k")
            .dir("m/")
            .finish();
        env.apply(&layer).unwrap();
        assert_eq!(fs::read(env.r("x")).unwrap(), b"file now");
        assert!(fs::metadata(env.r("f")).unwrap().is_dir());
        assert_eq!(fs::read(env.r("f/w")).unwrap(), b"w");
        assert_eq!(fs::read_link(env.r("s")).unwrap(), Path::new("/target"));
        assert_eq!(fs::read(env.r("m/keep")).unwrap(), b"k");
        env.assert_outside_untouched();
    }

    #[test]
    fn device_nodes_and_fifos() {
        let env = setup();
        let mut layer = Layer::new();
        for (name, kind, major, minor, mode) in [
            ("c", EntryType::Char, 1, 3, 0o666),
            ("b", EntryType::Block, 7, 0, 0o660),
            ("p", EntryType::Fifo, 0, 0, 0o640),
        ] {
            let mut h = hdr(name.as_bytes(), kind);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            h.set_mode(mode);
            h.set_uid(7);
            layer.add(h, b"");
        }
        env.apply(&layer.finish()).unwrap();
        let c = fs::symlink_metadata(env.r("c")).unwrap();
        assert!(c.file_type().is_char_device());
        assert_eq!((rfs::major(c.rdev()), rfs::minor(c.rdev())), (1, 3));
        assert_eq!((c.mode() & 0o7777, c.uid()), (0o666, 7));
        let b = fs::symlink_metadata(env.r("b")).unwrap();
        assert!(b.file_type().is_block_device());
        assert_eq!((rfs::major(b.rdev()), rfs::minor(b.rdev())), (7, 0));
        assert_eq!(b.mode() & 0o7777, 0o660);
        let p = fs::symlink_metadata(env.r("p")).unwrap();
        assert!(p.file_type().is_fifo());
        assert_eq!((p.mode() & 0o7777, p.mtime()), (0o640, MTIME as i64));
    }

    #[test]
    fn setuid_and_setgid_survive_chown() {
        let env = setup();
        let mut layer = Layer::new();
        for (name, kind, mode) in [
            ("su", EntryType::Regular, 0o4755),
            ("sg", EntryType::Regular, 0o2711),
            ("sd/", EntryType::Directory, 0o3775),
        ] {
            let mut h = hdr(name.as_bytes(), kind);
            h.set_mode(mode);
            h.set_uid(1000);
            h.set_gid(1000);
            layer.add(h, b"#!");
        }
        env.apply(&layer.finish()).unwrap();
        let mode = |p: &str| fs::metadata(env.r(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("su"), 0o4755);
        assert_eq!(mode("sg"), 0o2711);
        assert_eq!(mode("sd"), 0o3775);
        assert_eq!(fs::metadata(env.r("su")).unwrap().uid(), 1000);
    }

    #[test]
    fn reads_the_stream_to_eof() {
        struct Counting<'a>(&'a [u8], u64);
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1 += n as u64;
                Ok(n)
            }
        }
        let env = setup();
        let mut layer = Layer::new().file("f", b"data").finish();
        layer.extend_from_slice(&[0; 10240]);
        layer.extend_from_slice(b"trailing garbage after the end-of-archive blocks");
        let mut reader = Counting(&layer, 0);
        apply_layer(&mut reader, &env.root).unwrap();
        assert_eq!(reader.1, layer.len() as u64);
    }

    #[test]
    fn unsupported_entries_name_the_path() {
        let mut odd = hdr(b"weird/entry", EntryType::Regular);
        odd.as_old_mut().linkflag = [b'Z'];
        let cases = [
            ("weird/entry", Layer::new().add(odd, b"").finish()),
            ("./", Layer::new().symlink("./", "/x").finish()),
            (
                "sparse/file",
                Layer::new()
                    .pax(&[("GNU.sparse.map", b"0,1")])
                    .file("sparse/file", b"x")
                    .finish(),
            ),
        ];
        for (name, layer) in cases {
            let env = setup();
            let err = env.apply(&layer).unwrap_err();
            assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        }
    }
}
