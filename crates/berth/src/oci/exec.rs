//! `berth oci exec`: runs a new process in a running container.
//!
//! Like runc, the process starts from the container's own `process` (its
//! capabilities, rlimits, env) with the flags laid over it; the result is
//! handed to libcontainer as a process file, which is also how `--tty`
//! reaches it (libcontainer's flag-built process has no terminal field).
//!
//! libcontainer 0.7 builds an exec'd process' `linux` section without the
//! container's seccomp profile; runc applies the container's filter to
//! exec'd processes too, and so does berth: [`SeccompExecutor`] loads it as
//! the last step before `execve`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::{LinuxSeccomp, Spec};
use serde_json::{Map, Value};

use super::{Ctx, foreground, load_container};

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// process.json describing the process (the other process flags are
    /// then ignored, as in runc).
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Give the process a terminal (its master goes to --console-socket).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process' pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variable KEY=VALUE (overrides the container's).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// UID[:GID] to run as (numeric).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional group ids (repeatable or comma-separated).
    #[arg(short = 'g', long, value_delimiter = ',')]
    pub additional_gids: Vec<u32>,
    /// Capability to add (CAP_NET_ADMIN...), repeatable.
    #[arg(short = 'c', long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many file descriptors beyond stdio to the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container id.
    pub id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Returns the exit code to leave with: the process' own (128+signal when
/// killed), or 0 when detached.
pub fn exec(ctx: &Ctx, args: ExecArgs) -> Result<i32> {
    let id = &args.id;
    let container = load_container(ctx, id)?;
    join_user_namespace(&container).with_context(|| format!("exec in container {id}"))?;
    let process_file = match &args.process {
        Some(p) => ProcessFile::given(p.clone()),
        None => {
            let process = build_process(&container.bundle().join("config.json"), &args)
                .with_context(|| format!("exec in container {id}"))?;
            ProcessFile::write(&ctx.container_dir(id), &process)
                .with_context(|| format!("exec in container {id}"))?
        }
    };
    let config = container.bundle().join("config.json");
    let seccomp = Spec::load(&config)
        .with_context(|| format!("exec in container {id}: read {}", config.display()))?
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone());
    let pid = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_executor(SeccompExecutor { seccomp })
        .with_root_path(&ctx.root)
        .and_then(|b| b.with_pid_file(args.pid_file.as_ref()))
        .and_then(|b| {
            b.with_console_socket(args.console_socket.as_ref())
                .with_preserved_fds(args.preserve_fds)
                .validate_id()
        })
        .and_then(|b| {
            b.as_tenant()
                .with_detach(args.detach)
                .with_process(Some(&process_file.path))
                .build()
        })
        .with_context(|| format!("exec in container {id}"))?;
    drop(process_file);
    if args.detach {
        return Ok(0);
    }
    // The process is our child (libcontainer clones it as a sibling of its
    // intermediate process), so a SIGCHLD that came before this point left
    // a zombie for the waiter's first reap.
    foreground::Waiter::block_signals()?
        .wait(pid)
        .with_context(|| format!("wait for exec in container {id}"))
}

/// libcontainer 0.7's exec joins every namespace of the container but its
/// user namespace, which would leave the process the host's root inside
/// the container's other namespaces (root owns them all from outside). So
/// this process joins it first, as runc's exec does: then libcontainer's
/// setuid to the process's user gives that user's id in the container,
/// the host ids of the pod's range. What libcontainer still does as this
/// process (join the container's cgroup, write its own state) it does as
/// the host's uid 0, owner of those files.
fn join_user_namespace(container: &libcontainer::container::Container) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let Some(pid) = container.pid() else {
        return Ok(());
    };
    let theirs = format!("/proc/{pid}/ns/user");
    let (a, b) = (
        std::fs::metadata(&theirs)?,
        std::fs::metadata("/proc/self/ns/user")?,
    );
    if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
        return Ok(());
    }
    // Until its init has exec'd the workload the container's process is not
    // dumpable, and from inside its user namespace its /proc/<pid>/ns files
    // (which libcontainer reads next) are then out of reach. The kernel
    // shows a non-dumpable task's /proc directory as owned by the host's
    // root, which no process of a user namespace's range is.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::fs::metadata(format!("/proc/{pid}"))?.uid() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let ns = std::fs::File::open(&theirs).with_context(|| format!("open {theirs}"))?;
    // Not dumpable before joining, as runc's nsexec: from the moment this
    // process (still the host's uid 0) is in the container's user
    // namespace, its root may not ptrace or read /proc of it.
    // SAFETY: plain prctl call.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // SAFETY: setns on an fd we own; this process is single-threaded, as
    // joining a user namespace requires.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("join the user namespace {theirs}"));
    }
    Ok(())
}

