//! A generated spec run for real by Debian's runc: the kernel's view of the
//! process (capabilities, seccomp mode, no_new_privs) must be what the spec
//! generator promised. Needs root, /usr/sbin/runc and /bin/busybox
//! (busybox-static); skipped with a message where they are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::model::{ContainerConfig, ImageRun, NamespaceOptions, NsMode, PodConfig, Seccomp};
use crate::spec::{
    DEFAULT_CAPABILITIES, HostInfo, PodFiles, PodNamespacePaths, SpecInput, capability_mask,
    capability_number, generate_with,
};

const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";

/// A bundle with a busybox rootfs and its own runc state directory; the
/// container and its cgroup are removed on drop, also after a failure.
struct Bundle {
    dir: tempfile::TempDir,
    id: String,
    cgroup: String,
}

impl Bundle {
    fn new() -> Bundle {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for applet in ["sh", "cat"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        for d in ["proc", "dev", "sys", "etc", "tmp"] {
            std::fs::create_dir_all(dir.path().join("rootfs").join(d)).unwrap();
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let unique = format!(
            "{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Bundle {
            dir,
            id: format!("berth-spec-{unique}"),
            cgroup: format!("/berth-test-{unique}"),
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs the container in the foreground and returns its stdout.
    fn run(&self, spec: &oci_spec::runtime::Spec) -> String {
        let config = serde_json::to_vec_pretty(spec).unwrap();
        std::fs::write(self.dir.path().join("config.json"), config).unwrap();
        let out = Command::new(RUNC)
            .arg("--root")
            .arg(self.state())
            .args(["run", "--bundle"])
            .arg(self.dir.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "runc run failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new(RUNC)
            .arg("--root")
            .arg(self.state())
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // runc removes the cgroup itself; this covers a run that died early.
        let rel = self.cgroup.trim_start_matches('/');
        let mut dirs = vec![Path::new("/sys/fs/cgroup").join(rel)];
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            dirs.extend(entries.flatten().map(|e| e.path().join(rel)));
        }
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn usable() -> bool {
    let ok = rustix::process::geteuid().is_root() && Path::new(RUNC).exists() && Path::new(BUSYBOX).exists();
    if !ok {
        eprintln!("skipped: needs root, {RUNC} and {BUSYBOX}");
    }
    ok
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status:\n{status}"))
}

fn run_status(no_new_privs: bool) -> String {
    let bundle = Bundle::new();
    let pod = PodConfig {
        name: "spec-test".into(),
        namespaces: NamespaceOptions {
            network: NsMode::Container,
            pid: NsMode::Container,
            ipc: NsMode::Container,
            target_id: None,
        },
        ..Default::default()
    };
    let mut container = ContainerConfig {
        name: "status".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            // A user namespace needs unshare(2), which the profile refuses
            // without CAP_SYS_ADMIN even though unprivileged users may
            // otherwise create one.
            "cat /proc/self/status; busybox unshare -U true && echo unshare=allowed || echo unshare=refused"
                .into(),
        ],
        ..Default::default()
    };
    container.security.seccomp = Some(Seccomp::RuntimeDefault);
    container.security.no_new_privs = no_new_privs;
    let rootfs = bundle.rootfs();
    let input = SpecInput {
        id: &bundle.id,
        pod: &pod,
        container: &container,
        image: &ImageRun::default(),
        rootfs: &rootfs,
        cgroups_path: &bundle.cgroup,
        pod_namespaces: &PodNamespacePaths::default(),
        pod_files: &PodFiles::default(),
    };
    let generated = generate_with(&input, HostInfo::detected()).unwrap();
    bundle.run(&generated.spec)
}

fn default_mask() -> u64 {
    let caps = DEFAULT_CAPABILITIES
        .iter()
        .map(|n| capability_number(n).unwrap())
        .collect();
    capability_mask(&caps)
}

#[test]
fn runc_runs_the_default_spec_with_default_caps_and_seccomp() {
    if !usable() {
        return;
    }
    // Docker's and containerd's well-known default mask.
    assert_eq!(default_mask(), 0xa804_25fb);
    for nnp in [true, false] {
        let status = run_status(nnp);
        let cap_eff = u64::from_str_radix(status_field(&status, "CapEff"), 16).unwrap();
        assert_eq!(cap_eff, default_mask(), "CapEff with no_new_privs={nnp}");
        let cap_bnd = u64::from_str_radix(status_field(&status, "CapBnd"), 16).unwrap();
        assert_eq!(cap_bnd, default_mask(), "CapBnd with no_new_privs={nnp}");
        assert_eq!(status_field(&status, "Seccomp"), "2");
        assert_eq!(status_field(&status, "NoNewPrivs"), if nnp { "1" } else { "0" });
    }
}
