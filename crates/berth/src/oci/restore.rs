//! `berth oci restore`: runc's verb, a container brought back from CRIU's
//! images (written by `checkpoint`) with a new bundle.
//!
//! The new bundle's config decides where the restored processes live:
//! - cgroup: this process creates the config's cgroup, applies its limits
//!   and joins it before it runs CRIU with `--manage-cgroups=ignore`, so the
//!   restored tasks start where CRIU started, in the container's cgroup;
//! - namespaces: a network or PID namespace the config joins was external
//!   at dump time and is handed to CRIU as an inherited fd; UTS and IPC ones
//!   are joined (`--join-ns`); the mount namespace is CRIU's, rebuilt on the
//!   config's root;
//! - external mounts (binds, cgroup hierarchies) map to the new config's
//!   sources and the new cgroup;
//! - stdio: pipes the init had are replaced by this process's own stdio
//!   (the monitor's pipes), through `--inherit-fd`.
//!
//! CRIU runs with `--restore-detached`: once it exits the restored init is
//! reparented to the nearest subreaper, the monitor that ran this command.
//! The state left behind is libcontainer's, as `create` leaves it, so
//! `state`, `kill`, `ps`, `exec` and `delete` work on it unchanged.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use berth_runtime::cgroup::Cgroups;
use libcgroups::common::{CgroupConfig, ControllerOpt};
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};

use super::checkpoint::{
    CGROUP_MOUNT_ROOT, CgroupsMode, CriuOpts, DESCRIPTORS_FILE, EXT_MOUNTS_FILE, ExtMount, NET_NS_KEY,
    PID_NS_KEY, cgroup_mount_destination, namespace_path, rootfs_of, run_criu,
};
use super::devices::{self, DeviceControl};
use super::{Ctx, ensure_root};

/// CRIU's log inside the work directory (the image directory without one).
pub const RESTORE_LOG: &str = "restore.log";
/// Where CRIU writes the restored init's pid, in the work directory.
const CRIU_PID_FILE: &str = "restore.pid";

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuOpts,
    /// Bundle directory (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the restored init's pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility: the restored container always runs
    /// detached (reaped by the nearest subreaper).
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// A pty cannot be handed over yet: refused when given.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub no_pivot: bool,
    /// Container id.
    pub id: String,
}

pub fn restore(ctx: &Ctx, args: RestoreArgs) -> Result<()> {
    let id = &args.id;
    if args.console_socket.is_some() {
        bail!("restore container {id}: containers with a terminal cannot be restored yet");
    }
    let root = ensure_root(&ctx.root)?;
    let dir = root.join(id);
    let bundle = args
        .bundle
        .canonicalize()
        .with_context(|| format!("restore container {id}: bundle {}", args.bundle.display()))?;
    // Decided before anything is made: a host that cannot enforce the
    // config's device rules gets no restored container (as `create`).
    let cgroups = Cgroups::detect().with_context(|| format!("restore container {id}: detect cgroups"))?;
    let devices = devices::prepare(&bundle, id, &cgroups)?;
    let spec = Spec::load(bundle.join("config.json"))
        .with_context(|| format!("restore container {id}: load {}/config.json", bundle.display()))?;
    let rootfs = rootfs_of(&spec, &bundle)?;
    let images = args.criu.image_path.clone();
    let ext: Vec<ExtMount> = read_json(&images.join(EXT_MOUNTS_FILE))?;
    let descriptors: Vec<String> = read_json(&images.join(DESCRIPTORS_FILE))?;
    let cgroup_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .with_context(|| format!("restore container {id}: the config has no cgroupsPath"))?;

    std::fs::create_dir(&dir).with_context(|| match dir.exists() {
        true => format!("restore container {id}: container {id} already exists"),
        false => format!("create state directory {}", dir.display()),
    })?;
    let restored = restore_in(
        ctx,
        &args,
        &spec,
        &bundle,
        &rootfs,
        &cgroup_path,
        &ext,
        &descriptors,
        &devices,
        &dir,
    );
    if restored.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    restored
}

