//! `berth oci checkpoint`: runc's verb, CRIU's `dump` of a running
//! container into an image directory.
//!
//! CRIU is run as a command (`--criu`, `criu` in PATH), not through its RPC:
//! its command line is what `criu check` tested and what its log explains.
//! Beside CRIU's images the directory gets two files of berth's own that
//! `restore` needs: [`DESCRIPTORS_FILE`] (what the init's stdio were, as
//! runc writes it) and [`EXT_MOUNTS_FILE`] (the mounts CRIU was told are
//! external, which restore must map to the new container's sources).

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use libcontainer::container::ContainerStatus;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use super::{Ctx, load_container};

/// The init's fds 0, 1 and 2 as `/proc/PID/fd` links (runc's file name).
pub const DESCRIPTORS_FILE: &str = "descriptors.json";
/// The external mounts, a JSON list of [`ExtMount`].
pub const EXT_MOUNTS_FILE: &str = "berth-ext-mounts.json";
/// CRIU's log inside the work directory (the image directory without one).
pub const DUMP_LOG: &str = "dump.log";
/// CRIU's key for an external network namespace (runc's and crun's too).
pub const NET_NS_KEY: &str = "extRootNetNS";
/// CRIU's key for an external PID namespace.
pub const PID_NS_KEY: &str = "extRootPidNS";

/// A mount of the container CRIU must not dump: restore mounts the new
/// container's source there instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExtMount {
    /// A bind mount of the spec; restore takes the source the new spec has
    /// for this destination.
    Bind { destination: String },
    /// A cgroup hierarchy mounted at `destination`; `subtree` when it shows
    /// the container's own cgroup rather than the hierarchy's root.
    Cgroup { destination: String, subtree: bool },
}

impl ExtMount {
    pub fn destination(&self) -> &str {
        match self {
            ExtMount::Bind { destination } | ExtMount::Cgroup { destination, .. } => destination,
        }
    }
}

/// How CRIU treats the container's cgroups (runc's values).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupsMode {
    Soft,
    Full,
    Strict,
    Ignore,
}

impl CgroupsMode {
    pub fn criu_arg(self) -> &'static str {
        match self {
            CgroupsMode::Soft => "--manage-cgroups=soft",
            CgroupsMode::Full => "--manage-cgroups=full",
            CgroupsMode::Strict => "--manage-cgroups=strict",
            CgroupsMode::Ignore => "--manage-cgroups=ignore",
        }
    }
}

/// CRIU options `checkpoint` and `restore` share (runc's flag names).
#[derive(clap::Args, Debug, Clone)]
pub struct CriuOpts {
    /// Directory of CRIU's image files.
    #[arg(long, default_value = "checkpoint")]
    pub image_path: PathBuf,
    /// Directory for CRIU's log and work files (the image path if unset).
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs (a controlling terminal outside the container).
    #[arg(long)]
    pub shell_job: bool,
    /// Allow file locks.
    #[arg(long)]
    pub file_locks: bool,
    /// cgroups mode: soft, full, strict or ignore.
    #[arg(long, value_enum)]
    pub manage_cgroups_mode: Option<CgroupsMode>,
}

impl CriuOpts {
    /// Arguments every CRIU call of ours gets; `log` names the log file.
    pub fn common_args(&self, cmd: &mut Command, log: &str) -> Result<()> {
        let images = make_dir(&self.image_path)?;
        cmd.arg("--images-dir").arg(&images);
        if let Some(w) = &self.work_path {
            cmd.arg("--work-dir").arg(make_dir(w)?);
        }
        cmd.args(["--log-file", log, "-v4"]);
        for (on, flag) in [
            (self.tcp_established, "--tcp-established"),
            (self.ext_unix_sk, "--ext-unix-sk"),
            (self.shell_job, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ] {
            if on {
                cmd.arg(flag);
            }
        }
        Ok(())
    }

    /// Where CRIU's log named `log` ends up.
    pub fn log_path(&self, log: &str) -> PathBuf {
        self.work_path.as_ref().unwrap_or(&self.image_path).join(log)
    }
}

#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub criu: CriuOpts,
    /// Leave the container running after the checkpoint.
    #[arg(long)]
    pub leave_running: bool,
    /// Accepted for runc compatibility: pages are always written to the
    /// image directory.
    #[arg(long, hide = true)]
    pub page_server: Option<String>,
    /// Container id.
    pub id: String,
}

