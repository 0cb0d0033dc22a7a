//! Registry credentials and the distribution auth flows.
//!
//! Credentials come from an explicit `user:pass` (for the upstream only:
//! they are never sent to a mirror) or from docker's `config.json`, looked up
//! by the host actually contacted. A registry answering 401 names a scheme in
//! `WWW-Authenticate`: `Basic` is answered with the credentials, `Bearer`
//! sends us to its token server (`GET realm?service=…&scope=…`, with Basic
//! credentials when we have any, anonymous otherwise). Tokens are cached per
//! (host, scope) until shortly before `expires_in` runs out, and once a host
//! is known to want tokens, later requests fetch one up front instead of
//! paying for a 401 first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;

use crate::reference::{DOCKER_HUB, DOCKER_HUB_API_HOST};

/// Username and password (or identity token used as password).
pub type Credentials = (String, String);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("docker config {path}: {reason}")]
    DockerConfig { path: PathBuf, reason: String },
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The `auths` of a docker `config.json`, keyed by bare host name.
#[derive(Debug, Default, Clone)]
pub struct DockerConfig {
    auths: HashMap<String, Credentials>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: HashMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl DockerConfig {
    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<DockerConfig, AuthError> {
        let err = |reason: String| AuthError::DockerConfig {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read(path) {
            Ok(bytes) => DockerConfig::parse(&bytes).map_err(err),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(e) => Err(err(e.to_string())),
        }
    }

    pub fn parse(json: &[u8]) -> Result<DockerConfig, String> {
        let raw: RawConfig = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        if let Some(store) = &raw.creds_store {
            tracing::debug!(
                store,
                "docker credential stores are not consulted; only inline auths are used"
            );
        }
        let mut auths = HashMap::new();
        for (key, entry) in raw.auths {
            let creds = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => decode_auth(auth)
                    .ok_or_else(|| format!("auths[{key:?}].auth is not base64 of user:password"))?,
                (_, Some(u), Some(p)) => (u.clone(), p.clone()),
                _ => continue,
            };
            // Docker matches the exact key first; keys that are URLs of the
            // same host are a fallback. Insert exact hosts after URL forms so
            // they win.
            let host = key_to_host(&key).to_string();
            let exact = host == key;
            if exact || !auths.contains_key(&host) {
                auths.insert(host, creds);
            }
        }
        Ok(DockerConfig { auths })
    }

    /// Credentials for `host` (a registry name or endpoint host). docker.io
    /// answers to its historical keys, `https://index.docker.io/v1/` first.
    pub fn lookup(&self, host: &str) -> Option<&Credentials> {
        if is_docker_hub(host) {
            ["index.docker.io", DOCKER_HUB, DOCKER_HUB_API_HOST]
                .iter()
                .find_map(|h| self.auths.get(*h))
        } else {
            self.auths.get(host)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.auths.is_empty()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(host, DOCKER_HUB | DOCKER_HUB_API_HOST | "index.docker.io")
}

/// Docker's `ConvertToHostname`: drop the scheme and any path.
fn key_to_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn decode_auth(auth: &str) -> Option<Credentials> {
    let auth = auth.trim();
    let bytes = STANDARD
        .decode(auth)
        .or_else(|_| STANDARD_NO_PAD.decode(auth.trim_end_matches('=')))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// `Basic` credentials as a header value.
pub fn basic_header((user, pass): &Credentials) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        /// Space-separated scopes the registry asked for, if it said.
        scope: Option<String>,
    },
}

/// Parses every challenge in a `WWW-Authenticate` value (RFC 7235: a
/// comma-separated list of `scheme param=value, param="quoted"` items, where
/// one header may carry several challenges). Unknown schemes are skipped.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    for (scheme, params) in parse_challenges(value) {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            out.push(Challenge::Basic { realm: get("realm") });
        } else if scheme.eq_ignore_ascii_case("bearer")
            && let Some(realm) = get("realm")
        {
            out.push(Challenge::Bearer {
                realm,
                service: get("service"),
                scope: get("scope"),
            });
        }
    }
    out
}

type RawChallenge = (String, Vec<(String, String)>);

