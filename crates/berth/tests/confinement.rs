//! The confinement suite: what a container can and cannot do, berth's
//! embedded handler against runc, default and privileged.
//!
//! A static probe (tests/fixtures/confinement/probe.c, compiled here) runs
//! inside `berth run --net none` of the busybox test image, mounted
//! read-only at /probe, and reports each check as `NAME allowed` or `NAME
//! denied REASON` from the syscall's own result. The same runs happen on both
//! handlers, default and `--privileged`; the outcomes are printed as a table
//! (and written as markdown to `$BERTH_CONFINEMENT_TABLE` when set).
//!
//! Asserted for the default container: berth is never less strict than
//! runc, and every check that is an escape is refused under berth outright,
//! whatever runc does. Asserted for privileged: device access, mounts and
//! the writable /proc and /sys work, so "privileged" still means something.
//!
//! "Outside" for ptrace: the container has a PID namespace of its own, so no
//! host process has a pid in it. `ptrace_host_pid` aims at the test's own host
//! pid (it must find nothing: ESRCH, or EPERM from the filter first);
//! `ptrace_pid1` and `process_vm_readv_pid1` aim at the container's own init,
//! the most a process inside can reach.
//!
//! Nothing here harms the host: the real disk is read and opened for writing
//! but never written, writes go only to a loop device over a file of the
//! test, /proc/sysrq-trigger, /proc/sys and /sys files are only opened, and
//! module and kexec calls carry arguments the kernel rejects after its
//! permission check. The devices come from the host generically (the root
//! filesystem's disk, a loop device from `losetup`), so the suite runs the
//! same on cgroup v1 and v2.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Berth, registry};

/// One check's outcome inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    /// The errno name of the refusing syscall, or what was held instead.
    Denied(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Allowed => f.write_str("allowed"),
            Outcome::Denied(why) => f.write_str(why),
        }
    }
}

/// What a check means for the assertions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reaches beyond the container: refused under berth by default.
    Escape,
    /// Harmless by design or inside the container: only compared with runc.
    Compared,
    /// The control for `setuid_root_nnp`: a setuid-root exec must work
    /// without no_new_privs, or the no_new_privs check proves nothing.
    Control,
}

struct Check {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    /// Must be allowed when privileged, on any host.
    privileged_allows: bool,
}

const fn check(name: &'static str, what: &'static str, kind: Kind, privileged_allows: bool) -> Check {
    Check {
        name,
        what,
        kind,
        privileged_allows,
    }
}

use Kind::{Compared, Control, Escape};