pub fn checkpoint(ctx: &Ctx, args: CheckpointArgs) -> Result<()> {
    let id = &args.id;
    let mut container = load_container(ctx, id)?;
    container
        .refresh_status()
        .with_context(|| format!("status of container {id}"))?;
    if container.status() != ContainerStatus::Running {
        bail!(
            "checkpoint container {id}: it is {:?}, not running",
            container.status()
        );
    }
    let pid = container
        .pid()
        .with_context(|| format!("checkpoint container {id}: no init pid recorded"))?
        .as_raw();
    let bundle = container.bundle().to_owned();
    let spec = Spec::load(bundle.join("config.json"))
        .with_context(|| format!("load the config of container {id}"))?;
    let rootfs = rootfs_of(&spec, &bundle)?;

    let images = make_dir(&args.criu.image_path)?;
    write_descriptors(&images, pid)?;
    let ext = external_mounts(&spec, pid)?;
    std::fs::write(
        images.join(EXT_MOUNTS_FILE),
        serde_json::to_vec_pretty(&ext).expect("mount list serializes"),
    )
    .with_context(|| format!("write {EXT_MOUNTS_FILE} in {}", images.display()))?;

    let mut cmd = Command::new(&ctx.criu);
    cmd.arg("dump").arg("--tree").arg(pid.to_string());
    args.criu.common_args(&mut cmd, DUMP_LOG)?;
    cmd.arg("--root").arg(&rootfs);
    cmd.arg(
        args.criu
            .manage_cgroups_mode
            .unwrap_or(CgroupsMode::Soft)
            .criu_arg(),
    );
    if args.leave_running {
        cmd.arg("--leave-running");
    }
    for m in &ext {
        let d = m.destination();
        cmd.arg("--ext-mount-map").arg(format!("{d}:{d}"));
    }
    for (typ, name, key) in [
        (LinuxNamespaceType::Network, "net", NET_NS_KEY),
        (LinuxNamespaceType::Pid, "pid", PID_NS_KEY),
    ] {
        if let Some(path) = namespace_path(&spec, typ) {
            let ino = ns_inode(&path)?;
            cmd.arg("--external").arg(format!("{name}[{ino}]:{key}"));
        }
    }
    run_criu(cmd, "dump", id, &args.criu.log_path(DUMP_LOG))?;
    if !args.leave_running {
        container
            .refresh_status()
            .with_context(|| format!("status of container {id}"))?;
        super::delete::remove(&mut container, true)?;
        super::bundle::remove_shadow(&ctx.root, id)?;
    }
    Ok(())
}

/// Runs CRIU and turns a failure into an error naming the log and quoting
/// its errors.
pub fn run_criu(mut cmd: Command, verb: &str, id: &str, log: &Path) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{verb} container {id}: cannot run criu {:?}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    let errors: Vec<String> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Error (") && !l.contains("RLIMIT_NOFILE"))
        .map(str::to_owned)
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    bail!(
        "{verb} container {id}: criu {verb} failed ({}), log {}: {}{}",
        out.status,
        log.display(),
        errors.join("; "),
        if errors.is_empty() { stderr.trim() } else { "" }
    )
}

/// The spec's root resolved against the bundle.
pub fn rootfs_of(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .context("the config has no root")?;
    let root = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    root.canonicalize()
        .with_context(|| format!("resolve root {}", root.display()))
}

/// The path the spec gives a namespace of this type (one to join).
pub fn namespace_path(spec: &Spec, typ: LinuxNamespaceType) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == typ)?
        .path()
        .clone()
}

fn ns_inode(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)
        .with_context(|| format!("namespace {}", path.display()))?
        .ino())
}

