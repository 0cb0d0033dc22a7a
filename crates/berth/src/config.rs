//! `/etc/berth/config.toml`: every path berth uses, overridable by flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = "/etc/berth/config.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent state: store, content, snapshots.
    pub root: PathBuf,
    /// Runtime state: sockets, pinned namespaces, monitors.
    pub state: PathBuf,
    pub registry: RegistryConfig,
    /// Runtime handler used when a pod names none: `berth` (the embedded
    /// one), `runc`, `crun`, or a `[runtimes.NAME]` entry.
    pub default_runtime: String,
    /// Parent of the pods' cgroups (cgroupfs driver).
    pub cgroup_parent: String,
    /// Extra runtime handlers: any runc-compatible binary.
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    pub cni: CniSection,
}

/// Pod networking through CNI plugins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniSection {
    /// Network configuration lists; the lexically first is the default network.
    pub conf_dir: PathBuf,
    /// Where plugins are looked for, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// Cached ADD results (what DEL needs) [default: <root>/cni].
    pub cache_dir: Option<PathBuf>,
    /// Seconds one plugin call may take.
    pub timeout: u64,
}

impl Default for CniSection {
    fn default() -> Self {
        CniSection {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            cache_dir: None,
            timeout: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// Only `oci` (a runc-compatible command line) so far.
    #[serde(rename = "type", default = "oci_type")]
    pub kind: String,
    pub path: PathBuf,
    /// Arguments placed before runc's global flags.
    #[serde(default)]
    pub args: Vec<String>,
    /// The runtime's state root [default: <state>/oci/<name>].
    #[serde(default)]
    pub root: Option<PathBuf>,
}

fn oci_type() -> String {
    "oci".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// containerd-style `<host>/hosts.toml` files.
    pub certs_dir: PathBuf,
    /// Docker's credential file; `~/.docker/config.json` when unset.
    pub docker_config: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/var/lib/berth".into(),
            state: "/run/berth".into(),
            registry: RegistryConfig::default(),
            default_runtime: "berth".into(),
            cgroup_parent: "/berth".into(),
            runtimes: BTreeMap::new(),
            cni: CniSection::default(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            certs_dir: "/etc/berth/certs.d".into(),
            docker_config: None,
        }
    }
}

impl Config {
    /// Reads `path`; a missing default file means defaults, a missing file
    /// the user named is an error.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("read config file {}", path.display())),
        }
    }
}

impl Config {
    /// The runtime's options: built-in handlers plus the configured ones.
    pub fn runtime_options(&self) -> anyhow::Result<berth_runtime::RuntimeOptions> {
        let exe = std::env::current_exe().context("locate the berth binary")?;
        let mut opts = berth_runtime::RuntimeOptions::new(self.root.clone(), self.state.clone(), exe);
        for (name, h) in &self.runtimes {
            anyhow::ensure!(
                h.kind == "oci",
                "config: runtimes.{name}.type {:?} is not supported (only \"oci\")",
                h.kind
            );
            opts.handlers.insert(
                name.clone(),
                berth_runtime::handler::OciHandler {
                    name: name.clone(),
                    path: h.path.clone(),
                    args: h.args.clone(),
                    root: h
                        .root
                        .clone()
                        .unwrap_or_else(|| self.state.join("oci").join(name)),
                },
            );
        }
        anyhow::ensure!(
            opts.handlers.contains_key(&self.default_runtime),
            "config: default_runtime {:?} is not a configured runtime ({})",
            self.default_runtime,
            opts.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        opts.default_handler = self.default_runtime.clone();
        opts.cgroup_parent = self.cgroup_parent.clone();
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c: Config = toml::from_str("root = \"/x\"\n[registry]\ncerts_dir = \"/c\"\n").unwrap();
        assert_eq!(c.root, PathBuf::from("/x"));
        assert_eq!(c.state, PathBuf::from("/run/berth"));
        assert_eq!(c.registry.certs_dir, PathBuf::from("/c"));
        let err = toml::from_str::<Config>("rot = \"/x\"").unwrap_err();
        assert!(err.to_string().contains("rot"), "{err}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/berth.toml"))).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/berth.toml"));
    }
}
