//! Helpers for tests that drive the `berth` binary against the test registry
//! (started by scripts/test.sh; see tests/fixtures/registry.sh).

#![allow(dead_code, clippy::new_without_default)]

pub mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The loopback registry holding the test images.
pub fn registry() -> String {
    let r = std::env::var("BERTH_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5123".into());
    let ok = std::net::TcpStream::connect(&r).is_ok();
    assert!(
        ok,
        "test registry {r} is not reachable: run the tests with scripts/test.sh, which starts it"
    );
    r
}

/// The mounted cgroup hierarchies: /sys/fs/cgroup itself on a pure v2
/// host (the unified hierarchy is mounted there), else each hierarchy
/// below it (v1 controllers, and the hybrid layout's cgroup2 `unified`).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_owned()];
    }
    std::fs::read_dir(root)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// One berth instance with its own roots, removed at the end of the test.
pub struct Berth {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Berth {
    pub fn new() -> Berth {
        Berth::with_config("")
    }

    /// A berth whose config has `extra` appended (top-level keys first).
    /// Paths are short: a container's sockets live under the state dir and
    /// unix socket paths are limited to 108 bytes.
    pub fn with_config(extra: &str) -> Berth {
        let dir = tempfile::Builder::new().prefix("bt").tempdir_in("/tmp").unwrap();
        let config = dir.path().join("config.toml");
        std::fs::create_dir_all(dir.path().join("certs.d")).unwrap();
        let name = dir.path().file_name().unwrap().to_string_lossy().to_string();
        std::fs::write(
            &config,
            format!(
                "root = \"{0}/root\"\nstate = \"{0}/s\"\ncgroup_parent = \"/berth-test-{name}\"\n{extra}\n[registry]\ncerts_dir = \"{0}/certs.d\"\ndocker_config = \"{0}/docker.json\"\n[cni]\nconf_dir = \"{0}/cni.d\"\nbin_dirs = [\"{0}/cni-bin\", \"/opt/cni/bin\", \"/usr/lib/cni\"]\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Berth { dir, config }
    }

    /// The CNI config dir of this instance (empty: pods get loopback only).
    pub fn cni_dir(&self) -> PathBuf {
        self.dir.path().join("cni.d")
    }

    /// The cgroup parent of this instance's pods.
    pub fn cgroup_parent(&self) -> String {
        format!(
            "/berth-test-{}",
            self.dir.path().file_name().unwrap().to_string_lossy()
        )
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("s")
    }

    /// What this instance left behind: mounts under its dirs, cgroups under
    /// its parent in any hierarchy, processes naming its dirs.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let me = self.dir.path().to_string_lossy().to_string();
        for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
            if line.contains(&me) {
                left.push(format!("mount: {line}"));
            }
        }
        // The parent itself is berth's to keep (as containerd keeps its
        // own); the pods' cgroups below it must be gone.
        let cg = self.cgroup_parent();
        for h in cgroup_hierarchies() {
            let p = h.join(cg.trim_start_matches('/'));
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    left.push(format!("cgroup: {}", e.path().display()));
                }
            }
        }
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains(&me) && e.file_name() != std::process::id().to_string().as_str() {
                    left.push(format!("process {}: {cmd}", e.file_name().to_string_lossy()));
                }
            }
        }
        left
    }

    /// Removes what a failed test left: pods (through berth), then any
    /// mount and cgroup of this instance.
    pub fn cleanup(&self) {
        for ns in ["default", "k8s.io"] {
            let out = self.cmd(ns, &["ps", "-q"]);
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd(ns, &["rm", "--force", id]);
            }
        }
        let me = self.dir.path().to_string_lossy().to_string();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
                && String::from_utf8_lossy(&cmd).contains(&me)
                && let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>()
                && pid != std::process::id() as i32
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
            let me = self.dir.path().to_string_lossy().to_string();
            if let Some(mp) = line.split(' ').nth(4)
                && mp.starts_with(&me)
            {
                let _ = Command::new("umount").args(["-l", mp]).status();
            }
        }
        let cg = self.cgroup_parent();
        for h in cgroup_hierarchies() {
            let p = h.join(cg.trim_start_matches('/'));
            if p.exists() {
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "find {} -name cgroup.procs -exec cat {{}} + | xargs -r kill -9",
                        p.display()
                    ))
                    .status();
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = Command::new("find")
                    .arg(&p)
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .status();
            }
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    pub fn cmd(&self, ns: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--config")
            .arg(&self.config)
            .args(["--namespace", ns])
            .args(args)
            .env_remove("BERTH_ROOT")
            .env_remove("BERTH_STATE")
            .output()
            .expect("run berth")
    }

    /// Runs berth and asserts success; returns stdout.
    pub fn ok(&self, ns: &str, args: &[&str]) -> String {
        let out = self.cmd(ns, args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs berth, asserts failure, returns stderr.
    pub fn fails(&self, ns: &str, args: &[&str]) -> String {
        let out = self.cmd(ns, args);
        assert!(!out.status.success(), "berth {args:?} unexpectedly succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, ns: &str, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(ns, args)).unwrap()
    }

    /// Every committed blob file, by digest.
    pub fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join("content/blobs/sha256"))
            .map(|rd| {
                rd.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn snapshot_dirs(&self) -> usize {
        std::fs::read_dir(self.root().join("snapshots"))
            .map(|rd| {
                rd.filter(|e| e.as_ref().unwrap().file_name() != "staging")
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if std::thread::panicking() || !self.leftovers().is_empty() {
            self.cleanup();
        }
        let cg = self.cgroup_parent();
        for h in cgroup_hierarchies() {
            let _ = std::fs::remove_dir(h.join(cg.trim_start_matches('/')));
        }
    }
}

/// `skopeo inspect --raw` (the manifest bytes) of a registry reference.
pub fn skopeo_raw(reference: &str, config: bool) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false", "--raw"]);
    if config {
        c.arg("--config");
    }
    let out = c
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn sha256_of(data: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data);
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

pub fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo").args(args).output().expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn file_digest(p: &Path) -> String {
    sha256_of(&std::fs::read(p).unwrap())
}

impl Berth {
    /// Starts berth without waiting for it.
    pub fn spawn(&self, ns: &str, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--config")
            .arg(&self.config)
            .args(["--namespace", ns])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn berth")
    }
}
