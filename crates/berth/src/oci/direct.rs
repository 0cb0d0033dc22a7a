//! `create` without libcontainer's process tree: one fork, cgroups through
//! berth's own cgroupfs driver, the container's init from libcontainer.
//!
//! libcontainer creates a container with three processes (this one → an
//! intermediate → the init) and builds its cgroup manager inside the
//! intermediate, which on cgroup v1 reads the mount table once per
//! controller through a private procfs instance; `delete` does it all again.
//! On the project's machine that was about half of a `/bin/true` lifecycle.
//!
//! Here this process enters (or creates) the PID namespace itself and forks
//! the init directly; the cgroup is created, limited and joined with the one
//! mount table [`Cgroups::detect`] read. The init runs libcontainer's own
//! `container_init_process`, so namespaces, rootfs, devices, the console,
//! capabilities, seccomp and the start handshake (`notify.sock`) are exactly
//! libcontainer's, and so is the state left behind: `start`, `state`,
//! `kill`, `exec`, `ps` and `update` work on it unchanged.
//!
//! On cgroup v2 the limits are v2 files and the device rules berth's BPF
//! program, attached before the init is forked. A config this path does
//! not cover (hooks, user or time namespaces, systemd cgroups, …) takes
//! libcontainer's path; [`plan`] says why.

use std::io::{Read, Write as _};
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result};
use berth_runtime::cgroup::{CgroupVersion, Cgroups};
use berth_runtime::device_filter::{self, DeviceRules};
use libcgroups::common::CgroupConfig;
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::namespaces::Namespaces;
use libcontainer::notify_socket::{NOTIFY_FILE, NotifyListener};
use libcontainer::process::args::{ContainerArgs, ContainerType};
use libcontainer::process::channel;
use libcontainer::process::init::process::container_init_process;
use libcontainer::syscall::syscall::{SyscallType, create_syscall};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::create::InitArgs;
use super::resources;

/// What berth's own path needs to create a container.
pub struct Plan {
    spec: Spec,
    cgroups: Cgroups,
    cgroup_path: String,
    writes: Vec<resources::Write>,
    /// cgroup v2: the device rules to attach as a BPF program (none when
    /// they allow every device); v1's writes carry them instead.
    device_filter: Option<DeviceRules>,
}

/// Loads the bundle's config and decides the path: `Ok(plan)` for berth's
/// own, `Err(reason)` when libcontainer must create the container (also
/// when the config cannot be read: libcontainer then reports it in full).
pub fn plan(bundle: &Path, systemd: bool) -> Result<Plan, String> {
    if systemd {
        return Err("systemd cgroups".into());
    }
    let mut spec = Spec::load(bundle.join("config.json")).map_err(|e| format!("config: {e}"))?;
    spec.canonicalize_rootfs(bundle)
        .map_err(|e| format!("rootfs: {e}"))?;
    if !spec.version().starts_with("1.") {
        return Err(format!("ociVersion {}", spec.version()));
    }
    if let Some(h) = spec.hooks() {
        let any = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()));
        if any {
            return Err("hooks".into());
        }
    }
    let process = spec.process().as_ref().ok_or("no process")?;
    if process.apparmor_profile().is_some() || process.selinux_label().is_some() {
        return Err("an AppArmor profile or SELinux label".into());
    }
    let linux = spec.linux().as_ref().ok_or("no linux section")?;
    for ns in linux.namespaces().as_deref().unwrap_or(&[]) {
        if matches!(ns.typ(), LinuxNamespaceType::User | LinuxNamespaceType::Time) {
            return Err(format!("a {:?} namespace", ns.typ()));
        }
    }
    let mapped = |m: &Option<Vec<_>>| m.as_ref().is_some_and(|m: &Vec<_>| !m.is_empty());
    if mapped(linux.uid_mappings()) || mapped(linux.gid_mappings()) {
        return Err("uid/gid mappings".into());
    }
    if linux.intel_rdt().is_some()
        || linux.personality().is_some()
        || linux.net_devices().is_some()
        || linux.time_offsets().is_some()
        || linux.mount_label().is_some()
    {
        return Err("intelRdt, personality, netDevices, timeOffsets or mountLabel".into());
    }
    if linux
        .seccomp()
        .as_ref()
        .is_some_and(|s| s.listener_path().is_some())
    {
        return Err("a seccomp listener".into());
    }
    let idmapped = spec
        .mounts()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|m| mapped(m.uid_mappings()) || mapped(m.gid_mappings()));
    if idmapped {
        return Err("id-mapped mounts".into());
    }
    let cgroup_path = linux
        .cgroups_path()
        .as_ref()
        .and_then(|p| p.to_str())
        .filter(|p| p.starts_with('/'))
        .ok_or("a cgroups path that is not an absolute cgroupfs path")?
        .to_owned();
    // The fallback refuses these outright.
    resources::check_file_names(linux.resources().as_ref())?;
    let cgroups = Cgroups::detect().map_err(|e| e.to_string())?;
    if cgroups.version() == CgroupVersion::V2 {
        let writes = resources::v2_writes(linux.resources().as_ref())?;
        let rules = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        let all: Vec<_> = rules.into_iter().chain(device_filter::default_rules()).collect();
        let rules = DeviceRules::from_oci(&all).map_err(|e| e.to_string())?;
        return Ok(Plan {
            spec,
            cgroups,
            cgroup_path,
            writes,
            device_filter: (!rules.allows_everything()).then_some(rules),
        });
    }
    let mut writes = resources::v1_writes(linux.resources().as_ref())?;
    if !cgroups.has_controller("devices") {
        // Nothing to enforce for rules that allow every device
        // (privileged); any other rules the fallback refuses.
        let rules = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        let all = rules.into_iter().chain(device_filter::default_rules());
        if !DeviceRules::from_oci(&all.collect::<Vec<_>>()).is_ok_and(|r| r.allows_everything()) {
            return Err("no devices controller".into());
        }
        writes.retain(|w| w.controller != "devices");
    }
    Ok(Plan {
        spec,
        cgroups,
        cgroup_path,
        writes,
        device_filter: None,
    })
}

