//! The ADD result, read from spec versions 1.x, 0.3.x/0.4.0 (same shape,
//! plus a `version` field in each IP) and 0.1.0/0.2.0 (`ip4`/`ip6`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container interfaces; empty for host ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR, e.g. `10.88.0.5/16`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The address without its prefix length.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// What a network list's ADD produced. `raw` is the JSON exactly as the
/// last plugin printed it: that is what is cached and handed back to
/// plugins as `prevResult`.
#[derive(Clone, Debug, PartialEq)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    raw: Value,
}

#[derive(Deserialize)]
struct Current {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize)]
struct Legacy {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl CniResult {
    /// Parses a result; `default_version` is the config's cniVersion,
    /// used when the result names none.
    pub fn from_value(raw: Value, default_version: &str) -> Result<CniResult, CniError> {
        let version = raw
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or(default_version)
            .to_string();
        let bad = |e: serde_json::Error| CniError::BadResult {
            version: version.clone(),
            reason: e.to_string(),
        };
        let (interfaces, ips, routes, dns) = if version.starts_with("0.1.") || version.starts_with("0.2.") {
            let l: Legacy = serde_json::from_value(raw.clone()).map_err(bad)?;
            let mut ips = Vec::new();
            let mut routes = Vec::new();
            for ip in [l.ip4, l.ip6].into_iter().flatten() {
                ips.push(IpConfig {
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                routes.extend(ip.routes);
            }
            (Vec::new(), ips, routes, l.dns)
        } else {
            let c: Current = serde_json::from_value(raw.clone()).map_err(bad)?;
            (c.interfaces, c.ips, c.routes, c.dns)
        };
        for ip in &ips {
            if ip.ip().is_none() {
                return Err(CniError::BadResult {
                    version,
                    reason: format!("IP address {:?} is not in CIDR form", ip.address),
                });
            }
        }
        Ok(CniResult {
            cni_version: version,
            interfaces,
            ips,
            routes,
            dns,
            raw,
        })
    }

    pub fn from_slice(bytes: &[u8], default_version: &str) -> Result<CniResult, CniError> {
        let raw = serde_json::from_slice(bytes).map_err(|e| CniError::BadResult {
            version: default_version.to_string(),
            reason: e.to_string(),
        })?;
        CniResult::from_value(raw, default_version)
    }

    /// The result JSON as the plugin printed it.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The pod's IPs: those on an interface inside the sandbox (all IPs
    /// when the result names no such interface), IPv4 first, then IPv6.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let in_sandbox = |i: usize| {
            self.interfaces
                .get(i)
                .and_then(|iface| iface.sandbox.as_deref())
                .is_some_and(|s| !s.is_empty())
        };
        let any_sandboxed = self.ips.iter().any(|ip| ip.interface.is_some_and(in_sandbox));
        let mut ips: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(|ip| !any_sandboxed || ip.interface.is_some_and(in_sandbox))
            .filter_map(IpConfig::ip)
            .collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips.dedup();
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V040: &str = r#"{
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/x"}
        ],
        "ips": [
            {"version": "6", "address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
            {"version": "4", "address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
            {"version": "4", "address": "10.88.0.1/16", "interface": 0}
        ],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.88.0.1"], "search": ["svc.local"]}
    }"#;

    #[test]
    fn parses_0_4_0_and_picks_sandbox_ips_v4_first() {
        let r = CniResult::from_slice(V040.as_bytes(), "0.4.0").unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.ips[1].gateway.as_deref(), Some("10.88.0.1"));
        assert_eq!(r.routes[0].dst, "0.0.0.0/0");
        assert_eq!(r.dns.search, vec!["svc.local"]);
        let ips: Vec<String> = r.pod_ips().iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, vec!["10.88.0.5", "fd00::5"]);
        assert_eq!(r.raw()["ips"][0]["version"], "6");
    }

    #[test]
    fn parses_1_0_0() {
        let json = r#"{
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1500, "sandbox": "/var/run/netns/p"}],
            "ips": [{"address": "172.30.1.9/24", "gateway": "172.30.1.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "172.30.1.1"}],
            "dns": {}
        }"#;
        let r = CniResult::from_slice(json.as_bytes(), "1.0.0").unwrap();
        assert_eq!(r.interfaces[0].mtu, Some(1500));
        assert_eq!(r.routes[0].gw.as_deref(), Some("172.30.1.1"));
        assert_eq!(r.pod_ips(), vec!["172.30.1.9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn ipam_only_result_without_interfaces_yields_all_ips() {
        let json = r#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::2/64"},{"address":"10.1.0.2/24"}]}"#;
        let r = CniResult::from_slice(json.as_bytes(), "1.0.0").unwrap();
        let ips: Vec<String> = r.pod_ips().iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, vec!["10.1.0.2", "fd00::2"]);
    }

    #[test]
    fn parses_0_2_0_ip4_ip6() {
        let json = r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.2.0.3/24","gateway":"10.2.0.1","routes":[{"dst":"0.0.0.0/0"}]},"ip6":{"ip":"fd01::3/64"}}"#;
        let r = CniResult::from_slice(json.as_bytes(), "0.2.0").unwrap();
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.ips[0].gateway.as_deref(), Some("10.2.0.1"));
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.pod_ips().len(), 2);
    }

    #[test]
    fn rejects_an_address_that_is_not_cidr() {
        let json = r#"{"cniVersion":"1.0.0","ips":[{"address":"not-an-ip"}]}"#;
        let err = CniResult::from_slice(json.as_bytes(), "1.0.0").unwrap_err();
        assert!(err.to_string().contains("not-an-ip"), "{err}");
    }
}
