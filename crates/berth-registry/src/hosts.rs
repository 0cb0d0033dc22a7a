//! Registry endpoints from containerd's `hosts.toml` files.
//!
//! For a registry host `R` the configuration directory is the first of
//! `<certs_dir>/<R with ":port" spelled "_port_">`, `<certs_dir>/<R>` and
//! `<certs_dir>/_default` that exists (containerd's order). In it:
//!
//! ```toml
//! server = "https://registry.example"      # optional
//! [host."http://mirror:5000"]
//!   capabilities = ["pull", "resolve"]     # default: all three
//!   skip_verify = true
//!   ca = "mirror.crt"                      # or a list; relative to this file
//!   override_path = false
//!   [host."http://mirror:5000".header]
//!     x-custom = "value"
//! ```
//!
//! The rules implemented, which are containerd's (`ConfigureHosts`):
//! - Endpoints are the `[host."…"]` tables **in file order**, followed by the
//!   upstream. The upstream is always last and always present: it is `server`
//!   when given (with the file's top-level `capabilities`, `ca`, `skip_verify`,
//!   `header`, `override_path`), otherwise the default endpoint of `R`, which
//!   gets all capabilities and the top-level TLS and header settings.
//!   So the upstream is never consulted only when `server` itself names the
//!   mirror ("set the mirror as the `server` instead of a host").
//! - An operation uses, in order, the endpoints whose capabilities cover it:
//!   resolving a tag needs `pull` + `resolve`, fetching by digest needs `pull`,
//!   pushing (and the existence checks and mounts that belong to a push) needs
//!   `push`. The client falls back to the next endpoint on any failure of the
//!   previous one (connection error, any 4xx or 5xx, bad content), as
//!   containerd's resolver does, and reports the last endpoint's error.
//! - URL paths get `/v2` appended unless they already end in `/v2` or
//!   `override_path = true` (then the path is the API root as written). A
//!   `server` without scheme gets `https://`.
//! - Requests to a mirror carry `?ns=<R>` so a multi-registry mirror knows the
//!   upstream.
//! - Default endpoint of `R`: `https://registry-1.docker.io` for docker.io;
//!   for loopback registries (`localhost`, 127.0.0.0/8, `::1`) plain
//!   `http://R` when a port other than 443 is given — berth goes straight to
//!   HTTP there instead of containerd's TLS-first attempt, saving a round
//!   trip on every connection to a local registry — `https` with
//!   `skip_verify` for port 443 or no port, and `https://R` for everything
//!   else. Plain HTTP to a remote host happens only when a hosts.toml URL says
//!   `http://`.
//! - A directory without `hosts.toml` adds its `*.crt` files as extra roots of
//!   the default endpoint (docker's `certs.d` layout).
//!
//! Deviations: a hosts.toml that fails to parse is an error (containerd logs
//! it and ignores the file; silently skipping a configured mirror could send
//! traffic where policy says it must not go). Client certificates (`client`)
//! are not supported yet and are reported in the log. URLs naming host
//! `docker.io` are sent to `registry-1.docker.io`, where its API lives.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::BitOr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u8);

impl Capabilities {
    pub const PULL: Capabilities = Capabilities(1);
    pub const RESOLVE: Capabilities = Capabilities(2);
    pub const PUSH: Capabilities = Capabilities(4);
    pub const ALL: Capabilities = Capabilities(7);
    pub const NONE: Capabilities = Capabilities(0);

    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [
            (Self::PULL, "pull"),
            (Self::RESOLVE, "resolve"),
            (Self::PUSH, "push"),
        ]
        .into_iter()
        .filter(|(c, _)| self.contains(*c))
        .map(|(_, n)| n)
        .collect();
        write!(f, "[{}]", names.join(","))
    }
}

/// One place to send registry requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The API root, without trailing slash: `https://registry-1.docker.io/v2`.
    pub url: Url,
    pub capabilities: Capabilities,
    pub skip_verify: bool,
    /// Extra root certificates (PEM files).
    pub ca: Vec<PathBuf>,
    pub header: Vec<(String, String)>,
    pub dial_timeout: Option<Duration>,
    /// Proxy URL for this endpoint only (hosts.toml `proxy`).
    pub proxy: Option<String>,
    /// A `[host."…"]` entry rather than the upstream `server`.
    pub is_mirror: bool,
}

