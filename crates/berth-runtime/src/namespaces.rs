//! A pod's namespaces without a pause container: each is created by a
//! short-lived thread and kept alive as a bind mount of its nsfs file, so
//! containers join it by path (`/run/berth/ns/<pod>/net`) and CNI plugins
//! get a netns path, as with `ip netns`.
//!
//! A thread, not a forked child: unshare(2) of the net, UTS and IPC
//! namespaces changes only the calling thread, and a thread costs a
//! fraction of forking the multi-threaded daemon (no page tables copied,
//! no process to reap).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};

use rustix::mount::{MountPropagationFlags, UnmountFlags};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NsKind {
    Net,
    Ipc,
    Uts,
    /// The pod's user namespace, which owns the others when there is one.
    User,
}

impl NsKind {
    /// The namespaces every pod of its own network pins ([`pin`] makes them
    /// from a thread; a user namespace needs [`pin_in_userns`]).
    pub const ALL: [NsKind; 3] = [NsKind::Net, NsKind::Ipc, NsKind::Uts];
    /// Every kind a pod may pin, user last: unpinning releases the
    /// namespaces it owns first.
    pub const PINNABLE: [NsKind; 4] = [NsKind::Net, NsKind::Ipc, NsKind::Uts, NsKind::User];

    /// The name under /proc/<pid>/ns/ and of the pin file.
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::User => "user",
        }
    }

    fn clone_flag(self) -> libc::c_int {
        match self {
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::User => libc::CLONE_NEWUSER,
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

/// Steps of the pinning thread, by the index its setup returns.
const THREAD_STEPS: [&str; 6] = [
    "ok",
    "unshare",
    "sethostname",
    "socket for lo",
    "SIOCGIFFLAGS on lo",
    "SIOCSIFFLAGS on lo",
];

/// Creates new namespaces of `kinds`, pins each at `dir/<kind>`, names the
/// UTS namespace `hostname` and brings `lo` up in the network namespace.
/// `hostname` is ignored unless `kinds` has `Uts`. Blocking (a thread,
/// mounts): a tokio caller runs it in `spawn_blocking`. On failure
/// everything done so far is undone.
pub fn pin(dir: &Path, kinds: &[NsKind], hostname: Option<&str>) -> Result<PinnedNamespaces, NsError> {
    let host = hostname_c(kinds, hostname)?;
    let setup = NsSetup {
        flags: kinds.iter().fold(0, |f, k| f | k.clone_flag()),
        hostname: host,
        lo_up: kinds.contains(&NsKind::Net),
        targets: kinds.iter().map(|&k| (k, path(dir, k))).collect(),
    };
    let mut done = Undo {
        dir,
        created_dir: false,
        files: Vec::new(),
        mounted: Vec::new(),
    };
    // The thread creates the namespaces (unshare of a network namespace
    // is the slow part) while this one makes the files to mount them on;
    // it mounts once told they are there.
    let (go_tx, go_rx) = mpsc::channel();
    let (prepared, mounted) = std::thread::scope(|s| {
        let thread = s.spawn(|| setup.run(go_rx));
        let prepared = prepare_targets(dir, kinds, &mut done);
        if prepared.is_ok() {
            let _ = go_tx.send(());
        }
        drop(go_tx);
        let mounted = thread.join().unwrap_or_else(|_| {
            (
                Vec::new(),
                Err(("namespace thread", io::Error::other("panicked"))),
            )
        });
        (prepared, mounted)
    });
    let (mounted, result) = mounted;
    done.mounted = mounted;
    prepared?;
    result.map_err(|(step, source)| NsError::Pin {
        dir: dir.to_owned(),
        step,
        source,
    })?;
    let pinned = PinnedNamespaces {
        dir: dir.to_owned(),
        kinds: kinds.to_vec(),
    };
    done.disarm();
    Ok(pinned)
}

/// The hostname as the UTS namespace gets it, checked before anything is
/// created.
fn hostname_c(kinds: &[NsKind], hostname: Option<&str>) -> Result<Option<CString>, NsError> {
    let hostname = match hostname {
        Some(h) if h.is_empty() || h.len() > 64 || h.contains('\0') => {
            return Err(NsError::Hostname(h.to_owned()));
        }
        h => h,
    };
    Ok(match (kinds.contains(&NsKind::Uts), hostname) {
        (true, Some(h)) => Some(CString::new(h).map_err(|_| NsError::Hostname(h.to_owned()))?),
        _ => None,
    })
}

/// As [`pin`], with the namespaces owned by a new user namespace with
/// these id maps (uid_map/gid_map text), pinned too (`dir/user`).
///
/// A user namespace cannot be created by a thread of a multi-threaded
/// process (unshare fails with EINVAL), and a namespace it owns must be
/// created inside it: so a forked child unshares them all at once (the
/// kernel makes the user namespace first and has it own the others),
/// names the UTS namespace and brings `lo` up, with the full capabilities
/// the creator has in a new user namespace. This process writes the maps
/// and pins the child's namespaces; then the child exits.
pub fn pin_in_userns(
    dir: &Path,
    kinds: &[NsKind],
    hostname: Option<&str>,
    uid_map: &str,
    gid_map: &str,
) -> Result<PinnedNamespaces, NsError> {
    let host = hostname_c(kinds, hostname)?;
    let mut all: Vec<NsKind> = kinds.iter().copied().filter(|k| *k != NsKind::User).collect();
    all.push(NsKind::User);
    let setup = NsSetup {
        flags: all.iter().fold(0, |f, k| f | k.clone_flag()),
        hostname: host,
        lo_up: all.contains(&NsKind::Net),
        targets: Vec::new(),
    };
    let mut done = Undo {
        dir,
        created_dir: false,
        files: Vec::new(),
        mounted: Vec::new(),
    };
    let err = |step: &'static str| {
        move |source: io::Error| NsError::Pin {
            dir: dir.to_owned(),
            step,
            source,
        }
    };
    prepare_targets(dir, &all, &mut done)?;
    let (report_r, report_w) = pipe().map_err(err("create a pipe"))?;
    let (go_r, go_w) = pipe().map_err(err("create a pipe"))?;
    // SAFETY: the child only makes async-signal-safe calls on memory
    // prepared above and ends in _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(err("fork")(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::close(report_r.as_raw_fd());
            libc::close(go_w.as_raw_fd());
            let step = setup.enter() as i32;
            let errno = if step != 0 { *libc::__errno_location() } else { 0 };
            let msg = [step, errno];
            libc::write(report_w.as_raw_fd(), msg.as_ptr().cast(), 8);
            // Wait until pinned: EOF when the parent closes its end.
            let mut b = 0u8;
            libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0)
        }
    }
    drop(report_w);
    drop(go_r);
    let result = (|| {
        let mut msg = [0u8; 8];
        read_full(report_r.as_raw_fd(), &mut msg).map_err(err("read the namespace child's report"))?;
        let step = i32::from_ne_bytes(msg[..4].try_into().expect("4 bytes"));
        let errno = i32::from_ne_bytes(msg[4..].try_into().expect("4 bytes"));
        if step != 0 {
            let what = THREAD_STEPS
                .get(step as usize)
                .copied()
                .unwrap_or("namespace child");
            return Err(err(what)(io::Error::from_raw_os_error(errno)));
        }
        // gid_map first or last makes no difference for a privileged
        // writer; setgroups stays allowed, as runc leaves it.
        fs::write(format!("/proc/{pid}/uid_map"), uid_map).map_err(err("write uid_map"))?;
        fs::write(format!("/proc/{pid}/gid_map"), gid_map).map_err(err("write gid_map"))?;
        for &kind in &all {
            let target = path(dir, kind);
            let source = PathBuf::from(format!("/proc/{pid}/ns/{}", kind.name()));
            rustix::mount::mount_bind(&source, &target)
                .map_err(|e| err("bind-mount the namespace")(e.into()))?;
            done.mounted.push(target);
        }
        Ok(())
    })();
    drop(go_w);
    let mut status = 0;
    // SAFETY: reaps our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
    result?;
    done.disarm();
    Ok(PinnedNamespaces {
        dir: dir.to_owned(),
        kinds: all,
    })
}

