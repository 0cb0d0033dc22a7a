//! Helpers for tests that drive the `berth` binary against the test registry
//! (started by scripts/test.sh; see tests/fixtures/registry.sh).

#![allow(dead_code, clippy::new_without_default)]

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

/// One berth instance with its own roots, removed at the end of the test.
pub struct Berth {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Berth {
    pub fn new() -> Berth {
        let dir = tempfile::Builder::new().prefix("berth-test-").tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::create_dir_all(dir.path().join("certs.d")).unwrap();
        std::fs::write(
            &config,
            format!(
                "root = \"{0}/root\"\nstate = \"{0}/state\"\n[registry]\ncerts_dir = \"{0}/certs.d\"\ndocker_config = \"{0}/docker.json\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Berth { dir, config }
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