/// Every check, in the table's order.
const CHECKS: &[Check] = &[
    check("disk_mknod", "mknod b of the root disk", Compared, true),
    check("disk_read", "read the root disk", Escape, true),
    check("disk_open_wronly", "open the root disk O_WRONLY", Escape, true),
    check("loop_mknod", "mknod b of a loop device", Compared, true),
    check("loop_read", "read the loop device", Escape, true),
    check("loop_write", "write the loop device", Escape, true),
    check("mem_mknod", "mknod c 1:1 (/dev/mem)", Compared, true),
    check("mem_open", "open /dev/mem", Escape, false),
    check("kmsg_mknod", "mknod c 1:11 (/dev/kmsg)", Compared, true),
    check("kmsg_read", "read /dev/kmsg", Escape, true),
    check("kmsg_write", "write /dev/kmsg", Escape, true),
    check(
        "sysrq_trigger_open_wronly",
        "open /proc/sysrq-trigger O_WRONLY",
        Escape,
        true,
    ),
    check(
        "proc_sys_open_wronly",
        "open /proc/sys/vm/drop_caches O_WRONLY",
        Escape,
        true,
    ),
    check(
        "sys_open_wronly",
        "open a /sys/kernel or /sys/power file O_WRONLY",
        Escape,
        true,
    ),
    check(
        "cgroup_procs_open_wronly",
        "open cgroup.procs O_WRONLY, any hierarchy",
        Escape,
        true,
    ),
    check("cgroup_mkdir", "mkdir a cgroup, any hierarchy", Escape, true),
    check("mount_tmpfs", "mount a tmpfs", Escape, true),
    check("unshare_user", "unshare(CLONE_NEWUSER)", Escape, false),
    check("unshare_mount", "unshare(CLONE_NEWNS)", Escape, true),
    check("add_key", "add_key to the process keyring", Escape, false),
    check("keyctl", "keyctl(GET_KEYRING_ID)", Escape, false),
    check(
        "ptrace_pid1",
        "ptrace (seize) the container's pid 1",
        Compared,
        true,
    ),
    check(
        "process_vm_readv_pid1",
        "process_vm_readv of the container's pid 1",
        Compared,
        true,
    ),
    check("ptrace_host_pid", "ptrace (seize) a host pid", Escape, false),
    check(
        "open_by_handle_at",
        "open_by_handle_at of the host fs root (shocker)",
        Escape,
        false,
    ),
    check(
        "bpf_prog_load",
        "bpf(BPF_PROG_LOAD) of a socket filter",
        Escape,
        false,
    ),
    check(
        "perf_event_open",
        "perf_event_open of a software counter",
        Escape,
        false,
    ),
    check(
        "kexec_load",
        "kexec_load past the permission check",
        Escape,
        false,
    ),
    check(
        "init_module",
        "init_module past the permission check",
        Escape,
        false,
    ),
    check(
        "finit_module",
        "finit_module past the permission check",
        Escape,
        false,
    ),
    check("raw_socket", "socket(AF_INET, SOCK_RAW)", Compared, false),
    check(
        "raw_socket_no_net_raw",
        "SOCK_RAW with --cap-drop NET_RAW",
        Escape,
        false,
    ),
    check(
        "caps_uid1000",
        "CapEff/CapPrm after exec as uid 1000",
        Escape,
        false,
    ),
    check(
        "setuid_root",
        "setuid-root exec as uid 1000 gains euid 0",
        Control,
        false,
    ),
    check("caps_uid1000_nnp", "as caps_uid1000, no_new_privs", Escape, false),
    check(
        "setuid_root_nnp",
        "setuid-root exec as uid 1000, no_new_privs",
        Escape,
        false,
    ),
];

const HANDLERS: [&str; 2] = ["berth", "runc"];
const MODES: [Mode; 2] = [Mode::Default, Mode::Privileged];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    Default,
    Privileged,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Privileged => "privileged",
        }
    }
}