#[allow(clippy::too_many_arguments)]
fn restore_in(
    ctx: &Ctx,
    args: &RestoreArgs,
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    cgroup_path: &Path,
    ext: &[ExtMount],
    descriptors: &[String],
    devices: &DeviceControl,
    dir: &Path,
) -> Result<()> {
    let id = &args.id;
    join_cgroup(ctx, id, spec, cgroup_path)?;
    // libcgroups enforces no device rule on v2: the filter is attached to
    // the cgroup this process just joined before CRIU puts the container's
    // tasks in it, so none of them runs a moment unfiltered.
    devices.enforce_on_own_cgroup(id)?;

    let mut cmd = Command::new(&ctx.criu);
    cmd.arg("restore");
    args.criu.common_args(&mut cmd, RESTORE_LOG)?;
    let work = args.criu.work_path.as_ref().unwrap_or(&args.criu.image_path);
    let criu_pid_file = work.join(CRIU_PID_FILE);
    let _ = std::fs::remove_file(&criu_pid_file);
    cmd.arg("--root")
        .arg(rootfs)
        .arg("--restore-detached")
        .arg("--pidfile")
        .arg(&criu_pid_file);
    // Only ignore keeps the tasks in the cgroup this process joined.
    cmd.arg(
        args.criu
            .manage_cgroups_mode
            .unwrap_or(CgroupsMode::Ignore)
            .criu_arg(),
    );
    for m in ext {
        let source = ext_source(spec, cgroup_path, m)
            .with_context(|| format!("restore container {id}: external mount {}", m.destination()))?;
        cmd.arg("--ext-mount-map")
            .arg(format!("{}:{}", m.destination(), source.display()));
    }

    // Every fd handed to CRIU stays open (without CLOEXEC) until it ran.
    let mut inherited: Vec<OwnedFd> = Vec::new();
    let mut inherit = |cmd: &mut Command, fd: OwnedFd, key: &str| {
        cmd.arg("--inherit-fd")
            .arg(format!("fd[{}]:{key}", fd.as_raw_fd()));
        inherited.push(fd);
    };
    for (typ, key) in [
        (LinuxNamespaceType::Network, NET_NS_KEY),
        (LinuxNamespaceType::Pid, PID_NS_KEY),
    ] {
        if let Some(path) = namespace_path(spec, typ) {
            let f = std::fs::File::open(&path)
                .with_context(|| format!("restore container {id}: namespace {}", path.display()))?;
            inherit(&mut cmd, inheritable(f.into())?, key);
        }
    }
    for (typ, name) in [(LinuxNamespaceType::Uts, "uts"), (LinuxNamespaceType::Ipc, "ipc")] {
        if let Some(path) = namespace_path(spec, typ) {
            cmd.arg("--join-ns").arg(format!("{name}:{}", path.display()));
        }
    }
    for (n, link) in descriptors.iter().enumerate() {
        // Pipes and sockets cannot be reopened by path: our own stdio (the
        // monitor's) takes their place. Files are reopened by CRIU.
        if link.starts_with("pipe:") || link.starts_with("socket:") {
            // SAFETY: fds 0..=2 are open for the duration of this borrow.
            let own = unsafe { std::os::fd::BorrowedFd::borrow_raw(n as i32) };
            let dup = own
                .try_clone_to_owned()
                .with_context(|| format!("restore container {id}: duplicate fd {n}"))?;
            inherit(&mut cmd, inheritable(dup)?, link);
        }
    }
    run_criu(cmd, "restore", id, &args.criu.log_path(RESTORE_LOG))?;
    drop(inherited);

    let pid_text = std::fs::read_to_string(&criu_pid_file).with_context(|| {
        format!(
            "restore container {id}: criu's pid file {}",
            criu_pid_file.display()
        )
    })?;
    let pid: i32 = pid_text
        .trim()
        .parse()
        .with_context(|| format!("restore container {id}: criu's pid file holds {pid_text:?}"))?;
    let mut container = Container::new(id, ContainerStatus::Running, Some(pid), bundle, dir)
        .with_context(|| format!("record container {id}"))?;
    container
        .set_annotations(spec.annotations().clone())
        .set_creator(nix::unistd::geteuid().as_raw())
        .save()
        .with_context(|| format!("save state of container {id}"))?;
    YoukiConfig::from_spec(spec, id)
        .and_then(|c| c.save(dir))
        .with_context(|| format!("save config of container {id}"))?;
    if let Some(file) = &args.pid_file {
        std::fs::write(file, pid.to_string())
            .with_context(|| format!("write pid file {}", file.display()))?;
    }
    tracing::debug!(container = %id, pid, "restored");
    Ok(())
}

/// Creates the config's cgroup with its limits and moves this process in.
fn join_cgroup(ctx: &Ctx, id: &str, spec: &Spec, cgroup_path: &Path) -> Result<()> {
    let manager = libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: cgroup_path.to_owned(),
        systemd_cgroup: ctx.systemd_cgroup,
        container_name: id.to_owned(),
    })
    .with_context(|| format!("restore container {id}: cgroup {}", cgroup_path.display()))?;
    use libcgroups::common::CgroupManager;
    manager
        .add_task(nix::unistd::Pid::this())
        .with_context(|| format!("restore container {id}: join cgroup {}", cgroup_path.display()))?;
    let none = LinuxResources::default();
    let resources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .unwrap_or(&none);
    manager
        .apply(&ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .with_context(|| {
            format!(
                "restore container {id}: limits of cgroup {}",
                cgroup_path.display()
            )
        })
}

/// The host path an external mount of the checkpoint maps to in the new
/// container.
fn ext_source(spec: &Spec, cgroup_path: &Path, m: &ExtMount) -> Result<PathBuf> {
    match m {
        ExtMount::Bind { destination } => spec
            .mounts()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .rev()
            .find(|s| s.destination() == Path::new(destination))
            .and_then(|s| s.source().clone())
            .with_context(|| format!("the new config mounts nothing at {destination}")),
        // The container saw the host's hierarchies (read-only, as runc
        // mounts them) at the host's places under /sys/fs/cgroup: the new one
        // sees the same, its own cgroup for a subtree mount. Nothing else is
        // taken from the archive as a host path.
        ExtMount::Cgroup { destination, subtree } => {
            let host = cgroup_mount_destination(destination)?;
            let source = if *subtree {
                let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
                if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                    bail!(
                        "cgroupsPath {} is not a path below the hierarchy",
                        cgroup_path.display()
                    );
                }
                host.join(rel)
            } else {
                host
            };
            // And it must be a cgroup hierarchy of this host, not a link or
            // a plain directory that happens to sit there.
            let resolved = source
                .canonicalize()
                .with_context(|| format!("host cgroup directory {}", source.display()))?;
            let fs = rustix::fs::statfs(&resolved)
                .with_context(|| format!("host cgroup directory {}", resolved.display()))?;
            if !resolved.starts_with(CGROUP_MOUNT_ROOT)
                || !matches!(fs.f_type as i64, CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC)
            {
                bail!("{} is not a cgroup hierarchy of this host", source.display());
            }
            Ok(resolved)
        }
    }
}

/// statfs(2)'s f_type of cgroup v1 and v2 hierarchies.
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn inheritable(fd: OwnedFd) -> Result<OwnedFd> {
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).context("clear FD_CLOEXEC")?;
    Ok(fd)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("parse {}", path.display()))
}
