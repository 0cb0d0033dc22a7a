//! Fixtures for the plugin tests: a netns of the test's own, unique bridge
//! names, temp dirs, script plugins; all undone in Drop guards.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_net::{Cni, CniConfig};

pub const SYSTEM_PLUGINS: &str = "/usr/lib/cni";

/// Six random lowercase hex digits.
pub fn random6() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:06x}", h.finish() & 0xff_ffff)
}

pub fn random_u8() -> u8 {
    u8::from_str_radix(&random6()[..2], 16).unwrap()
}

pub fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A network namespace pinned as a bind mount in a temp dir.
pub struct Netns {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Netns {
    pub fn new() -> Netns {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net");
        let arg = format!("--net={}", path.display());
        std::fs::write(&path, b"").unwrap();
        let (ok, out) = run("unshare", &[&arg, "true"]);
        assert!(ok, "unshare {arg}: {out}");
        Netns { path, _dir: dir }
    }

    /// Runs a command inside the netns.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let arg = format!("--net={}", self.path.display());
        let mut all = vec![arg.as_str()];
        all.extend_from_slice(args);
        run("nsenter", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The namespace (and the container ends of veths in it) goes with
        // its last reference, this mount.
        let _ = run("umount", &[self.path.to_str().unwrap()]);
    }
}

/// Deletes host links on drop (bridges the plugins created).
pub struct LinkGuard(pub Vec<String>);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}

pub fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name]).0
}

/// Temp dirs for one test's configs, cache and plugins.
pub struct Dirs {
    pub root: tempfile::TempDir,
    pub conf: PathBuf,
    pub cache: PathBuf,
    pub bin: PathBuf,
    pub ipam: PathBuf,
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = root.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        Dirs {
            conf: d("net.d"),
            cache: d("cache"),
            bin: d("bin"),
            ipam: d("ipam"),
            root,
        }
    }

    /// A client that looks in this test's bin dir first, then the system
    /// plugins.
    pub fn cni(&self, timeout: Duration) -> Cni {
        Cni::new(CniConfig {
            conf_dirs: vec![self.conf.clone()],
            bin_dirs: vec![self.bin.clone(), PathBuf::from(SYSTEM_PLUGINS)],
            cache_dir: self.cache.clone(),
            timeout,
        })
    }

    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        write_script(&self.bin.join(name), body)
    }
}

pub fn write_script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// The bridge plugin's config, host-local IPAM in `subnet` with its state
/// in `data_dir`; no gateway address and no masquerading on the host.
pub fn bridge_plugin(bridge: &str, subnet: &str, data_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": false,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{ "subnet": subnet }]]
        }
    })
}

/// Files in host-local's dir for `network` whose names are IPs: one per
/// allocation.
pub fn allocated_ips(data_dir: &Path, network: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(network)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}
