//! `/etc/berth/config.toml`: every path berth uses, overridable by flags.

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
