//! A pod's namespaces without a pause container: each is created by a
//! short-lived child and kept alive as a bind mount of its nsfs file, so
//! containers join it by path (`/run/berth/ns/<pod>/net`) and CNI plugins
//! get a netns path, as with `ip netns`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::mount::{MountPropagationFlags, UnmountFlags};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NsKind {
    Net,
    Ipc,
    Uts,
}

impl NsKind {
    pub const ALL: [NsKind; 3] = [NsKind::Net, NsKind::Ipc, NsKind::Uts];

    /// The name under /proc/<pid>/ns/ and of the pin file.
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }

    fn clone_flag(self) -> libc::c_int {
        match self {
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Uts => libc::CLONE_NEWUTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("pinning namespaces in {dir}: {step} failed: {source}")]
    Pin {
        dir: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("unpinning namespaces in {dir}: {step} {path} failed: {source}")]
    Unpin {
        dir: PathBuf,
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("hostname {0:?} is not valid (empty, too long, or holds a NUL byte)")]
    Hostname(String),
    #[error("pod init {exe}: {step} failed: {source}")]
    Init {
        exe: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("pod init pid {pid}: {step} failed: {source}")]
    Stop {
        pid: u32,
        step: &'static str,
        source: io::Error,
    },
}

/// Namespaces pinned under one directory; `unpin` releases them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedNamespaces {
    pub dir: PathBuf,
    pub kinds: Vec<NsKind>,
}

impl PinnedNamespaces {
    pub fn path(&self, kind: NsKind) -> Option<PathBuf> {
        self.kinds.contains(&kind).then(|| path(&self.dir, kind))
    }
}

/// The pin file of `kind` in `dir`.
pub fn path(dir: &Path, kind: NsKind) -> PathBuf {
    dir.join(kind.name())
}

/// Whether `dir/<kind>` is an nsfs mount, i.e. a live pin.
pub fn is_pinned(dir: &Path, kind: NsKind) -> bool {
    // f_type and the magic constants differ in type between architectures;
    // the magics fit in 32 bits.
    rustix::fs::statfs(path(dir, kind))
        .map(|s| s.f_type as u32 == libc::NSFS_MAGIC as u32)
        .unwrap_or(false)
}

/// Steps the pinning child reports back; the number travels over a pipe.
const CHILD_STEPS: [&str; 6] = [
    "ok",
    "unshare",
    "sethostname",
    "socket for lo",
    "SIOCGIFFLAGS on lo",
    "SIOCSIFFLAGS on lo",
];

/// Creates new namespaces of `kinds`, pins each at `dir/<kind>`, names the
/// UTS namespace `hostname` and brings `lo` up in the network namespace.
/// `hostname` is ignored unless `kinds` has `Uts`. Blocking (fork, wait,
/// mounts): a tokio caller runs it in `spawn_blocking`. On failure
/// everything done so far is undone.
pub fn pin(dir: &Path, kinds: &[NsKind], hostname: Option<&str>) -> Result<PinnedNamespaces, NsError> {
    let hostname = match hostname {
        Some(h) if h.is_empty() || h.len() > 64 || h.contains('\0') => {
            return Err(NsError::Hostname(h.to_owned()));
        }
        h => h,
    };
    let err = |step: &'static str| {
        move |source: io::Error| NsError::Pin {
            dir: dir.to_owned(),
            step,
            source,
        }
    };
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(err("create parent directory"))?;
        make_shared_mount(parent).map_err(err("make the parent a shared mount"))?;
    }
    let created_dir = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(err("create directory")(e)),
    };
    let mut done = Undo {
        dir,
        created_dir,
        files: Vec::new(),
        mounted: Vec::new(),
    };
    for &kind in kinds {
        let file = path(dir, kind);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .map_err(err("create pin file"))?;
        done.files.push(file);
    }
    let child = PinChild::fork(kinds, hostname).map_err(err("fork"))?;
    child.wait_ready().map_err(|(step, source)| NsError::Pin {
        dir: dir.to_owned(),
        step,
        source,
    })?;
    for &kind in kinds {
        let source = PathBuf::from(format!("/proc/{}/ns/{}", child.pid, kind.name()));
        let target = path(dir, kind);
        rustix::mount::mount_bind(&source, &target).map_err(|e| err("bind-mount the namespace")(e.into()))?;
        done.mounted.push(target);
    }
    // The mounts hold the namespaces now; the child may exit.
    drop(child);
    let pinned = PinnedNamespaces {
        dir: dir.to_owned(),
        kinds: kinds.to_vec(),
    };
    done.disarm();
    Ok(pinned)
}