fn parse_challenges(s: &str) -> Vec<RawChallenge> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<RawChallenge> = Vec::new();
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        &s[start..*i]
    };
    while i < b.len() {
        skip_ws(&mut i);
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        let save = i;
        let name = token(&mut i);
        if name.is_empty() {
            // Junk (e.g. a token68 of an unknown scheme): skip to the next comma.
            i = save + 1;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            continue;
        }
        skip_ws(&mut i);
        if i < b.len() && b[i] == b'=' {
            i += 1;
            skip_ws(&mut i);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Walk by chars so non-ASCII text survives.
                    let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                v
            } else {
                let start = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' && b[i] != b'\t' {
                    i += 1;
                }
                s[start..i].to_string()
            };
            // A parameter before any scheme is malformed and ignored.
            if let Some((_, params)) = out.last_mut() {
                params.push((name.to_string(), value));
            }
        } else {
            // A token not followed by '=' starts a new challenge.
            out.push((name.to_string(), Vec::new()));
        }
    }
    out
}

/// The token server's answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Docker's token spec: tokens without `expires_in` live 60 seconds.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl TokenResponse {
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self.token.filter(|t| !t.is_empty()).or(self.access_token)?;
        let lifetime = self
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Some((token, lifetime))
    }
}

/// What a host wants, learned from its first 401.
#[derive(Debug, Clone)]
pub(crate) enum HostScheme {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

struct CachedToken {
    header: String,
    valid_until: Instant,
}

/// Per-client auth state: schemes by host, tokens by (host, scope).
#[derive(Default)]
pub(crate) struct AuthCache {
    schemes: Mutex<HashMap<String, HostScheme>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl AuthCache {
    pub fn scheme(&self, host: &str) -> Option<HostScheme> {
        self.schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    pub fn set_scheme(&self, host: &str, scheme: HostScheme) {
        self.schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), scheme);
    }

    /// A cached `Authorization` value for (host, scope) that has not expired.
    pub fn token(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let t = tokens.get(&(host.to_string(), scope.to_string()))?;
        (Instant::now() < t.valid_until).then(|| t.header.clone())
    }

    /// Caches a bearer token; it is dropped a little before the server's
    /// expiry so a request never leaves with a token about to lapse.
    pub fn put_token(&self, host: &str, scope: &str, token: &str, lifetime: Duration) {
        let margin = (lifetime / 10).min(Duration::from_secs(10));
        let valid_until = Instant::now() + lifetime.saturating_sub(margin);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, t| t.valid_until > Instant::now());
        tokens.insert(
            (host.to_string(), scope.to_string()),
            CachedToken {
                header: format!("Bearer {token}"),
                valid_until,
            },
        );
    }
}

