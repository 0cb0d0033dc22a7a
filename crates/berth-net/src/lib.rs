//! berth's CNI client.
//!
//! Plugins run as child processes with an environment built for each call
//! (nothing of the daemon's own environment leaks in, and nothing is set
//! process-wide), so [`Cni`] is safe to share between threads. Every call
//! blocks: async callers run it in `spawn_blocking`.
//!
//! ADD caches the list it ran and the final result under
//! `<cache_dir>/results/`, so DEL releases exactly what ADD set up, even
//! after a restart or after the config files changed.

mod attachment;
mod cache;
mod config;
mod error;
mod exec;
mod result;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::{debug, info, warn};

pub use attachment::{Attachment, AttachmentKey, Bandwidth, Capabilities, DnsCapability, PortMapping};
pub use config::NetworkList;
pub use error::{CniError, PluginErrorBody, PluginFailure};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};

use attachment::{cni_args, runtime_config_for, validate_ids};
use cache::{Cache, CacheEntry};
use config::{at_least, conf_files, is_valid_network_name, load_file};
use exec::{Exec, Invocation};

/// The spec version VERSION is asked in: every plugin since 2021 knows it.
const VERSION_QUERY: &str = "1.0.0";

/// Where configs, plugins and the cache live, and how long a plugin may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniConfig {
    /// Searched in order; the first holding any config file gives the
    /// default network.
    pub conf_dirs: Vec<PathBuf>,
    /// Searched in order for plugin binaries; also the plugins' CNI_PATH.
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// For each plugin call; the plugin's process group is killed after it.
    pub timeout: Duration,
}

impl Default for CniConfig {
    fn default() -> CniConfig {
        CniConfig {
            conf_dirs: vec![PathBuf::from("/etc/cni/net.d")],
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cache_dir: PathBuf::from("/var/lib/berth/cni"),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A plugin's answer to VERSION.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

/// The CNI client. Holds no state beyond its config: the cache is on disk.
#[derive(Clone, Debug)]
pub struct Cni {
    cfg: CniConfig,
}

/// Per-call inputs shared by every plugin of a list.
struct ListCall<'a> {
    net: &'a NetworkList,
    inv: Invocation<'a>,
    caps: &'a Map<String, Value>,
}

impl Cni {
    pub fn new(cfg: CniConfig) -> Cni {
        Cni { cfg }
    }

    pub fn config(&self) -> &CniConfig {
        &self.cfg
    }

    /// The lexically first config file of the first conf dir that has
    /// one. A malformed first file is an error naming it, not skipped.
    pub fn default_network(&self) -> Result<NetworkList, CniError> {
        for dir in &self.cfg.conf_dirs {
            if let Some(first) = conf_files(dir)?.first() {
                return load_file(first);
            }
        }
        Err(CniError::NoNetwork {
            dirs: self.cfg.conf_dirs.clone(),
        })
    }

    /// The first network called `name`, in dir then file order. When it is
    /// not found and some file was malformed, that file's error is returned
    /// (it may have been the one wanted).
    pub fn network(&self, name: &str) -> Result<NetworkList, CniError> {
        let mut broken = None;
        for dir in &self.cfg.conf_dirs {
            for file in conf_files(dir)? {
                match load_file(&file) {
                    Ok(net) if net.name == name => return Ok(net),
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "skipping a malformed CNI config while looking for {name}");
                        broken.get_or_insert(e);
                    }
                }
            }
        }
        Err(broken.unwrap_or_else(|| CniError::NetworkNotFound {
            name: name.to_string(),
            dirs: self.cfg.conf_dirs.clone(),
        }))
    }

    /// Every config file of every conf dir; a malformed one is an error.
    pub fn networks(&self) -> Result<Vec<NetworkList>, CniError> {
        let mut nets = Vec::new();
        for dir in &self.cfg.conf_dirs {
            for file in conf_files(dir)? {
                nets.push(load_file(&file)?);
            }
        }
        Ok(nets)
    }