/// Rolls back a half-done `pin` when dropped.
struct Undo<'a> {
    dir: &'a Path,
    created_dir: bool,
    files: Vec<PathBuf>,
    mounted: Vec<PathBuf>,
}

impl Undo<'_> {
    fn disarm(mut self) {
        self.files.clear();
        self.mounted.clear();
        self.created_dir = false;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            let _ = rustix::mount::unmount(m, UnmountFlags::DETACH);
        }
        for f in self.files.iter().rev() {
            let _ = fs::remove_file(f);
        }
        if self.created_dir {
            let _ = fs::remove_dir(self.dir);
        }
    }
}

/// Serializes the check-then-bind below between pods pinned at once.
static PARENT_MOUNT: Mutex<()> = Mutex::new(());

/// The pins' parent (`/run/berth/ns`) becomes a mount point of its own with
/// shared propagation, as `ip netns` does for /run/netns. Mount namespaces
/// created later (containers, `unshare -m`, other daemons) copy the pins;
/// with a private parent those copies would keep a namespace alive after
/// `unpin`, and a busy copy could stop the file from being removed. A
/// shared (or, in the copy, slave) mount receives our unmount, so `unpin`
/// really releases the namespace everywhere. It needs its own mount point
/// because propagation is a property of a mount, and the host's mount
/// containing the directory (often `/`, private on this machine) is not
/// ours to change.
fn make_shared_mount(parent: &Path) -> io::Result<()> {
    let _guard = PARENT_MOUNT.lock().unwrap_or_else(|p| p.into_inner());
    let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    match rustix::mount::mount_change(parent, shared) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            rustix::mount::mount_bind_recursive(parent, parent)?;
            rustix::mount::mount_change(parent, shared)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Releases the pins in `dir`: detaches each mount, removes the files and
/// the directory. Missing pins or a missing directory are not errors.
pub fn unpin(dir: &Path) -> Result<(), NsError> {
    let err = |step: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source: io::Error| NsError::Unpin {
            dir: dir.to_owned(),
            step,
            path,
            source,
        }
    };
    for kind in NsKind::ALL {
        let file = path(dir, kind);
        if is_pinned(dir, kind) {
            match rustix::mount::unmount(&file, UnmountFlags::DETACH) {
                Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(err("unmount", &file)(e.into())),
            }
        }
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(err("remove", &file)(e));
            }
            _ => {}
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err("remove", dir)(e)),
        _ => Ok(()),
    }
}

/// The forked child that owns the new namespaces until the parent has
/// bind-mounted them.
struct PinChild {
    pid: libc::pid_t,
    status: OwnedFd,
    go: Option<OwnedFd>,
}

impl PinChild {
    /// Everything the child needs is prepared here, before fork: a child of
    /// a multi-threaded process may only make async-signal-safe calls.
    fn fork(kinds: &[NsKind], hostname: Option<&str>) -> io::Result<PinChild> {
        let flags = kinds.iter().fold(0, |f, k| f | k.clone_flag());
        let host = match (kinds.contains(&NsKind::Uts), hostname) {
            (true, Some(h)) => Some(CString::new(h).map_err(io::Error::other)?),
            _ => None,
        };
        let lo_up = kinds.contains(&NsKind::Net);
        let (status_r, status_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        // SAFETY: the child branch below only calls async-signal-safe
        // functions on memory prepared before the fork, then _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; never returns.
            unsafe {
                pin_child_main(
                    flags,
                    host.as_ref(),
                    lo_up,
                    status_w.as_raw_fd(),
                    go_r.as_raw_fd(),
                )
            }
        }
        drop(status_w);
        drop(go_r);
        Ok(PinChild {
            pid,
            status: status_r,
            go: Some(go_w),
        })
    }