/// Scopes for the token request: ours plus whatever the registry asked for,
/// deduplicated, in a stable order.
pub(crate) fn merge_scopes(ours: &[String], asked: Option<&str>) -> Vec<String> {
    let mut all: Vec<String> = ours.to_vec();
    for s in asked.unwrap_or_default().split(' ').filter(|s| !s.is_empty()) {
        if !all.iter().any(|a| a == s) {
            all.push(s.to_string());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_authenticate_forms() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            [Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );

        // Unquoted values, odd spacing and case, a mount's two scopes.
        let c = parse_www_authenticate(
            r#"bearer  realm=http://127.0.0.1:1/token , service = svc, scope="repository:a:pull,push repository:b:pull""#,
        );
        assert_eq!(
            c,
            [Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("svc".into()),
                scope: Some("repository:a:pull,push repository:b:pull".into()),
            }]
        );

        assert_eq!(
            parse_www_authenticate(r#"Basic realm="berth \"test\", really""#),
            [Challenge::Basic {
                realm: Some("berth \"test\", really".into())
            }]
        );
        assert_eq!(
            parse_www_authenticate("Basic"),
            [Challenge::Basic { realm: None }]
        );

        // Several challenges in one value; unknown schemes are skipped.
        let c = parse_www_authenticate(
            r#"Negotiate abc==, Basic realm="r", Bearer realm="https://t/x",service="s""#,
        );
        assert_eq!(
            c,
            [
                Challenge::Basic {
                    realm: Some("r".into())
                },
                Challenge::Bearer {
                    realm: "https://t/x".into(),
                    service: Some("s".into()),
                    scope: None
                },
            ]
        );
        // Bearer without realm is unusable.
        assert!(parse_www_authenticate(r#"Bearer service="s""#).is_empty());
        assert!(parse_www_authenticate("").is_empty());
        assert!(parse_www_authenticate(r#"realm="x""#).is_empty());
    }

    #[test]
    fn docker_config_lookup() {
        let b64 = |s: &str| STANDARD.encode(s);
        let json = format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{"auth": "{hub}"}},
                "quay.io": {{"auth": "{quay}"}},
                "https://ghcr.io": {{"username": "gh", "password": "tok"}},
                "http://127.0.0.1:5000/v2/": {{"auth": "{local}"}},
                "127.0.0.1:5000": {{"auth": "{local_exact}"}},
                "empty.io": {{}}
              }},
              "credsStore": "desktop"
            }}"#,
            hub = b64("hubuser:hub:pass"),
            quay = b64("q:qp").trim_end_matches('='),
            local = b64("url-form:x"),
            local_exact = b64("exact:y"),
        );
        let cfg = DockerConfig::parse(json.as_bytes()).unwrap();
        let get = |h: &str| cfg.lookup(h).map(|(u, p)| format!("{u}/{p}"));
        // The password may itself contain ':'.
        assert_eq!(get("docker.io").as_deref(), Some("hubuser/hub:pass"));
        assert_eq!(get("registry-1.docker.io").as_deref(), Some("hubuser/hub:pass"));
        assert_eq!(get("index.docker.io").as_deref(), Some("hubuser/hub:pass"));
        assert_eq!(get("quay.io").as_deref(), Some("q/qp"), "unpadded base64");
        assert_eq!(
            get("ghcr.io").as_deref(),
            Some("gh/tok"),
            "username/password, https key"
        );
        assert_eq!(
            get("127.0.0.1:5000").as_deref(),
            Some("exact/y"),
            "exact key wins"
        );
        assert_eq!(get("empty.io"), None);
        assert_eq!(get("other.io"), None);

        // "docker.io" as key works too.
        let cfg = DockerConfig::parse(
            format!(r#"{{"auths":{{"docker.io":{{"auth":"{}"}}}}}}"#, b64("a:b")).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            cfg.lookup("registry-1.docker.io"),
            Some(&("a".into(), "b".into()))
        );

        let e = DockerConfig::parse(br#"{"auths":{"x.io":{"auth":"!!!"}}}"#).unwrap_err();
        assert!(e.contains("x.io"), "{e}");
        let e = DockerConfig::parse(
            format!(r#"{{"auths":{{"x.io":{{"auth":"{}"}}}}}}"#, b64("nocolon")).as_bytes(),
        )
        .unwrap_err();
        assert!(e.contains("user:password"), "{e}");
    }

    #[test]
    fn docker_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = DockerConfig::load(&dir.path().join("none.json")).unwrap();
        assert!(missing.is_empty());
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{").unwrap();
        let e = DockerConfig::load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
    }

    #[test]
    fn token_cache_expiry_and_scopes() {
        let cache = AuthCache::default();
        cache.put_token("h", "repository:a:pull", "t1", Duration::from_secs(300));
        assert_eq!(
            cache.token("h", "repository:a:pull").as_deref(),
            Some("Bearer t1")
        );
        assert_eq!(cache.token("h", "repository:b:pull"), None);
        assert_eq!(cache.token("other", "repository:a:pull"), None);
        // A token whose lifetime is within the safety margin is never served.
        cache.put_token("h", "s", "t2", Duration::from_millis(0));
        assert_eq!(cache.token("h", "s"), None);
        cache.put_token("h", "repository:a:pull", "t3", Duration::from_secs(300));
        assert_eq!(
            cache.token("h", "repository:a:pull").as_deref(),
            Some("Bearer t3")
        );

        let r: TokenResponse = serde_json::from_str(r#"{"access_token":"a","expires_in":5}"#).unwrap();
        assert_eq!(r.into_token(), Some(("a".into(), Duration::from_secs(5))));
        let r: TokenResponse = serde_json::from_str(r#"{"token":"t"}"#).unwrap();
        assert_eq!(r.into_token(), Some(("t".into(), DEFAULT_TOKEN_LIFETIME)));
        let r: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(r.into_token(), None);

        assert_eq!(
            merge_scopes(
                &["repository:a:pull,push".into()],
                Some("repository:a:pull,push repository:b:pull")
            ),
            ["repository:a:pull,push", "repository:b:pull"]
        );
        assert_eq!(basic_header(&("u".into(), "p".into())), "Basic dTpw");
    }
}