/// Outcomes by (handler, mode), then by check name.
type Results = BTreeMap<(&'static str, Mode), BTreeMap<String, Outcome>>;

#[test]
fn berth_confines_at_least_as_strictly_as_runc_and_privileged_still_means_privileged() {
    let work = tempfile::Builder::new()
        .prefix("bconf")
        .tempdir_in("/tmp")
        .unwrap();
    let probe_dir = build_probe(work.path());
    // Declared before the berth instance so pods go first and the loop
    // device is detached after nothing holds it.
    let lo = LoopDevice::attach(&work.path().join("loop.img"));
    let b = Berth::new();
    let image = format!("{}/busybox:latest", registry());
    b.ok("default", &["image", "pull", "-q", &image]);

    let disk = root_disk();
    let loop_dev = lo.major_minor();
    let ctx = RunCtx {
        b: &b,
        image: &image,
        probe_mount: format!("{}:/probe:ro", probe_dir.display()),
        work: work.path(),
    };
    let mut results = Results::new();
    let mut failures = Vec::new();
    for handler in HANDLERS {
        for mode in MODES {
            let mark = format!("berth-confinement-{handler}-{}", mode.name());
            let root_args = [
                "/probe/probe".to_string(),
                "root".into(),
                format!("{}:{}", disk.0, disk.1),
                format!("{}:{}", loop_dev.0, loop_dev.1),
                std::process::id().to_string(),
                mark.clone(),
            ];
            let mut got = ctx.probe(handler, mode, &[], &root_args);
            // Did the loop write reach the backing file? Seen from the host.
            let reached = std::fs::read(lo.file()).unwrap().starts_with(mark.as_bytes());
            if reached != (got.get("loop_write") == Some(&Outcome::Allowed)) {
                failures.push(format!(
                    "{handler}/{}: loop_write reported {:?} but the host {} the data",
                    mode.name(),
                    got.get("loop_write"),
                    if reached { "sees" } else { "does not see" }
                ));
            }
            got.extend(ctx.probe(
                handler,
                mode,
                &["--cap-drop", "NET_RAW"],
                &["/probe/probe", "raw", "raw_socket_no_net_raw"].map(String::from),
            ));
            got.extend(ctx.probe(
                handler,
                mode,
                &["-u", "1000"],
                &["/probe/probe", "nonroot", "caps_uid1000", "setuid_root"].map(String::from),
            ));
            // berth run has no no_new_privs flag: a manifest's
            // allowPrivilegeEscalation: false is how it is asked for. Kubernetes
            // refuses it together with privileged, so only the default runs it.
            if mode == Mode::Default {
                got.extend(ctx.probe_no_new_privs(handler));
            }
            results.insert((handler, mode), got);
        }
    }

    let host_cannot = host_cannot(disk);
    let mut table = markdown_table(&results);
    if !host_cannot.is_empty() {
        table.push_str(&format!(
            "\nThe host's root itself cannot: {} (not required of privileged here).\n",
            host_cannot.join(", ")
        ));
    }
    println!("\n{table}");
    if let Ok(path) = std::env::var("BERTH_CONFINEMENT_TABLE") {
        std::fs::write(&path, &table).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }

    failures.extend(judge(&results, &host_cannot));
    assert!(
        failures.is_empty(),
        "confinement failures:\n{}",
        failures.join("\n")
    );
    let left = b.leftovers();
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}

/// Every assertion over the outcomes, as messages.
fn judge(results: &Results, host_cannot: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    let get = |handler, mode, name: &str| results.get(&(handler, mode)).and_then(|r| r.get(name));
    for c in CHECKS {
        let berth = get("berth", Mode::Default, c.name);
        let runc = get("runc", Mode::Default, c.name);
        match (berth, runc) {
            (Some(Outcome::Allowed), Some(Outcome::Denied(why))) => failures.push(format!(
                "{}: berth allows what runc refuses ({why}) in a default container",
                c.name
            )),
            (None, _) | (_, None) => failures.push(format!("{}: no outcome in a default container", c.name)),
            _ => {}
        }
        match (c.kind, berth) {
            (Kind::Escape, Some(Outcome::Allowed)) => {
                failures.push(format!("{}: an escape ({}) is allowed in berth's default container", c.name, c.what))
            }
            (Kind::Control, Some(Outcome::Denied(why))) => failures.push(format!(
                "{}: refused ({why}) without no_new_privs, so setuid_root_nnp proves nothing (a nosuid mount?)",
                c.name
            )),
            _ => {}
        }
        if c.privileged_allows && !host_cannot.contains(&c.name) {
            for handler in HANDLERS {
                let got = get(handler, Mode::Privileged, c.name);
                if got != Some(&Outcome::Allowed) {
                    failures.push(format!(
                        "{}: {} privileged refuses {} ({})",
                        c.name,
                        handler,
                        c.what,
                        got.map_or("no outcome".to_string(), |o| o.to_string())
                    ));
                }
            }
        }
    }
    for ((handler, mode), got) in results {
        for name in got.keys() {
            if !CHECKS.iter().any(|c| c.name == name) {
                failures.push(format!("{handler}/{}: unknown check {name}", mode.name()));
            }
        }
    }
    failures
}

/// check × {berth, runc} × {default, privileged}, in markdown.
fn markdown_table(results: &Results) -> String {
    let cols = [
        ("berth", Mode::Default),
        ("runc", Mode::Default),
        ("berth", Mode::Privileged),
        ("runc", Mode::Privileged),
    ];
    let mut rows = vec![
        vec![
            "check".to_string(),
            "berth default".into(),
            "runc default".into(),
            "berth privileged".into(),
            "runc privileged".into(),
        ],
        Vec::new(),
    ];
    for c in CHECKS {
        let mut row = vec![format!("{} ({})", c.name, c.what)];
        for col in cols {
            row.push(
                results
                    .get(&col)
                    .and_then(|r| r.get(c.name))
                    .map_or("–".to_string(), |o| o.to_string()),
            );
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = if row.is_empty() {
            widths.iter().map(|w| "-".repeat(*w)).collect()
        } else {
            row.iter()
                .zip(&widths)
                .map(|(s, w)| format!("{s}{}", " ".repeat(w - s.chars().count())))
                .collect()
        };
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

struct RunCtx<'a> {
    b: &'a Berth,
    image: &'a str,
    probe_mount: String,
    work: &'a Path,
}

impl RunCtx<'_> {
    /// `berth run --net none` of the probe; its outcomes by check.
    fn probe(&self, handler: &str, mode: Mode, extra: &[&str], cmd: &[String]) -> BTreeMap<String, Outcome> {
        let mut args: Vec<&str> = vec![
            "run",
            "--name",
            "probe",
            "-q",
            "--net",
            "none",
            "-v",
            self.probe_mount.as_str(),
        ];
        if handler != "berth" {
            // The embedded handler is the default one: run it as such.
            args.extend(["--runtime", handler]);
        }
        if mode == Mode::Privileged {
            args.push("--privileged");
        }
        args.extend(extra);
        args.extend([self.image, "--"]);
        args.extend(cmd.iter().map(String::as_str));
        self.outcomes(&args, "probe")
    }

    /// The non-root checks with no_new_privs, from a Pod manifest.
    fn probe_no_new_privs(&self, handler: &str) -> BTreeMap<String, Outcome> {
        let manifest = format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: nnp
spec:
  containers:
  - name: probe
    image: {image}
    command: ["/probe/probe", "nonroot", "caps_uid1000_nnp", "setuid_root_nnp"]
    securityContext:
      runAsUser: 1000
      allowPrivilegeEscalation: false
"#,
            image = self.image
        );
        let file = self.work.join("nnp.yaml");
        std::fs::write(&file, manifest).unwrap();
        let file = file.to_str().unwrap();
        let mut args = vec!["run", "-q", "--net", "none", "-v", self.probe_mount.as_str()];
        if handler != "berth" {
            args.extend(["--runtime", handler]);
        }
        args.extend(["-f", file]);
        self.outcomes(&args, "nnp")
    }

    /// Runs the pod in the foreground and reads the outcomes from its log
    /// (what the monitor recorded of the probe's stdout), then removes it.
    fn outcomes(&self, args: &[&str], pod: &str) -> BTreeMap<String, Outcome> {
        let out = self.b.cmd("default", args);
        let logs = self.b.cmd("default", &["logs", pod]);
        let rm = self.b.cmd("default", &["rm", "--force", pod]);
        let stderr = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&logs.stderr)
        );
        let stdout = String::from_utf8_lossy(&logs.stdout);
        assert!(
            out.status.success() && logs.status.success() && rm.status.success(),
            "berth {args:?} ({}), logs ({}), rm ({}):\nstdout: {stdout}\nstderr: {stderr}{}",
            out.status,
            logs.status,
            rm.status,
            String::from_utf8_lossy(&rm.stderr)
        );
        let mut got = BTreeMap::new();
        for line in stdout.lines() {
            let outcome = match line.split(' ').collect::<Vec<_>>()[..] {
                [name, "allowed"] => (name, Outcome::Allowed),
                [name, "denied", why] => (name, Outcome::Denied(why.to_string())),
                _ => panic!("berth {args:?}: not a probe line: {line:?}\nstdout: {stdout}\nstderr: {stderr}"),
            };
            got.insert(outcome.0.to_string(), outcome.1);
        }
        assert!(!got.is_empty(), "berth {args:?}: no outcomes\nstderr: {stderr}");
        got
    }
}