pub fn make_dir(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create directory {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolve directory {}", dir.display()))
}

fn write_descriptors(images: &Path, pid: i32) -> Result<()> {
    let links: Vec<String> = (0..3)
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/dev/null".into())
        })
        .collect();
    std::fs::write(
        images.join(DESCRIPTORS_FILE),
        serde_json::to_vec(&links).expect("strings serialize"),
    )
    .with_context(|| format!("write {DESCRIPTORS_FILE} in {}", images.display()))
}

/// Mounts whose source lies outside the container: the spec's bind mounts
/// and the cgroup hierarchies (bind mounts of the host's cgroupfs, as the
/// init's mount table shows them).
fn external_mounts(spec: &Spec, pid: i32) -> Result<Vec<ExtMount>> {
    let mut ext = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|o| o == "bind" || o == "rbind");
        if bind {
            ext.push(ExtMount::Bind {
                destination: m.destination().to_string_lossy().into_owned(),
            });
        }
    }
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .with_context(|| format!("read the mount table of process {pid}"))?;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let fstype = right.split(' ').next().unwrap_or_default();
        if fields.len() < 5 || !(fstype == "cgroup" || fstype == "cgroup2") {
            continue;
        }
        let destination = unescape(fields[4]);
        // Restore maps it to the host's same path: nothing but the cgroup
        // mount point can be taken for one.
        cgroup_mount_destination(&destination)
            .with_context(|| format!("process {pid} mounts a cgroup hierarchy at {destination:?}"))?;
        if ext.iter().any(|e: &ExtMount| e.destination() == destination) {
            continue;
        }
        ext.push(ExtMount::Cgroup {
            destination,
            subtree: fields[3] != "/",
        });
    }
    Ok(ext)
}

/// Where cgroup hierarchies are mounted, in a container as on the host.
pub const CGROUP_MOUNT_ROOT: &str = "/sys/fs/cgroup";

/// A cgroup mount's `destination`, lexically normalized, when it is
/// [`CGROUP_MOUNT_ROOT`] or below it without `..`: restore takes it as a
/// host path (the host's hierarchy at the same place), so a mount anywhere
/// else (`/etc`), or a crafted archive, must not name one.
pub fn cgroup_mount_destination(destination: &str) -> Result<PathBuf> {
    let path = Path::new(destination);
    let mut normal = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => normal.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                bail!("cgroup mount point {destination:?} has a `..`")
            }
        }
    }
    if !path.is_absolute() || !normal.starts_with(CGROUP_MOUNT_ROOT) {
        bail!("cgroup mount point {destination:?} is not {CGROUP_MOUNT_ROOT} or below it");
    }
    Ok(normal)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_are_only_taken_at_sys_fs_cgroup() {
        for (dest, normal) in [
            ("/sys/fs/cgroup", "/sys/fs/cgroup"),
            ("/sys/fs/cgroup/", "/sys/fs/cgroup"),
            ("//sys/./fs/cgroup//cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
        ] {
            assert_eq!(
                cgroup_mount_destination(dest).unwrap(),
                Path::new(normal),
                "{dest}"
            );
        }
        for dest in [
            "/etc",
            "/",
            "sys/fs/cgroup",
            "/sys/fs/cgroupx",
            "/sys/fs",
            "/sys/fs/cgroup/../../../etc",
            "/sys/fs/cgroup/cpu/..",
        ] {
            let e = cgroup_mount_destination(dest).unwrap_err();
            assert!(e.to_string().contains(&format!("{dest:?}")), "{dest}: {e}");
        }
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/sys/fs/cgroup/cpu"), "/sys/fs/cgroup/cpu");
    }

    #[test]
    fn ext_mount_json() {
        let m = ExtMount::Cgroup {
            destination: "/sys/fs/cgroup/cpu".into(),
            subtree: true,
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"kind":"cgroup","destination":"/sys/fs/cgroup/cpu","subtree":true}"#
        );
        assert_eq!(serde_json::from_str::<ExtMount>(&s).unwrap(), m);
    }
}