    /// Runs ADD for each plugin in order, each getting the previous one's
    /// result as `prevResult`, and caches the final result with the list
    /// before returning it. On failure the plugins run so far, the failed
    /// one included (it may have done half its work), get DEL in reverse.
    pub fn add(&self, net: &NetworkList, att: &Attachment) -> Result<CniResult, CniError> {
        validate_ids(&att.container_id, &att.ifname)?;
        let args = cni_args(&att.args)?;
        let netns = netns_str(&att.netns)?;
        let caps = att.capabilities.to_map();
        let call = ListCall {
            net,
            inv: Invocation {
                command: "ADD",
                container_id: &att.container_id,
                netns,
                ifname: &att.ifname,
                args: &args,
            },
            caps: &caps,
        };
        info!(container_id = %att.container_id, network = %net.name, "CNI ADD");
        let mut prev: Option<CniResult> = None;
        for i in 0..net.plugins.len() {
            let step = self
                .invoke(&call, i, prev.as_ref().map(CniResult::raw))
                .and_then(|out| parse_add_output(net, i, &out));
            match step {
                Ok(r) => prev = Some(r),
                Err(e) => {
                    self.rollback(&call, i, prev.as_ref().map(CniResult::raw));
                    return Err(e);
                }
            }
        }
        let result = prev.expect("a list has at least one plugin");
        let entry = CacheEntry {
            kind: cache::KIND.to_string(),
            container_id: att.container_id.clone(),
            if_name: att.ifname.clone(),
            network_name: net.name.clone(),
            netns: att.netns.clone(),
            config: net.raw().clone(),
            result: result.raw().clone(),
            cni_args: att.args.clone(),
            capabilities: caps.clone(),
        };
        // Without the cache entry a restarted daemon could not DEL what
        // this ADD set up, so an unrecorded ADD is undone.
        if let Err(e) = self.cache().write(&entry) {
            self.rollback(&call, net.plugins.len() - 1, Some(result.raw()));
            return Err(e);
        }
        Ok(result)
    }

    /// Runs DEL for each plugin in reverse, with the config, CNI_ARGS,
    /// capabilities and result that ADD cached; without a cache entry, with
    /// the current network of that name (none: nothing to do). A netns file
    /// that is gone is passed as an empty CNI_NETNS, as the spec allows.
    /// Removes the cache entry once every plugin succeeded; idempotent.
    pub fn del(&self, key: &AttachmentKey) -> Result<(), CniError> {
        validate_ids(&key.container_id, &key.ifname)?;
        if !is_valid_network_name(&key.network) {
            return Err(CniError::InvalidAttachment(format!(
                "network name {:?} is not valid",
                key.network
            )));
        }
        let cache = self.cache();
        let cached = cache.read(&key.network, &key.container_id, &key.ifname)?;
        let (net, prev, args, caps) = match cached {
            Some(entry) => {
                let source = cache.path(&key.network, &key.container_id, &key.ifname);
                let net = NetworkList::from_value(entry.config, source)?;
                (net, Some(entry.result), entry.cni_args, entry.capabilities)
            }
            None => match self.network(&key.network) {
                Ok(net) => (net, None, Vec::new(), Map::new()),
                Err(CniError::NetworkNotFound { .. } | CniError::NoNetwork { .. }) => {
                    info!(container_id = %key.container_id, network = %key.network,
                        "CNI DEL: nothing cached and no such network, nothing to do");
                    return Ok(());
                }
                Err(e) => return Err(e),
            },
        };
        let args = cni_args(&args)?;
        let netns = if key.netns.exists() {
            netns_str(&key.netns)?
        } else {
            ""
        };
        let call = ListCall {
            net: &net,
            inv: Invocation {
                command: "DEL",
                container_id: &key.container_id,
                netns,
                ifname: &key.ifname,
                args: &args,
            },
            caps: &caps,
        };
        info!(container_id = %key.container_id, network = %key.network, cached = prev.is_some(), "CNI DEL");
        for i in (0..net.plugins.len()).rev() {
            self.invoke(&call, i, prev.as_ref())?;
        }
        cache.remove(&key.network, &key.container_id, &key.ifname)
    }

    /// Runs CHECK for each plugin in order against the cached ADD result.
    /// Lists with `disableCheck` pass; versions before 0.4.0 have no CHECK.
    pub fn check(&self, net: &NetworkList, att: &Attachment) -> Result<(), CniError> {
        validate_ids(&att.container_id, &att.ifname)?;
        if !at_least(&net.cni_version, (0, 4, 0)) {
            return Err(CniError::Unsupported {
                network: net.name.clone(),
                command: "CHECK",
                version: net.cni_version.clone(),
            });
        }
        if net.disable_check {
            return Ok(());
        }
        let entry = self
            .cache()
            .read(&net.name, &att.container_id, &att.ifname)?
            .ok_or_else(|| CniError::NotAttached {
                network: net.name.clone(),
                container_id: att.container_id.clone(),
                ifname: att.ifname.clone(),
            })?;
        let args = cni_args(&att.args)?;
        let caps = att.capabilities.to_map();
        let call = ListCall {
            net,
            inv: Invocation {
                command: "CHECK",
                container_id: &att.container_id,
                netns: netns_str(&att.netns)?,
                ifname: &att.ifname,
                args: &args,
            },
            caps: &caps,
        };
        for i in 0..net.plugins.len() {
            self.invoke(&call, i, Some(&entry.result))?;
        }
        Ok(())
    }