/// Compiles the probe into `work/probe/`: `probe`, and `suid`, a setuid-root
/// copy, in a directory anyone may enter (uid 1000 runs them).
fn build_probe(work: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/confinement/probe.c");
    let dir = work.join("probe");
    std::fs::create_dir(&dir).unwrap();
    let probe = dir.join("probe");
    let out = Command::new("cc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&probe)
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let suid = dir.join("suid");
    std::fs::copy(&probe, &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// major:minor of the disk holding the root filesystem: from the root mount
/// in /proc/self/mountinfo, else its source device, else the first block
/// device of the machine that is not a virtual one (loop, zram, ram).
fn root_disk() -> (u32, u32) {
    let is_block = |maj: u32, min: u32| Path::new(&format!("/sys/dev/block/{maj}:{min}")).exists();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // The last mount on / is the one seen.
    if let Some(line) = mountinfo.lines().rev().find(|l| l.split(' ').nth(4) == Some("/")) {
        let fields: Vec<&str> = line.split(' ').collect();
        if let Some((maj, min)) = fields[2].split_once(':')
            && let (Ok(maj), Ok(min)) = (maj.parse(), min.parse())
            && maj != 0
            && is_block(maj, min)
        {
            return (maj, min);
        }
        // btrfs and the like show an anonymous device: try the source.
        let source = line.split(" - ").nth(1).and_then(|t| t.split(' ').nth(1));
        if let Some(src) = source.filter(|s| s.starts_with("/dev/"))
            && let Ok(meta) = std::fs::metadata(src)
            && meta.file_type().is_block_device()
        {
            let rdev = meta.rdev();
            return (libc_major(rdev), libc_minor(rdev));
        }
    }
    let mut devs: Vec<_> = std::fs::read_dir("/sys/dev/block")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|t| !t.to_string_lossy().contains("/virtual/"))
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    devs.sort();
    let first = devs
        .first()
        .expect("no block device on this machine for the disk checks");
    let (maj, min) = first.split_once(':').unwrap();
    (maj.parse().unwrap(), min.parse().unwrap())
}

/// Checks the host's own root cannot pass either (so privileged cannot):
/// a disk the host refuses to open (this VM's host refuses its root disk
/// with EPERM), no /proc/sysrq-trigger (no CONFIG_MAGIC_SYSRQ).
fn host_cannot(disk: (u32, u32)) -> Vec<&'static str> {
    let mut cannot = Vec::new();
    // The disk's node in the host's /dev, if it has one.
    let node = std::fs::read_dir("/dev").unwrap().flatten().find(|e| {
        e.metadata().is_ok_and(|m| {
            m.file_type().is_block_device() && (libc_major(m.rdev()), libc_minor(m.rdev())) == disk
        })
    });
    if let Some(node) = node {
        if std::fs::File::open(node.path()).is_err() {
            cannot.push("disk_read");
        }
        if std::fs::OpenOptions::new().write(true).open(node.path()).is_err() {
            cannot.push("disk_open_wronly");
        }
    }
    if !Path::new("/proc/sysrq-trigger").exists() {
        cannot.push("sysrq_trigger_open_wronly");
    }
    cannot
}

fn libc_major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)) as u32
}

