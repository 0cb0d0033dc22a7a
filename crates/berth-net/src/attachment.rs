//! What the runtime says about one container's attachment to a network.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CniError;

/// One container (pod sandbox) joining a network through one interface.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attachment {
    pub container_id: String,
    /// The pinned netns file, e.g. `/run/berth/ns/<pod>/net`.
    pub netns: PathBuf,
    /// The interface inside the netns, usually `eth0`.
    pub ifname: String,
    /// CNI_ARGS pairs, e.g. `K8S_POD_NAME`; `IgnoreUnknown=1` is added.
    pub args: Vec<(String, String)>,
    pub capabilities: Capabilities,
}

impl Attachment {
    /// The key that finds this attachment's cache entry on `network`.
    pub fn key(&self, network: &str) -> AttachmentKey {
        AttachmentKey {
            network: network.to_string(),
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
            netns: self.netns.clone(),
        }
    }
}

/// What DEL needs: the cache supplies the config, args and capabilities
/// that ADD used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentKey {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    /// Passed as CNI_NETNS when the file still exists, else empty (the
    /// spec's way to say the namespace is gone).
    pub netns: PathBuf,
}

/// Values for the plugins' `runtimeConfig`, each given only to plugins
/// that declare the capability in their `capabilities` map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default, rename = "portMappings", skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Static IPs in CIDR form (`ips` capability).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsCapability>,
    #[serde(default, rename = "cgroupPath", skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Bits per second and bits, as the bandwidth plugin reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    #[serde(rename = "ingressRate")]
    pub ingress_rate: u64,
    #[serde(rename = "ingressBurst")]
    pub ingress_burst: u64,
    #[serde(rename = "egressRate")]
    pub egress_rate: u64,
    #[serde(rename = "egressBurst")]
    pub egress_burst: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCapability {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl Capabilities {
    /// The set capabilities as `runtimeConfig` keys.
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

/// The `runtimeConfig` a plugin gets: the capabilities it declares as true
/// that the runtime has values for, over any it already had.
pub(crate) fn runtime_config_for(plugin: &Value, caps: &Map<String, Value>) -> Option<Map<String, Value>> {
    let declared = plugin.get("capabilities")?.as_object()?;
    let mut rc = plugin
        .get("runtimeConfig")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    for (name, on) in declared {
        if on.as_bool() == Some(true)
            && let Some(v) = caps.get(name)
        {
            rc.insert(name.clone(), v.clone());
            any = true;
        }
    }
    any.then_some(rc)
}

/// Validates the ids the spec constrains, before anything runs.
pub(crate) fn validate_ids(container_id: &str, ifname: &str) -> Result<(), CniError> {
    let mut chars = container_id.chars();
    let id_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !id_ok {
        return Err(CniError::InvalidAttachment(format!(
            "container id {container_id:?} is not valid (letters, digits, '_', '.', '-', starting with a letter or digit)"
        )));
    }
    let if_ok = !ifname.is_empty()
        && ifname != "."
        && ifname != ".."
        && ifname.len() < 16
        && !ifname.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if !if_ok {
        return Err(CniError::InvalidAttachment(format!(
            "interface name {ifname:?} is not valid (1-15 bytes, no '/', ':' or whitespace)"
        )));
    }
    Ok(())
}

/// CNI_ARGS: `K=V;K=V`, led by `IgnoreUnknown=1` so plugins that do not know
/// a key (most do not know the K8S_* ones) do not fail on it.
pub(crate) fn cni_args(args: &[(String, String)]) -> Result<String, CniError> {
    if args.is_empty() {
        return Ok(String::new());
    }
    let mut parts = Vec::with_capacity(args.len() + 1);
    if !args.iter().any(|(k, _)| k == "IgnoreUnknown") {
        parts.push("IgnoreUnknown=1".to_string());
    }
    for (k, v) in args {
        if k.is_empty() || k.contains(['=', ';', '\0']) || v.contains([';', '\0']) {
            return Err(CniError::InvalidAttachment(format!(
                "CNI_ARGS pair {k:?}={v:?} holds '=' in the key or ';' or NUL"
            )));
        }
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let caps = Capabilities {
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            mac: Some("02:00:00:00:00:01".into()),
            ..Default::default()
        }
        .to_map();
        let portmap =
            serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true, "mac": false}});
        let rc = runtime_config_for(&portmap, &caps).unwrap();
        assert_eq!(rc["portMappings"][0]["hostPort"], 8080);
        assert!(!rc.contains_key("mac"));
        assert!(!rc["portMappings"][0].as_object().unwrap().contains_key("hostIP"));
        let bridge = serde_json::json!({"type": "bridge"});
        assert!(runtime_config_for(&bridge, &caps).is_none());
    }

    #[test]
    fn args_and_ids_are_validated() {
        let args = vec![("K8S_POD_NAME".to_string(), "web".to_string())];
        assert_eq!(cni_args(&args).unwrap(), "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert!(cni_args(&[("A".into(), "b;c".into())]).is_err());
        assert!(validate_ids("abc-1", "eth0").is_ok());
        assert!(validate_ids("-abc", "eth0").is_err());
        assert!(validate_ids("abc", "eth0:1").is_err());
        assert!(validate_ids("abc", "a-very-long-ifname").is_err());
        assert!(validate_ids("../x", "eth0").is_err());
    }
}