/// Loads the container's seccomp filter, then runs the workload as
/// libcontainer's default executor does. By now the process has its final
/// capabilities: without CAP_SYS_ADMIN the kernel takes a filter only under
/// no_new_privs, which is then set (stricter than runc, which loads the
/// filter before dropping capabilities; libcontainer gives no earlier hook).
#[derive(Clone)]
struct SeccompExecutor {
    seccomp: Option<LinuxSeccomp>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(seccomp) = &self.seccomp {
            let admin = rustix::thread::capabilities(None)
                .is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::SYS_ADMIN));
            if !admin {
                rustix::thread::set_no_new_privs(true)
                    .map_err(|e| ExecutorError::Other(format!("set no_new_privs for seccomp: {e}")))?;
            }
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| ExecutorError::Other(format!("load the container's seccomp profile: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// The container's process with the exec flags laid over it.
fn build_process(config: &Path, args: &ExecArgs) -> Result<Value> {
    if args.command.is_empty() {
        anyhow::bail!("no command given");
    }
    let raw = std::fs::read(config).with_context(|| format!("read {}", config.display()))?;
    let mut spec: Value =
        serde_json::from_slice(&raw).with_context(|| format!("parse {}", config.display()))?;
    let mut process = match spec.get_mut("process").map(Value::take) {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    process.insert("args".into(), args.command.clone().into());
    process.insert("terminal".into(), args.tty.into());
    process.remove("consoleSize");
    process.insert("env".into(), merge_env(process.get("env"), &args.env).into());
    if let Some(cwd) = &args.cwd {
        process.insert("cwd".into(), cwd.to_string_lossy().into_owned().into());
    }
    let user = object_entry(&mut process, "user");
    if let Some(spec_user) = &args.user {
        let (uid, gid) = parse_user(spec_user)?;
        user.insert("uid".into(), uid.into());
        if let Some(gid) = gid {
            user.insert("gid".into(), gid.into());
        }
    }
    user.entry("uid").or_insert(0.into());
    user.entry("gid").or_insert(0.into());
    if !args.additional_gids.is_empty() {
        user.insert("additionalGids".into(), args.additional_gids.clone().into());
    }
    if !args.cap.is_empty() {
        let caps = object_entry(&mut process, "capabilities");
        for set in ["bounding", "effective", "permitted"] {
            add_caps(caps, set, &args.cap);
        }
    }
    if args.no_new_privs {
        process.insert("noNewPrivileges".into(), true.into());
    }
    Ok(Value::Object(process))
}

fn object_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

/// The container's environment with `overrides` replacing same-named keys
/// and appending new ones (runc's order).
fn merge_env(base: Option<&Value>, overrides: &[String]) -> Vec<String> {
    let mut env: Vec<String> = base
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    for kv in overrides {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => slot.clone_from(kv),
            None => env.push(kv.clone()),
        }
    }
    env
}

fn add_caps(caps: &mut Map<String, Value>, set: &str, add: &[String]) {
    let list = caps.entry(set).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list {
        for cap in add {
            let cap = cap.to_ascii_uppercase();
            if !items.iter().any(|i| i.as_str() == Some(cap.as_str())) {
                items.push(cap.into());
            }
        }
    }
}

/// `UID[:GID]`, numeric (names would need the container's /etc/passwd).
fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let bad = || format!("user {s:?} is not UID[:GID]");
    match s.split_once(':') {
        Some((u, g)) => Ok((u.parse().with_context(bad)?, Some(g.parse().with_context(bad)?))),
        None => Ok((s.parse().with_context(bad)?, None)),
    }
}

/// A process file for libcontainer: one berth wrote (removed on drop) or
/// the caller's --process file (left alone).
struct ProcessFile {
    path: PathBuf,
    owned: bool,
}

impl ProcessFile {
    fn given(path: PathBuf) -> Self {
        Self { path, owned: false }
    }

    fn write(container_dir: &Path, process: &Value) -> Result<Self> {
        let path = container_dir.join(format!("exec-{}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_vec(process)?)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(Self { path, owned: true })
    }
}

impl Drop for ProcessFile {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_replace_and_append() {
        let base = serde_json::json!(["PATH=/bin", "A=1"]);
        let env = merge_env(Some(&base), &["A=2".into(), "B=3".into()]);
        assert_eq!(env, ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn user_parses_uid_and_gid() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("nobody").is_err());
    }
}