/// The parent as a shared mount, the pin directory and an empty file per
/// namespace, each recorded in `done` for the undo.
fn prepare_targets(dir: &Path, kinds: &[NsKind], done: &mut Undo<'_>) -> Result<(), NsError> {
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
    done.created_dir = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(err("create directory")(e)),
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
    Ok(())
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
    for kind in NsKind::PINNABLE {
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

/// What the pinning thread does: new namespaces for itself, named and
/// with `lo` up, each bind-mounted from /proc/thread-self/ns onto its
/// target. The thread then ends; the mounts keep the namespaces alive.
struct NsSetup {
    flags: libc::c_int,
    hostname: Option<CString>,
    lo_up: bool,
    targets: Vec<(NsKind, PathBuf)>,
}

impl NsSetup {
    /// Runs on a thread of its own that ends right after: its namespaces
    /// are never the daemon's again. Mounts them once `go` says the
    /// targets exist (nothing: the caller failed, and so nothing is
    /// mounted). Returns the targets it mounted, also on failure.
    fn run(&self, go: mpsc::Receiver<()>) -> (Vec<PathBuf>, Result<(), (&'static str, io::Error)>) {
        let mut mounted = Vec::new();
        // SAFETY: plain syscalls on memory owned by self; they change only
        // this thread's namespaces.
        let step = unsafe { self.enter() };
        if step != 0 {
            let source = io::Error::last_os_error();
            let step = THREAD_STEPS.get(step).copied().unwrap_or("namespace thread");
            return (mounted, Err((step, source)));
        }
        if go.recv().is_err() {
            return (mounted, Ok(()));
        }
        for (kind, target) in &self.targets {
            let source = PathBuf::from(format!("/proc/thread-self/ns/{}", kind.name()));
            if let Err(e) = rustix::mount::mount_bind(&source, target) {
                return (mounted, Err(("bind-mount the namespace", e.into())));
            }
            mounted.push(target.clone());
        }
        (mounted, Ok(()))
    }

    /// Returns 0 or the index in THREAD_STEPS of the step that failed,
    /// errno set.
    unsafe fn enter(&self) -> usize {
        unsafe {
            if libc::unshare(self.flags) != 0 {
                return 1;
            }
            if let Some(h) = &self.hostname
                && libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0
            {
                return 2;
            }
            if self.lo_up {
                return bring_lo_up();
            }
            0
        }
    }
}

/// Returns 0 or the THREAD_STEPS index of the failed step, errno set. The
/// socket is closed on every path: it would hold the namespace alive.
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
        let step = if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
            4
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req) != 0 {
                5
            } else {
                0
            }
        };
        let errno = *libc::__errno_location();
        libc::close(sock);
        *libc::__errno_location() = errno;
        step
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

    fn ns_inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).unwrap().ino()
    }

    /// Unpins on drop, and unmounts the parent `pin` made a mount point,
    /// so a failed assertion leaves no mounts behind.
    struct Pinned(PathBuf);

    impl Drop for Pinned {
        fn drop(&mut self) {
            let _ = unpin(&self.0);
            let _ = rustix::mount::unmount(self.0.parent().unwrap(), UnmountFlags::DETACH);
        }
    }

    /// Needs root. The namespaces come from a thread: the caller's own stay
    /// as they were, the pins hold live namespaces of their own with the
    /// hostname set and lo up, and unpin releases every mount.
    #[test]
    fn pinned_from_a_thread_with_hostname_and_lo_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pod").join("ns");
        let own_net = ns_inode(Path::new("/proc/thread-self/ns/net"));
        let own_uts = ns_inode(Path::new("/proc/thread-self/ns/uts"));
        let own_host = rustix::system::uname().nodename().to_owned();
        let pinned = pin(&dir, &NsKind::ALL, Some("pin-test")).unwrap();
        let guard = Pinned(dir.clone());
        assert_eq!(ns_inode(Path::new("/proc/thread-self/ns/net")), own_net);
        assert_eq!(ns_inode(Path::new("/proc/thread-self/ns/uts")), own_uts);
        assert_eq!(rustix::system::uname().nodename(), own_host.as_c_str());
        for kind in NsKind::ALL {
            assert!(is_pinned(&dir, kind), "{kind:?} is not pinned");
            assert_eq!(pinned.path(kind), Some(path(&dir, kind)));
        }
        assert_ne!(ns_inode(&path(&dir, NsKind::Net)), own_net);
        assert_ne!(ns_inode(&path(&dir, NsKind::Uts)), own_uts);

        // Looked at from inside, on a thread of its own that then ends.
        let (net, uts) = (path(&dir, NsKind::Net), path(&dir, NsKind::Uts));
        let (host, lo_flags) = std::thread::spawn(move || {
            for p in [&net, &uts] {
                let f = fs::File::open(p).unwrap();
                // SAFETY: setns on an open nsfs file; only this thread moves.
                assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), 0) }, 0);
            }
            let host = rustix::system::uname().nodename().to_owned();
            // SAFETY: an ioctl on a socket of our own with a zeroed ifreq.
            let flags = unsafe {
                let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                assert!(sock >= 0);
                let mut req: libc::ifreq = std::mem::zeroed();
                for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                    *dst = *src as libc::c_char;
                }
                assert_eq!(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req), 0);
                libc::close(sock);
                req.ifr_ifru.ifru_flags
            };
            (host, flags)
        })
        .join()
        .unwrap();
        assert_eq!(host.to_str().unwrap(), "pin-test");
        assert_ne!(lo_flags & libc::IFF_UP as libc::c_short, 0, "lo is down");

        unpin(&dir).unwrap();
        assert!(!dir.exists());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(dir.to_str().unwrap()),
            "a pin is still mounted:\n{mounts}"
        );
        drop(guard);
    }
}