/// Undoes a half-made container when dropped before [`Undo::disarm`].
struct Undo<'a> {
    dir: PathBuf,
    cgroups: &'a Cgroups,
    cgroup: Option<&'a str>,
    child: Option<Pid>,
}

impl Undo<'_> {
    fn disarm(mut self) {
        self.cgroup = None;
        self.child = None;
        self.dir = PathBuf::new();
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.child {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(path) = self.cgroup
            && let Err(e) = self.cgroups.remove(path)
        {
            tracing::warn!(%e, "remove the cgroup of a container that failed to start");
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Creates container `id` under `root` as [`plan`] laid out; its init waits
/// for `start`. `bundle` is the directory whose config the plan read.
pub fn create(root: &Path, bundle: &Path, args: &InitArgs, detach: bool, plan: Plan) -> Result<Container> {
    let id = &args.id;
    let Plan {
        spec,
        cgroups,
        cgroup_path,
        writes,
        device_filter,
    } = plan;
    let dir = root.join(id);
    std::fs::create_dir(&dir).with_context(|| match dir.exists() {
        true => format!("container {id} already exists"),
        false => format!("create state directory {}", dir.display()),
    })?;
    let mut undo = Undo {
        dir: dir.clone(),
        cgroups: &cgroups,
        cgroup: None,
        child: None,
    };

    let mut container = Container::new(id, ContainerStatus::Creating, None, bundle, &dir)
        .with_context(|| format!("record container {id}"))?;
    container.set_annotations(spec.annotations().clone());
    container
        .save()
        .with_context(|| format!("save state of container {id}"))?;
    YoukiConfig::from_spec(&spec, id)
        .and_then(|c| c.save(&dir))
        .with_context(|| format!("save config of container {id}"))?;
    let notify = NotifyListener::new(&dir.join(NOTIFY_FILE))
        .with_context(|| format!("listen for the start of container {id}"))?;
    let console = args
        .console_socket
        .as_deref()
        .map(|p| libcontainer::tty::setup_console_socket(&dir, p, "console-socket"))
        .transpose()
        .with_context(|| format!("connect the console socket of container {id}"))?;

    cgroups
        .create(&cgroup_path)
        .with_context(|| format!("create cgroup {cgroup_path} of container {id}"))?;
    undo.cgroup = Some(&cgroup_path);
    for w in &writes {
        cgroups
            .write_controller_file(&cgroup_path, w.controller, &w.file, &w.value)
            .with_context(|| format!("set {} = {} for container {id}", w.file, w.value))?;
    }
    // Before the init is forked: nothing of the container runs unfiltered.
    if let Some(rules) = &device_filter {
        let dir = cgroups.dirs(&cgroup_path)?.remove(0);
        device_filter::attach(&dir, rules).with_context(|| {
            format!(
                "container {id}: its device rules cannot be enforced on this cgroup v2 host; refusing to create a \
                 container that is not privileged"
            )
        })?;
    }

    let rootfs = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
    let rootfs = rootfs
        .canonicalize()
        .with_context(|| format!("resolve root {} of container {id}", rootfs.display()))?;
    let linux = spec.linux().as_ref().context("the config has no linux section")?;
    let namespaces = Namespaces::try_from(linux.namespaces().as_ref())
        .with_context(|| format!("namespaces of container {id}"))?;
    let pid_ns = namespaces
        .get(LinuxNamespaceType::Pid)
        .with_context(|| format!("PID namespace of container {id}"))?
        .cloned();
    let spec = Rc::new(spec);
    let container_args = ContainerArgs {
        container_type: ContainerType::InitContainer,
        syscall: SyscallType::default(),
        spec: Rc::clone(&spec),
        rootfs,
        console_socket: console.as_ref().map(AsRawFd::as_raw_fd),
        notify_listener: notify,
        preserve_fds: args.preserve_fds,
        container: Some(container.clone()),
        user_ns_config: None,
        cgroup_config: CgroupConfig {
            cgroup_path: PathBuf::from(&cgroup_path),
            systemd_cgroup: false,
            container_name: id.clone(),
        },
        detached: detach,
        executor: libcontainer::workload::default::get_executor(),
        no_pivot: args.no_pivot,
        stdin: None,
        stdout: None,
        stderr: None,
        as_sibling: false,
        pid_file: args.pid_file.clone(),
    };

    let (mut init_to_main, mut main_from_init) =
        channel::main_channel().with_context(|| format!("channel to the init of container {id}"))?;
    let (main_to_init, mut init_from_main) =
        channel::init_channel().with_context(|| format!("channel to the init of container {id}"))?;
    // The init waits on this until it sits in the container's cgroup.
    let (go_read, go_write) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;

    // Only the children of this process enter the PID namespace; this
    // process forks nothing after the init.
    if let Some(ns) = &pid_ns {
        namespaces
            .unshare_or_setns(ns)
            .with_context(|| format!("enter the PID namespace of container {id}"))?;
    }
    // SAFETY: `berth oci` is single-threaded (see the module docs of
    // `oci`), so the child may allocate and run arbitrary code; it leaves
    // with `_exit`, never returning into the parent's stack.
    let pid = match unsafe { fork() }.with_context(|| format!("fork the init of container {id}"))? {
        ForkResult::Child => {
            drop(go_write);
            let _ = main_to_init.close();
            let _ = main_from_init.close();
            let code = init_main(
                &container_args,
                &spec,
                go_read,
                &mut init_to_main,
                &mut init_from_main,
            );
            // SAFETY: ends the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    undo.child = Some(pid);
    drop(go_read);
    let _ = init_to_main.close();
    let _ = init_from_main.close();
    let _ = main_to_init.close();

    cgroups
        .add_proc(&cgroup_path, pid.as_raw() as u32)
        .with_context(|| format!("move the init of container {id} into cgroup {cgroup_path}"))?;
    std::fs::File::from(go_write)
        .write_all(b"g")
        .with_context(|| format!("release the init of container {id}"))?;
    main_from_init
        .wait_for_init_ready()
        .with_context(|| format!("set up container {id}"))?;
    if let Some(file) = &args.pid_file {
        std::fs::write(file, pid.as_raw().to_string())
            .with_context(|| format!("write pid file {}", file.display()))?;
    }
    container
        .set_status(ContainerStatus::Created)
        .set_creator(nix::unistd::geteuid().as_raw())
        .set_pid(pid.as_raw())
        .save()
        .with_context(|| format!("save state of container {id}"))?;
    drop(console);
    undo.disarm();
    Ok(container)
}

/// The forked child: waits to be in the cgroup, sets what libcontainer's
/// intermediate process would have set, then becomes the container's init.
/// Returns only on failure, with the exit code.
fn init_main(
    args: &ContainerArgs,
    spec: &Spec,
    go: OwnedFd,
    to_main: &mut channel::MainSender,
    from_main: &mut channel::InitReceiver,
) -> i32 {
    let fail = |to_main: &mut channel::MainSender, msg: String| {
        let _ = to_main.exec_failed(msg);
        1
    };
    let mut byte = [0u8];
    if !matches!(std::fs::File::from(go).read(&mut byte), Ok(1)) {
        return 1;
    }
    let process = spec.process().as_ref();
    let syscall = create_syscall();
    for rlimit in process.and_then(|p| p.rlimits().as_ref()).into_iter().flatten() {
        if let Err(e) = syscall.set_rlimit(rlimit) {
            return fail(to_main, format!("set rlimit {:?}: {e}", rlimit.typ()));
        }
    }
    if let Some(adj) = process.and_then(|p| p.oom_score_adj())
        && let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.to_string())
    {
        return fail(to_main, format!("set oom_score_adj {adj}: {e}"));
    }
    // As libcontainer does before entering namespaces: a non-dumpable
    // process cannot be ptraced or have its /proc files opened by the
    // container's processes.
    // SAFETY: plain prctl call.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    match container_init_process(args, to_main, from_main) {
        Ok(()) => 0,
        Err(e) => fail(to_main, error_chain(&e)),
    }
}

/// An error and its sources on one line: libcontainer's top-level messages
/// ("failed to prepare rootfs") name no object, their sources do.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