    /// The child's report: which step failed, with its errno.
    fn wait_ready(&self) -> Result<(), (&'static str, io::Error)> {
        let mut msg = [0u8; 8];
        read_full(self.status.as_raw_fd(), &mut msg).map_err(|e| ("read the namespace child's report", e))?;
        let step = u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize;
        let errno = i32::from_ne_bytes(msg[4..].try_into().unwrap());
        match step {
            0 => Ok(()),
            s => Err((
                CHILD_STEPS.get(s).copied().unwrap_or("namespace child"),
                io::Error::from_raw_os_error(errno),
            )),
        }
    }
}

impl Drop for PinChild {
    fn drop(&mut self) {
        // A byte, not just EOF, ends the child's wait: a sibling forked
        // meanwhile by another thread holds a copy of the write end, so EOF
        // might not come until that sibling is gone too.
        if let Some(go) = self.go.take() {
            let _ = rustix::io::write(&go, b"g");
        }
        let mut status = 0;
        // SAFETY: reaps our own child; status is a valid out pointer.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

/// The child: unshare, set up, report, wait for the parent, exit.
///
/// # Safety
/// Only to be called in the child of a fork; never returns.
unsafe fn pin_child_main(
    flags: libc::c_int,
    hostname: Option<&CString>,
    lo_up: bool,
    status: libc::c_int,
    go: libc::c_int,
) -> ! {
    unsafe {
        // Should the caller die before releasing us, do not linger.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        let step = pin_child_setup(flags, hostname, lo_up);
        let errno = if step == 0 { 0 } else { *libc::__errno_location() };
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
        msg[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(status, msg.as_ptr().cast(), msg.len());
        if step == 0 {
            let mut b = 0u8;
            while libc::read(go, (&raw mut b).cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
        }
        libc::_exit(0)
    }
}

/// Returns 0 or the index in CHILD_STEPS of the step that failed, errno set.
unsafe fn pin_child_setup(flags: libc::c_int, hostname: Option<&CString>, lo_up: bool) -> usize {
    unsafe {
        if libc::unshare(flags) != 0 {
            return 1;
        }
        if let Some(h) = hostname
            && libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0
        {
            return 2;
        }
        if lo_up {
            return bring_lo_up();
        }
        0
    }
}

unsafe fn bring_lo_up() -> usize {
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return 3;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
            return 4;
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req) != 0 {
            return 5;
        }
        libc::close(sock);
        0
    }
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Reads exactly `buf.len()` bytes; EOF before that is UnexpectedEof.
pub(crate) fn read_full(fd: libc::c_int, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of buf.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => got += n as usize,
        }
    }
    Ok(())
}

/// A path as a C string, for use after fork where nothing may allocate.
pub(crate) fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_paths_and_names() {
        let dir = Path::new("/run/berth/ns/pod1");
        assert_eq!(path(dir, NsKind::Net), Path::new("/run/berth/ns/pod1/net"));
        let p = PinnedNamespaces {
            dir: dir.to_owned(),
            kinds: vec![NsKind::Ipc],
        };
        assert_eq!(p.path(NsKind::Ipc), Some(dir.join("ipc")));
        assert_eq!(p.path(NsKind::Uts), None);
    }

    #[test]
    fn a_plain_file_is_not_a_pin() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("net"), "").unwrap();
        assert!(!is_pinned(tmp.path(), NsKind::Net));
        assert!(!is_pinned(tmp.path(), NsKind::Ipc));
    }

    #[test]
    fn bad_hostnames_are_refused_before_anything_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pod");
        for h in ["", &"x".repeat(65)] {
            assert!(matches!(
                pin(&dir, &[NsKind::Uts], Some(h)),
                Err(NsError::Hostname(_))
            ));
        }
        assert!(!dir.exists());
    }

    #[test]
    fn unpin_of_nothing_is_ok() {
        let tmp = tempfile::tempdir().unwrap();
        unpin(&tmp.path().join("absent")).unwrap();
        let dir = tmp.path().join("empty");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("uts"), "").unwrap();
        unpin(&dir).unwrap();
        assert!(!dir.exists());
    }
}