fn libc_minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)) as u32
}

/// A loop device over a small file of the test's, detached on drop (also when
/// the test fails). Device nodes the host lacked are made for `losetup` and
/// removed again.
struct LoopDevice {
    dev: PathBuf,
    file: PathBuf,
    made_nodes: Vec<PathBuf>,
}

impl LoopDevice {
    fn attach(file: &Path) -> LoopDevice {
        std::fs::write(file, vec![0u8; 1 << 20]).unwrap();
        let mut lo = LoopDevice {
            dev: PathBuf::new(),
            file: file.to_path_buf(),
            made_nodes: Vec::new(),
        };
        let losetup = || {
            Command::new("losetup")
                .args(["-f", "--show"])
                .arg(file)
                .output()
                .expect("run losetup")
        };
        let mut out = losetup();
        if !out.status.success() {
            // No /dev/loop-control (or no free node): the kernel may still
            // have loop devices that /dev lacks nodes for.
            lo.make_missing_loop_nodes();
            out = losetup();
        }
        assert!(
            out.status.success(),
            "losetup -f --show {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        lo.dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        lo
    }

    fn make_missing_loop_nodes(&mut self) {
        for e in std::fs::read_dir("/sys/block").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let node = Path::new("/dev").join(&name);
            if !name.starts_with("loop") || node.exists() {
                continue;
            }
            let Ok(majmin) = std::fs::read_to_string(e.path().join("dev")) else {
                continue;
            };
            let Some((maj, min)) = majmin.trim().split_once(':') else {
                continue;
            };
            let ok = Command::new("mknod")
                .arg(&node)
                .args(["b", maj, min])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                self.made_nodes.push(node);
            }
        }
    }

    fn major_minor(&self) -> (u32, u32) {
        let rdev = std::fs::metadata(&self.dev).unwrap().rdev();
        (libc_major(rdev), libc_minor(rdev))
    }

    fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if !self.dev.as_os_str().is_empty() {
            let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        }
        for node in &self.made_nodes {
            let _ = std::fs::remove_file(node);
        }
    }
}
