//! Seccomp: berth's RuntimeDefault profile, Unconfined, or a Localhost
//! profile file.
//!
//! RuntimeDefault is an allowlist written for berth from the Linux syscall
//! table: what ordinary programs call is allowed; what reconfigures the
//! kernel, crosses namespaces or inspects other processes is refused with
//! EPERM unless the container holds the capability that call needs anyway.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};

use super::SpecError;
use super::capabilities::{DEFAULT_CAPABILITIES, capability_number};
use crate::model::Seccomp;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// personality(2) values that change nothing dangerous: PER_LINUX,
/// PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the query 0xffffffff.
const SAFE_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Profile for a request; None means unconfined. The profile is checked
/// against the final capability set `caps`.
pub fn for_request(
    requested: Option<&Seccomp>,
    caps: &BTreeSet<u32>,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    match requested {
        None | Some(Seccomp::Unconfined) => Ok(None),
        Some(Seccomp::RuntimeDefault) => Ok(Some(runtime_default(caps))),
        Some(Seccomp::Localhost(path)) => localhost(path).map(Some),
    }
}

/// berth's RuntimeDefault profile for a container holding `caps`; the one
/// for the default capability set is built once.
pub fn runtime_default(caps: &BTreeSet<u32>) -> LinuxSeccomp {
    static DEFAULT: OnceLock<(BTreeSet<u32>, LinuxSeccomp)> = OnceLock::new();
    let (default_caps, profile) = DEFAULT.get_or_init(|| {
        let caps: BTreeSet<u32> = DEFAULT_CAPABILITIES
            .iter()
            .filter_map(|n| capability_number(n))
            .collect();
        let profile = build(&caps);
        (caps, profile)
    });
    if default_caps == caps {
        profile.clone()
    } else {
        build(caps)
    }
}

fn localhost(path: &Path) -> Result<LinuxSeccomp, SpecError> {
    let text = std::fs::read(path).map_err(|source| SpecError::SeccompProfileRead {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| SpecError::SeccompProfileParse {
        path: path.to_path_buf(),
        source,
    })
}

fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    }
}

fn build(caps: &BTreeSet<u32>) -> LinuxSeccomp {
    let has = |name: &str| capability_number(name).is_some_and(|n| caps.contains(&n));
    let mut allowed: Vec<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
    for (cap, names) in GATED {
        if has(cap) {
            allowed.extend(names.iter().map(|s| s.to_string()));
        }
    }
    allowed.sort();
    allowed.dedup();
    let mut rules = vec![syscall(allowed, LinuxSeccompAction::ScmpActAllow, None, None)];
    for value in SAFE_PERSONALITIES {
        rules.push(syscall(
            vec!["personality".into()],
            LinuxSeccompAction::ScmpActAllow,
            None,
            Some(vec![arg(0, value, None, LinuxSeccompOperator::ScmpCmpEq)]),
        ));
    }
    if !has("SYS_ADMIN") {
        // clone without namespace flags only; flags are argument 0 on x86
        // and arm (s390 differs, and berth is not built there).
        rules.push(syscall(
            vec!["clone".into()],
            LinuxSeccompAction::ScmpActAllow,
            None,
            Some(vec![arg(
                0,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )]),
        ));
        // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes
        // libc fall back to clone, whose flags the rule above checks.
        rules.push(syscall(
            vec!["clone3".into()],
            LinuxSeccompAction::ScmpActErrno,
            Some(ENOSYS),
            None,
        ));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(rules));
    profile
}

fn syscall(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names);
    s.set_action(action);
    s.set_errno_ret(errno);
    s.set_args(args);
    s
}

fn arg(index: usize, value: u64, two: Option<u64>, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    let b = match two {
        Some(t) => b.value_two(t),
        None => b,
    };
    b.build().expect("every field of a seccomp argument is set")
}

/// What a profile does with one call, by the OCI rule semantics (a rule
/// matches when all its argument conditions hold; the first match wins,
/// else the default action). For tests and diagnostics.
pub fn evaluate(profile: &LinuxSeccomp, name: &str, args: &[u64]) -> (LinuxSeccompAction, u32) {
    let rules = profile.syscalls().as_deref().unwrap_or_default();
    for rule in rules.iter().filter(|r| r.names().iter().any(|n| n == name)) {
        let conds = rule.args().as_deref().unwrap_or_default();
        if conds.iter().all(|c| condition_holds(c, args)) {
            return (rule.action(), rule.errno_ret().unwrap_or(EPERM));
        }
    }
    (
        profile.default_action(),
        profile.default_errno_ret().unwrap_or(EPERM),
    )
}

fn condition_holds(c: &LinuxSeccompArg, args: &[u64]) -> bool {
    let v = args.get(c.index()).copied().unwrap_or(0);
    match c.op() {
        LinuxSeccompOperator::ScmpCmpNe => v != c.value(),
        LinuxSeccompOperator::ScmpCmpLt => v < c.value(),
        LinuxSeccompOperator::ScmpCmpLe => v <= c.value(),
        LinuxSeccompOperator::ScmpCmpEq => v == c.value(),
        LinuxSeccompOperator::ScmpCmpGe => v >= c.value(),
        LinuxSeccompOperator::ScmpCmpGt => v > c.value(),
        LinuxSeccompOperator::ScmpCmpMaskedEq => v & c.value() == c.value_two().unwrap_or(0),
    }
}

/// Calls that need a capability; allowed only when the container holds it.
pub const GATED: &[(&str, &[&str])] = &[
    (
        "SYS_ADMIN",
        &[
            "add_key",
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "keyctl",
            "listmount",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "request_key",
            "setdomainname",
            "sethostname",
            "setns",
            "statmount",
            "swapoff",
            "swapon",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("SYS_BOOT", &["kexec_file_load", "kexec_load", "reboot"]),
    ("SYS_MODULE", &["delete_module", "finit_module", "init_module"]),
    ("SYS_PACCT", &["acct"]),
    (
        "SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
            "userfaultfd",
        ],
    ),
    ("SYS_RAWIO", &["ioperm", "iopl"]),
    (
        "SYS_TIME",
        &[
            "clock_adjtime",
            "clock_adjtime64",
            "clock_settime",
            "clock_settime64",
            "settimeofday",
            "stime",
        ],
    ),
    ("SYS_TTY_CONFIG", &["vhangup"]),
    (
        "SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "migrate_pages",
            "move_pages",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("SYSLOG", &["syslog"]),
    ("BPF", &["bpf"]),
    ("PERFMON", &["perf_event_open"]),
    ("DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("SYS_CHROOT", &["chroot"]),
];

/// Allowed to every container. Names unknown to an architecture (the
/// 32-bit `*64` and `*_time64` variants on x86_64, say) are skipped by the
/// runtime's libseccomp for that architecture. Deliberately absent: the
/// gated calls above, io_uring (a recurring source of kernel escapes),
/// obsolete calls (uselib, _sysctl, vm86, nfsservctl, create_module,
/// get_kernel_syms, query_module) and kernel configuration.
pub const ALLOWED: &[&str] = &[
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];