impl Endpoint {
    /// `host[:port]` as it appears in the URL, the key for credentials,
    /// tokens and error messages.
    pub fn host(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    /// The API root as a string without trailing slash, ready for
    /// `"{root}/{repository}/manifests/{reference}"`.
    pub fn root(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// Whether requests need a client of their own (TLS roots, verification,
    /// dial timeout or proxy differ from the shared default client).
    pub(crate) fn client_key(&self) -> Option<ClientKey> {
        if !self.skip_verify && self.ca.is_empty() && self.dial_timeout.is_none() && self.proxy.is_none() {
            return None;
        }
        Some(ClientKey {
            skip_verify: self.skip_verify,
            ca: self.ca.clone(),
            dial_timeout: self.dial_timeout,
            proxy: self.proxy.clone(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub skip_verify: bool,
    pub ca: Vec<PathBuf>,
    pub dial_timeout: Option<Duration>,
    pub proxy: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("registry hosts config {path}: {reason}")]
pub struct HostsError {
    pub path: PathBuf,
    pub reason: String,
}

/// All endpoints of `registry`, mirrors first in file order, the upstream
/// last. Reads the configuration afresh on each call, so edits apply without
/// a restart (as in containerd); it is a few small files per operation.
pub fn resolve(certs_dir: &Path, registry: &str) -> Result<Vec<Endpoint>, HostsError> {
    // The name becomes a directory name: nothing like "../x" may pass.
    if let Err(reason) = crate::reference::validate_registry(registry) {
        return Err(HostsError {
            path: certs_dir.join(registry),
            reason: format!("registry host {registry:?} is invalid: {reason}"),
        });
    }
    for name in host_dir_candidates(registry) {
        let dir = certs_dir.join(&name);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => return load_host_dir(&dir, registry),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(HostsError {
                    path: dir,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(vec![default_endpoint(registry)])
}

/// Directory names tried for `registry`, in order.
pub fn host_dir_candidates(registry: &str) -> Vec<String> {
    let mut names = Vec::with_capacity(3);
    // A ':' inside brackets belongs to an IPv6 address, not a port.
    let port_colon = registry.rfind(':').filter(|&i| !registry[i..].contains(']'));
    if let Some(i) = port_colon.filter(|&i| i > 0) {
        names.push(format!("{}_{}_", &registry[..i], &registry[i + 1..]));
    }
    names.push(registry.to_string());
    names.push("_default".to_string());
    names
}

fn load_host_dir(dir: &Path, registry: &str) -> Result<Vec<Endpoint>, HostsError> {
    let file = dir.join("hosts.toml");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(HostsError {
                path: file,
                reason: e.to_string(),
            });
        }
    };
    if text.trim().is_empty() {
        return cert_files_endpoint(dir, registry);
    }
    parse_hosts_toml(registry, dir, &text).map_err(|reason| HostsError { path: file, reason })
}

/// Docker's `certs.d/<host>/*.crt` layout: extra roots for the default endpoint.
fn cert_files_endpoint(dir: &Path, registry: &str) -> Result<Vec<Endpoint>, HostsError> {
    let mut ep = default_endpoint(registry);
    let entries = std::fs::read_dir(dir).map_err(|e| HostsError {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "crt") && path.is_file() {
            ep.ca.push(path);
        } else if path.extension().is_some_and(|e| e == "cert") {
            tracing::warn!(path = %path.display(), "client certificates are not supported; ignoring");
        }
    }
    ep.ca.sort();
    Ok(vec![ep])
}

/// The endpoint used when no hosts.toml names a `server`; see the module docs.
pub fn default_endpoint(registry: &str) -> Endpoint {
    let (scheme, host, skip_verify) = if registry == DOCKER_HUB {
        ("https", DOCKER_HUB_API_HOST, false)
    } else if is_loopback(registry) {
        match port_of(registry) {
            None | Some("443") => ("https", registry, true),
            Some(_) => ("http", registry, false),
        }
    } else {
        ("https", registry, false)
    };
    let url = Url::parse(&format!("{scheme}://{host}/v2")).unwrap_or_else(|_| {
        // Registry names come validated from Reference::parse; this is the
        // same URL with the host left out, which fails at request time.
        Url::parse("https://invalid.invalid/v2").expect("static URL")
    });
    Endpoint {
        url,
        capabilities: Capabilities::ALL,
        skip_verify,
        ca: Vec::new(),
        header: Vec::new(),
        dial_timeout: None,
        proxy: None,
        is_mirror: false,
    }
}

/// `localhost`, 127.0.0.0/8 or `::1`, with or without port.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn port_of(registry: &str) -> Option<&str> {
    let after_host = match registry.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, a)| a),
        None => registry,
    };
    after_host.rsplit_once(':').map(|(_, p)| p)
}

#[derive(Debug, Default, Deserialize)]
struct HostFields {
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    client: Option<toml::Value>,
    skip_verify: Option<bool>,
    header: Option<BTreeMap<String, OneOrMany>>,
    #[serde(default)]
    override_path: bool,
    dial_timeout: Option<String>,
    proxy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The file's top level. Fields are listed rather than flattened: flattening
/// would buffer `host` and lose the key spans that give the file order.
#[derive(Debug, Deserialize)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    client: Option<toml::Value>,
    skip_verify: Option<bool>,
    header: Option<BTreeMap<String, OneOrMany>>,
    #[serde(default)]
    override_path: bool,
    dial_timeout: Option<String>,
    proxy: Option<String>,
    #[serde(default)]
    host: BTreeMap<toml::Spanned<String>, HostFields>,
}

/// Parses one hosts.toml for `registry`; `base_dir` resolves relative `ca`
/// paths. Returns the endpoints in the order they are to be tried.
pub fn parse_hosts_toml(registry: &str, base_dir: &Path, text: &str) -> Result<Vec<Endpoint>, String> {
    let file: HostsFile = toml::from_str(text).map_err(|e| e.to_string())?;

    let mut hosts: Vec<(toml::Spanned<String>, HostFields)> = file.host.into_iter().collect();
    hosts.sort_by_key(|(k, _)| k.span().start);

    let mut endpoints = Vec::with_capacity(hosts.len() + 1);
    for (key, fields) in hosts {
        let url = key.get_ref();
        let ep = endpoint_from(url, base_dir, fields, true).map_err(|e| format!("[host.{url:?}]: {e}"))?;
        endpoints.push(ep);
    }

    let root = HostFields {
        capabilities: file.capabilities,
        ca: file.ca,
        client: file.client,
        skip_verify: file.skip_verify,
        header: file.header,
        override_path: file.override_path,
        dial_timeout: file.dial_timeout,
        proxy: file.proxy,
    };
    let upstream = match file.server.as_deref().filter(|s| !s.is_empty()) {
        Some(server) => endpoint_from(server, base_dir, root, false).map_err(|e| format!("server: {e}"))?,
        None => {
            // containerd fills in the default host and resets capabilities
            // to all, keeping the top-level TLS and header settings.
            let default = default_endpoint(registry);
            let mut ep = endpoint_from(default.url.as_str(), base_dir, root, false)?;
            ep.url = default.url;
            ep.capabilities = Capabilities::ALL;
            ep.skip_verify |= default.skip_verify;
            ep
        }
    };
    endpoints.push(upstream);
    Ok(endpoints)
}

fn endpoint_from(
    url: &str,
    base_dir: &Path,
    fields: HostFields,
    is_mirror: bool,
) -> Result<Endpoint, String> {
    let with_scheme = match url.split_once("://") {
        Some(("http" | "https", _)) => url.to_string(),
        Some((scheme, _)) => return Err(format!("URL {url:?}: scheme {scheme:?} is not http or https")),
        None => format!("https://{url}"),
    };
    let mut parsed = Url::parse(&with_scheme).map_err(|e| format!("URL {url:?} is invalid: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("URL {url:?} must be http:// or https:// with a host"));
    }
    if parsed.host_str() == Some(DOCKER_HUB) {
        parsed
            .set_host(Some(DOCKER_HUB_API_HOST))
            .map_err(|e| e.to_string())?;
    }
    let mut path = parsed.path().trim_end_matches('/').to_string();
    if !fields.override_path && !path.ends_with("/v2") {
        path.push_str("/v2");
    }
    parsed.set_path(&path);
    parsed.set_query(None);
    parsed.set_fragment(None);

    let capabilities = match fields.capabilities {
        Some(list) if !list.is_empty() => {
            let mut caps = Capabilities::NONE;
            for c in &list {
                caps = caps
                    | match c.to_ascii_lowercase().as_str() {
                        "pull" => Capabilities::PULL,
                        "resolve" => Capabilities::RESOLVE,
                        "push" => Capabilities::PUSH,
                        other => return Err(format!("unknown capability {other:?}")),
                    };
            }
            caps
        }
        _ => Capabilities::ALL,
    };
    let ca = fields
        .ca
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base_dir.join(p) }
        })
        .collect();
    let mut header = Vec::new();
    for (name, values) in fields.header.unwrap_or_default() {
        for v in values.into_vec() {
            header.push((name.clone(), v));
        }
    }
    if fields.client.is_some() {
        tracing::warn!(
            host = url,
            "hosts.toml `client` certificates are not supported; ignoring"
        );
    }
    let dial_timeout = fields
        .dial_timeout
        .as_deref()
        .map(|d| parse_go_duration(d).ok_or_else(|| format!("dial_timeout {d:?} is not a duration")))
        .transpose()?;
    Ok(Endpoint {
        url: parsed,
        capabilities,
        skip_verify: fields.skip_verify.unwrap_or(false),
        ca,
        header,
        dial_timeout,
        proxy: fields.proxy,
        is_mirror,
    })
}

/// Go's `time.ParseDuration` subset that config files use: `1s`, `500ms`,
/// `1m30s`, `1.5h`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(eps: &[Endpoint]) -> Vec<&str> {
        eps.iter().map(|e| e.url.as_str()).collect()
    }

    #[test]
    fn mirrors_in_file_order_then_upstream() {
        // Names chosen so that alphabetical order differs from file order.
        let text = r#"
server = "https://registry.example"

[host."https://zz-mirror.example"]
  capabilities = ["pull"]
[host."http://aa-mirror.example:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  [host."http://aa-mirror.example:5000".header]
    x-one = "1"
    x-many = ["a", "b"]
[host."https://mm-mirror.example/some/prefix"]
"#;
        let eps = parse_hosts_toml("registry.example", Path::new("/etc/berth/certs.d/x"), text).unwrap();
        assert_eq!(
            urls(&eps),
            [
                "https://zz-mirror.example/v2",
                "http://aa-mirror.example:5000/v2",
                "https://mm-mirror.example/some/prefix/v2",
                "https://registry.example/v2",
            ]
        );
        assert_eq!(eps[0].capabilities, Capabilities::PULL);
        assert_eq!(eps[1].capabilities, Capabilities::PULL | Capabilities::RESOLVE);
        assert_eq!(
            eps[2].capabilities,
            Capabilities::ALL,
            "default: all capabilities"
        );
        assert!(eps[1].skip_verify && !eps[0].skip_verify);
        assert_eq!(
            eps[1].header,
            [
                ("x-many".into(), "a".into()),
                ("x-many".into(), "b".into()),
                ("x-one".into(), "1".into())
            ]
        );
        assert!(eps[..3].iter().all(|e| e.is_mirror));
        assert!(!eps[3].is_mirror);
        assert_eq!(eps[1].host(), "aa-mirror.example:5000");
        assert_eq!(eps[1].root(), "http://aa-mirror.example:5000/v2");
    }

    #[test]
    fn capability_filtering_picks_the_right_endpoints() {
        let text = r#"
[host."https://public-mirror"]
  capabilities = ["pull"]
[host."https://private-mirror"]
  capabilities = ["pull", "resolve"]
[host."https://push-mirror"]
  capabilities = ["push"]
"#;
        let eps = parse_hosts_toml("docker.io", Path::new("/x"), text).unwrap();
        let hosts_for = |caps: Capabilities| -> Vec<String> {
            eps.iter()
                .filter(|e| e.capabilities.contains(caps))
                .map(Endpoint::host)
                .collect()
        };
        assert_eq!(
            hosts_for(Capabilities::PULL),
            ["public-mirror", "private-mirror", "registry-1.docker.io"]
        );
        assert_eq!(
            hosts_for(Capabilities::PULL | Capabilities::RESOLVE),
            ["private-mirror", "registry-1.docker.io"]
        );
        assert_eq!(
            hosts_for(Capabilities::PUSH),
            ["push-mirror", "registry-1.docker.io"]
        );
    }

    #[test]
    fn upstream_fallback_rules() {
        // No server: the default upstream is appended with all capabilities,
        // even when the top level restricts them (containerd resets them).
        let eps = parse_hosts_toml(
            "quay.io",
            Path::new("/x"),
            "capabilities = [\"pull\"]\nca = \"root.pem\"\n[host.\"https://m\"]\n",
        )
        .unwrap();
        assert_eq!(urls(&eps), ["https://m/v2", "https://quay.io/v2"]);
        assert_eq!(eps[1].capabilities, Capabilities::ALL);
        assert_eq!(
            eps[1].ca,
            [PathBuf::from("/x/root.pem")],
            "top-level ca applies to upstream"
        );

        // server naming the mirror: the real upstream is never contacted.
        let eps = parse_hosts_toml(
            "quay.io",
            Path::new("/x"),
            "server = \"https://mirror.internal\"\ncapabilities = [\"pull\", \"resolve\"]\n",
        )
        .unwrap();
        assert_eq!(urls(&eps), ["https://mirror.internal/v2"]);
        assert_eq!(eps[0].capabilities, Capabilities::PULL | Capabilities::RESOLVE);
        assert!(!eps[0].capabilities.contains(Capabilities::PUSH));

        // server without scheme gets https; docker.io goes to its API host.
        let eps = parse_hosts_toml("docker.io", Path::new("/x"), "server = \"docker.io\"").unwrap();
        assert_eq!(urls(&eps), ["https://registry-1.docker.io/v2"]);
    }

    #[test]
    fn override_path_and_v2_suffix() {
        let text = r#"
[host."https://a.example/v2/upstream"]
  override_path = true
[host."https://b.example/v2"]
[host."https://c.example/"]
[host."https://d.example/x/"]
"#;
        let eps = parse_hosts_toml("r.example", Path::new("/x"), text).unwrap();
        assert_eq!(
            urls(&eps),
            [
                "https://a.example/v2/upstream",
                "https://b.example/v2",
                "https://c.example/v2",
                "https://d.example/x/v2",
                "https://r.example/v2",
            ]
        );
    }

    #[test]
    fn ca_paths_and_bad_values() {
        let text = "[host.\"https://m\"]\nca = [\"rel.pem\", \"/abs.pem\"]\ndial_timeout = \"1m30s\"\n";
        let eps = parse_hosts_toml("r.io", Path::new("/etc/c/r.io"), text).unwrap();
        assert_eq!(
            eps[0].ca,
            [PathBuf::from("/etc/c/r.io/rel.pem"), PathBuf::from("/abs.pem")]
        );
        assert_eq!(eps[0].dial_timeout, Some(Duration::from_secs(90)));
        assert!(eps[0].client_key().is_some());
        assert!(eps[1].client_key().is_none());

        let e = parse_hosts_toml(
            "r.io",
            Path::new("/x"),
            "[host.\"https://m\"]\ncapabilities=[\"fly\"]",
        )
        .unwrap_err();
        assert!(e.contains("https://m") && e.contains("fly"), "{e}");
        let e = parse_hosts_toml("r.io", Path::new("/x"), "server = \"ftp://x\"").unwrap_err();
        assert!(e.contains("ftp://x"), "{e}");
        assert!(parse_hosts_toml("r.io", Path::new("/x"), "server = [").is_err());
    }

    #[test]
    fn default_endpoints_and_loopback_http() {
        let d = |r: &str| default_endpoint(r);
        assert_eq!(d("docker.io").url.as_str(), "https://registry-1.docker.io/v2");
        assert_eq!(d("quay.io").url.as_str(), "https://quay.io/v2");
        assert_eq!(d("10.0.0.1:5000").url.as_str(), "https://10.0.0.1:5000/v2");
        assert_eq!(d("127.0.0.1:5000").url.as_str(), "http://127.0.0.1:5000/v2");
        assert_eq!(d("127.1.2.3:80").url.as_str(), "http://127.1.2.3/v2");
        assert_eq!(d("localhost:5000").url.as_str(), "http://localhost:5000/v2");
        assert_eq!(d("[::1]:5000").url.as_str(), "http://[::1]:5000/v2");
        let l = d("localhost");
        assert_eq!(l.url.as_str(), "https://localhost/v2");
        assert!(
            l.skip_verify,
            "loopback https skips verification as containerd does"
        );
        assert!(d("localhost:443").url.as_str().starts_with("https://"));
        assert!(!d("quay.io").skip_verify);
        assert!(!is_loopback("localhost.example.com:5000"));
        assert!(!is_loopback("128.0.0.1"));
    }

    #[test]
    fn host_directories_and_default_fallback() {
        assert_eq!(
            host_dir_candidates("127.0.0.1:5000"),
            ["127.0.0.1_5000_", "127.0.0.1:5000", "_default"]
        );
        assert_eq!(host_dir_candidates("docker.io"), ["docker.io", "_default"]);
        assert_eq!(host_dir_candidates("[::1]"), ["[::1]", "_default"]);

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("hosts.toml"), text).unwrap();
        };
        // No configuration at all: only the default endpoint.
        assert_eq!(
            urls(&resolve(dir.path(), "quay.io").unwrap()),
            ["https://quay.io/v2"]
        );
        write("_default", "[host.\"http://fallback-mirror\"]\n");
        write("reg.io:5000", "[host.\"http://colon-mirror\"]\n");
        write("reg.io_5000_", "[host.\"http://underscore-mirror\"]\n");
        write("other.io", "[host.\"http://other-mirror\"]\n");
        assert_eq!(
            urls(&resolve(dir.path(), "reg.io:5000").unwrap()),
            ["http://underscore-mirror/v2", "https://reg.io:5000/v2"]
        );
        std::fs::remove_dir_all(dir.path().join("reg.io_5000_")).unwrap();
        assert_eq!(
            urls(&resolve(dir.path(), "reg.io:5000").unwrap()),
            ["http://colon-mirror/v2", "https://reg.io:5000/v2"]
        );
        assert_eq!(
            urls(&resolve(dir.path(), "quay.io").unwrap()),
            ["http://fallback-mirror/v2", "https://quay.io/v2"],
            "_default applies to registries without their own directory"
        );
        assert_eq!(
            urls(&resolve(dir.path(), "other.io").unwrap()),
            ["http://other-mirror/v2", "https://other.io/v2"]
        );

        // Docker's layout: a directory of *.crt files without hosts.toml.
        std::fs::create_dir_all(dir.path().join("certs.io")).unwrap();
        std::fs::write(dir.path().join("certs.io/ca.crt"), "x").unwrap();
        let eps = resolve(dir.path(), "certs.io").unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].ca, [dir.path().join("certs.io/ca.crt")]);

        assert!(resolve(dir.path(), "../etc").is_err());

        // A broken file is an error naming it, not a silent fallback.
        write("broken.io", "[host.\"http://m\"\n");
        let e = resolve(dir.path(), "broken.io").unwrap_err();
        assert!(e.to_string().contains("broken.io/hosts.toml"), "{e}");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("1x"), None);
    }
}