    /// Asks a plugin which spec versions it supports.
    pub fn version(&self, plugin_type: &str) -> Result<VersionInfo, CniError> {
        let inv = Invocation {
            command: "VERSION",
            ..Default::default()
        };
        let stdin = serde_json::json!({ "cniVersion": VERSION_QUERY }).to_string();
        let out = self.exec().run(plugin_type, &inv, stdin.as_bytes())?;
        serde_json::from_slice(&out).map_err(|e| CniError::BadOutput {
            plugin: plugin_type.to_string(),
            command: "VERSION",
            reason: e.to_string(),
        })
    }

    /// CNI 1.1 STATUS: whether the network is ready for ADDs. Lists older
    /// than 1.1.0, and plugins that support no 1.1 version or do not know
    /// the command, count as ready.
    pub fn status(&self, net: &NetworkList) -> Result<(), CniError> {
        if !at_least(&net.cni_version, (1, 1, 0)) {
            return Ok(());
        }
        let caps = Map::new();
        let call = ListCall {
            net,
            inv: Invocation {
                command: "STATUS",
                ..Default::default()
            },
            caps: &caps,
        };
        for i in 0..net.plugins.len() {
            let info = self.version(net.plugin_type(i))?;
            if !info.supported_versions.iter().any(|v| at_least(v, (1, 1, 0))) {
                continue;
            }
            match self.invoke(&call, i, None) {
                Ok(_) => {}
                Err(e) if is_unknown_command(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn exec(&self) -> Exec<'_> {
        Exec {
            bin_dirs: &self.cfg.bin_dirs,
            timeout: self.cfg.timeout,
        }
    }

    fn cache(&self) -> Cache<'_> {
        Cache {
            dir: &self.cfg.cache_dir,
        }
    }

    /// Runs plugin `index` of the list with its config on stdin.
    fn invoke(&self, call: &ListCall<'_>, index: usize, prev: Option<&Value>) -> Result<Vec<u8>, CniError> {
        let plugin_type = call.net.plugin_type(index);
        let stdin = plugin_stdin(call.net, index, prev, call.caps);
        debug!(
            plugin = plugin_type,
            command = call.inv.command,
            container_id = call.inv.container_id,
            "running CNI plugin"
        );
        self.exec().run(plugin_type, &call.inv, &stdin)
    }

    /// DEL for plugins `0..=last` in reverse, best effort: errors are
    /// logged, the caller returns the error that caused the rollback.
    fn rollback(&self, call: &ListCall<'_>, last: usize, prev: Option<&Value>) {
        let del = ListCall {
            inv: Invocation {
                command: "DEL",
                ..call.inv.clone()
            },
            ..*call
        };
        for i in (0..=last).rev() {
            if let Err(e) = self.invoke(&del, i, prev) {
                warn!(container_id = del.inv.container_id, network = %call.net.name, error = %e,
                    "CNI rollback DEL failed");
            }
        }
    }
}

/// One plugin's config as the spec has the runtime build it: the list's
/// name and cniVersion, the previous result, and the runtimeConfig of the
/// capabilities the plugin declares.
fn plugin_stdin(net: &NetworkList, index: usize, prev: Option<&Value>, caps: &Map<String, Value>) -> Vec<u8> {
    let plugin = &net.plugins[index];
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), Value::String(net.name.clone()));
    conf.insert("cniVersion".into(), Value::String(net.cni_version.clone()));
    match prev {
        Some(p) => conf.insert("prevResult".into(), p.clone()),
        None => conf.remove("prevResult"),
    };
    if let Some(rc) = runtime_config_for(plugin, caps) {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    serde_json::to_vec(&Value::Object(conf)).expect("JSON values serialize")
}

fn parse_add_output(net: &NetworkList, index: usize, out: &[u8]) -> Result<CniResult, CniError> {
    let bad = |reason: String| CniError::BadOutput {
        plugin: net.plugin_type(index).to_string(),
        command: "ADD",
        reason,
    };
    if out.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("no result on stdout".into()));
    }
    CniResult::from_slice(out, &net.cni_version).map_err(|e| bad(e.to_string()))
}

fn netns_str(p: &Path) -> Result<&str, CniError> {
    p.to_str()
        .ok_or_else(|| CniError::InvalidAttachment(format!("netns path {} is not UTF-8", p.display())))
}

/// A pre-1.1 plugin answers STATUS as skel does for any unknown command.
fn is_unknown_command(e: &CniError) -> bool {
    e.plugin_error().is_some_and(|b| {
        b.code == PluginErrorBody::INVALID_ENVIRONMENT && b.msg.to_ascii_lowercase().contains("unknown")
    })
}
