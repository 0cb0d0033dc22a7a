//! The client: configuration, the shared HTTP connection pools, endpoint
//! iteration with fallback, and the authenticated request loop every verb
//! goes through. The verbs live in one file each (`manifest_get.rs`, …).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{AUTHORIZATION, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use url::Url;

use crate::auth::{self, AuthCache, Challenge, Credentials, DockerConfig, HostScheme, TokenResponse};
use crate::error::{RegistryError, Target, describe_error_body};
use crate::hosts::{self, Capabilities, ClientKey, Endpoint};
use crate::reference::Reference;

/// Uploads up to this size go in one PUT; larger ones in PATCH chunks of it.
pub const DEFAULT_UPLOAD_CHUNK_SIZE: u64 = 16 << 20;

/// Error bodies are read only this far: they are for messages.
const MAX_ERROR_BODY: usize = 64 << 10;
const MAX_TOKEN_BODY: usize = 1 << 20;
/// containerd's dial timeout; hosts.toml `dial_timeout` overrides it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A stalled connection (no bytes for this long) fails instead of hanging a
/// pull forever. Per read, so large blobs are fine.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Directory of `<host>/hosts.toml` files (containerd's `certs.d`).
    pub certs_dir: PathBuf,
    /// Docker `config.json` to take credentials from; `None` reads none.
    pub docker_config: Option<PathBuf>,
    /// Explicit credentials (`--creds user:pass`), sent only to the
    /// upstream registry of a reference, never to mirrors.
    pub creds: Option<(String, String)>,
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            certs_dir: PathBuf::from("/etc/berth/certs.d"),
            docker_config: auth::default_docker_config_path(),
            creds: None,
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// An OCI distribution client. Cheap to clone: clones share the connection
/// pools and the token cache.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    pub(crate) upload_chunk_size: u64,
}

pub(crate) struct Inner {
    certs_dir: PathBuf,
    creds: Option<Credentials>,
    docker: DockerConfig,
    user_agent: String,
    /// The pool for every endpoint with default TLS settings, built on first
    /// use: building it reads the system's CA certificates (~15 ms), which
    /// commands that never reach a registry should not pay.
    default_http: std::sync::OnceLock<reqwest::Client>,
    /// One pool per distinct TLS/dial/proxy setting from hosts.toml.
    custom_http: Mutex<HashMap<ClientKey, reqwest::Client>>,
    auth: AuthCache,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("certs_dir", &self.inner.certs_dir)
            .field("upload_chunk_size", &self.upload_chunk_size)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, RegistryError> {
        // reqwest is built without a default crypto provider; berth uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let docker = match &cfg.docker_config {
            Some(path) => DockerConfig::load(path)?,
            None => DockerConfig::default(),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                certs_dir: cfg.certs_dir,
                creds: cfg.creds,
                docker,
                user_agent: cfg.user_agent,
                default_http: std::sync::OnceLock::new(),
                custom_http: Mutex::new(HashMap::new()),
                auth: AuthCache::default(),
            }),
            upload_chunk_size: DEFAULT_UPLOAD_CHUNK_SIZE,
        })
    }

    /// Sets the size up to which blobs are uploaded in one request, and the
    /// chunk size of larger uploads. At least 1.
    pub fn with_upload_chunk_size(mut self, bytes: u64) -> Client {
        self.upload_chunk_size = bytes.max(1);
        self
    }

    pub fn upload_chunk_size(&self) -> u64 {
        self.upload_chunk_size
    }

    /// The endpoints `r` would be tried at for `caps`, in order.
    pub fn endpoints(&self, r: &Reference, caps: Capabilities) -> Result<Vec<Endpoint>, RegistryError> {
        let mut eps = hosts::resolve(&self.inner.certs_dir, &r.registry)?;
        eps.retain(|e| e.capabilities.contains(caps));
        Ok(eps)
    }

    /// The endpoints to try for an operation on `r` needing `caps`, with
    /// what the operation is about (for errors) and the token scope it
    /// needs. Verbs loop over `plan.endpoints`, returning the first success
    /// and otherwise the last failure (see [`crate::hosts`] for the rule).
    ///
    /// A loop in each verb rather than a helper taking an async closure:
    /// futures of generic async closures over borrowed arguments cannot be
    /// shown to be `Send` today, and the daemon needs `Send` futures.
    pub(crate) fn plan<'a>(
        &'a self,
        r: &'a Reference,
        caps: Capabilities,
        object: String,
        scope: Vec<String>,
    ) -> Result<Plan<'a>, RegistryError> {
        if let Err(e) = r.validate() {
            return Err(invalid_argument(r, object, e.to_string()));
        }
        Ok(Plan {
            inner: &self.inner,
            r,
            endpoints: self.endpoints(r, caps)?,
            caps,
            object,
            scope_key: scope.join(" "),
            scope,
        })
    }
}

pub(crate) struct Plan<'a> {
    inner: &'a Inner,
    r: &'a Reference,
    pub endpoints: Vec<Endpoint>,
    caps: Capabilities,
    object: String,
    scope: Vec<String>,
    scope_key: String,
}

impl Plan<'_> {
    /// The request context for one endpoint.
    pub fn call<'p>(&'p self, ep: &'p Endpoint) -> Result<Call<'p>, RegistryError> {
        let target = Target {
            host: ep.host(),
            repository: self.r.repository.clone(),
            object: self.object.clone(),
            mirror_of: ep.is_mirror.then(|| self.r.registry.clone()),
        };
        let http = self.inner.http_for(ep).map_err(|reason| RegistryError::Client {
            what: ep.root().to_string(),
            reason,
        })?;
        Ok(Call {
            inner: self.inner,
            ep,
            http,
            creds: self.inner.creds_for(self.r, ep),
            registry: &self.r.registry,
            repository: &self.r.repository,
            scope: &self.scope,
            scope_key: &self.scope_key,
            target,
        })
    }

    /// Notes that `ep` failed with `e`, logging the fallback when another
    /// endpoint follows; returns `e`.
    pub fn failed(&self, ep: &Endpoint, e: RegistryError) -> RegistryError {
        if self.endpoints.last().is_some_and(|last| !std::ptr::eq(last, ep)) {
            tracing::info!(
                endpoint = ep.root(),
                error = %e,
                "registry endpoint failed; trying the next one"
            );
        }
        e
    }

    /// The error once every endpoint failed: the last one's (the upstream's
    /// when it was tried), or "no endpoint" when none had the capability.
    pub fn give_up(self, last: Option<RegistryError>) -> RegistryError {
        last.unwrap_or_else(|| RegistryError::NoEndpoint {
            target: Box::new(Target {
                host: self.r.registry.clone(),
                repository: self.r.repository.clone(),
                object: self.object,
                mirror_of: None,
            }),
            registry: self.r.registry.clone(),
            capability: capability_name(self.caps),
        })
    }
}

fn capability_name(caps: Capabilities) -> &'static str {
    if caps.contains(Capabilities::PUSH) {
        "push"
    } else if caps.contains(Capabilities::RESOLVE) {
        "resolve"
    } else {
        "pull"
    }
}

fn http_builder(user_agent: &str) -> reqwest::ClientBuilder {
    // HTTP/2 is negotiated by ALPN on TLS connections; plain HTTP stays 1.1.
    reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        // Blob redirects go to storage hosts; they need not learn where from.
        .referer(false)
        // reqwest drops Authorization when a redirect changes host.
        .redirect(reqwest::redirect::Policy::limited(10))
}

impl Inner {
    fn http_for(&self, ep: &Endpoint) -> Result<reqwest::Client, String> {
        let Some(key) = ep.client_key() else {
            if let Some(c) = self.default_http.get() {
                return Ok(c.clone());
            }
            let c = http_builder(&self.user_agent)
                .build()
                .map_err(|e| e.to_string())?;
            return Ok(self.default_http.get_or_init(|| c).clone());
        };
        if let Some(c) = self
            .custom_http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let mut b = http_builder(&self.user_agent);
        if key.skip_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let mut roots = Vec::new();
        for path in &key.ca {
            let pem = std::fs::read(path).map_err(|e| format!("reading CA file {}: {e}", path.display()))?;
            roots.extend(
                reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?,
            );
        }
        if !roots.is_empty() {
            b = b.tls_certs_merge(roots);
        }
        if let Some(t) = key.dial_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(p) = &key.proxy {
            b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy {p:?}: {e}"))?);
        }
        let client = b.build().map_err(|e| e.to_string())?;
        self.custom_http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, client.clone());
        Ok(client)
    }

    /// Explicit credentials and the registry's docker config entry go to the
    /// upstream only; a mirror gets what docker config holds for its own host.
    fn creds_for(&self, r: &Reference, ep: &Endpoint) -> Option<Credentials> {
        if !ep.is_mirror {
            if let Some(c) = &self.creds {
                return Some(c.clone());
            }
            if let Some(c) = self.docker.lookup(&r.registry) {
                return Some(c.clone());
            }
        }
        self.docker.lookup(&ep.host()).cloned()
    }
}

/// One endpoint's view of an operation: where, as whom, for what.
pub(crate) struct Call<'a> {
    inner: &'a Inner,
    pub ep: &'a Endpoint,
    pub http: reqwest::Client,
    creds: Option<Credentials>,
    registry: &'a str,
    repository: &'a str,
    scope: &'a [String],
    scope_key: &'a str,
    pub target: Target,
}

impl Call<'_> {
    /// `<root>/<repository>/<tail>`, with `?ns=<registry>` on mirrors.
    pub fn url(&self, tail: &str) -> Result<Url, RegistryError> {
        let s = format!("{}/{}/{}", self.ep.root(), self.repository, tail);
        let mut url = Url::parse(&s).map_err(|e| RegistryError::InvalidArgument {
            target: Box::new(self.target.clone()),
            reason: format!("URL {s:?} is invalid: {e}"),
        })?;
        if self.ep.is_mirror {
            url.query_pairs_mut().append_pair("ns", self.registry);
        }
        Ok(url)
    }

    /// Sends the request `build` makes, authenticating as the registry asks:
    /// a cached token or known scheme goes along on the first try; a 401
    /// is answered once (token fetched, or Basic credentials), then refused.
    /// `build` runs again for the retry, so bodies are rebuilt, not buffered.
    pub async fn send(
        &self,
        method: &'static str,
        build: impl Fn(&reqwest::Client) -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let host = self.target.host.as_str();
        let mut authorization = self.initial_authorization(host).await?;
        let mut answered = false;
        loop {
            let mut rb = build(&self.http)?;
            for (name, value) in &self.ep.header {
                rb = rb.header(name.as_str(), value.as_str());
            }
            if let Some(a) = &authorization {
                rb = rb.header(AUTHORIZATION, a.as_str());
            }
            let resp = rb.send().await.map_err(|e| self.http_error(method, e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if answered {
                return Err(self.refused(resp).await);
            }
            answered = true;
            authorization = Some(self.answer_challenge(host, resp).await?);
        }
    }

    async fn initial_authorization(&self, host: &str) -> Result<Option<String>, RegistryError> {
        if let Some(t) = self.inner.auth.token(host, self.scope_key) {
            return Ok(Some(t));
        }
        match self.inner.auth.scheme(host) {
            Some(HostScheme::Basic) => Ok(self.creds.as_ref().map(auth::basic_header)),
            Some(HostScheme::Bearer { realm, service }) => {
                let (token, lifetime) = self.fetch_token(&realm, service.as_deref(), self.scope).await?;
                self.inner.auth.put_token(host, self.scope_key, &token, lifetime);
                Ok(Some(format!("Bearer {token}")))
            }
            None => Ok(None),
        }
    }

    async fn answer_challenge(&self, host: &str, resp: Response) -> Result<String, RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_www_authenticate)
            .collect();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => Some((realm, service, scope)),
            Challenge::Basic { .. } => None,
        });
        if let Some((realm, service, asked)) = bearer {
            self.inner.auth.set_scheme(
                host,
                HostScheme::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                },
            );
            let scopes = auth::merge_scopes(self.scope, asked.as_deref());
            let (token, lifetime) = self.fetch_token(realm, service.as_deref(), &scopes).await?;
            self.inner.auth.put_token(host, self.scope_key, &token, lifetime);
            return Ok(format!("Bearer {token}"));
        }
        if challenges.iter().any(|c| matches!(c, Challenge::Basic { .. })) {
            self.inner.auth.set_scheme(host, HostScheme::Basic);
            return match &self.creds {
                Some(c) => Ok(auth::basic_header(c)),
                None => Err(self.unauthorized(format!(
                    "{host} requires Basic auth and no credentials are configured for it"
                ))),
            };
        }
        Err(self.unauthorized(format!(
            "{host} answered HTTP 401 without a usable WWW-Authenticate challenge"
        )))
    }

    /// `GET realm?service=…&scope=…`, with Basic credentials when we have any.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration), RegistryError> {
        let mut url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| self.invalid(format!("token realm {realm:?} is not an http(s) URL")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        tracing::debug!(%url, "fetching registry token");
        let mut rb = self.http.get(url);
        if let Some(c) = &self.creds {
            rb = rb.header(AUTHORIZATION, auth::basic_header(c));
        }
        let resp = rb.send().await.map_err(|e| self.http_error("GET token", e))?;
        let status = resp.status();
        let body = read_limited(resp, MAX_TOKEN_BODY)
            .await
            .map_err(|e| self.http_error("reading the token response", e))?;
        let Some(body) = body else {
            return Err(self.invalid(format!(
                "token server {realm} sent more than {MAX_TOKEN_BODY} bytes"
            )));
        };
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = describe_error_body(&body);
            return Err(self.unauthorized(match &self.creds {
                Some((user, _)) => format!(
                    "token server {realm} refused the credentials of user {user:?} (HTTP {}): {detail}",
                    status.as_u16()
                ),
                None => format!(
                    "token server {realm} refused anonymous access (HTTP {}) and no credentials are configured for {}: {detail}",
                    status.as_u16(),
                    self.target.host
                ),
            }));
        }
        if !status.is_success() {
            return Err(self.invalid(format!(
                "token server {realm} answered HTTP {}: {}",
                status.as_u16(),
                describe_error_body(&body)
            )));
        }
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| self.invalid(format!("token server {realm} sent no token")))
    }

    /// The error for a second 401: the answer to the challenge was refused.
    async fn refused(&self, resp: Response) -> RegistryError {
        let detail = error_detail(resp).await;
        let host = &self.target.host;
        let mut reason = match &self.creds {
            Some((user, _)) => format!("{host} refused the credentials of user {user:?}"),
            None => format!("{host} refused anonymous access and no credentials are configured for it"),
        };
        if !detail.is_empty() {
            reason = format!("{reason} ({detail})");
        }
        self.unauthorized(reason)
    }

    /// Maps a non-success response to an error, reading the registry's
    /// error JSON for the message.
    pub async fn status_error(&self, method: &'static str, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let detail = error_detail(resp).await;
        match status {
            404 => RegistryError::NotFound {
                target: Box::new(self.target.clone()),
                detail,
            },
            403 => self.unauthorized(format!(
                "{} denied {method} to {} (HTTP 403){}",
                self.target.host,
                match &self.creds {
                    Some((u, _)) => format!("user {u:?}"),
                    None => "anonymous access; no credentials are configured".into(),
                },
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            )),
            _ => RegistryError::Status {
                target: Box::new(self.target.clone()),
                method,
                status,
                detail,
            },
        }
    }

    /// The upload URL in a `Location` header, resolved against the request.
    pub fn location(&self, resp: &Response) -> Result<Url, RegistryError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.invalid("upload response has no Location header".into()))?;
        resp.url()
            .join(loc)
            .map_err(|e| self.invalid(format!("upload Location {loc:?} is invalid: {e}")))
    }

    pub fn http_error(&self, action: &'static str, source: reqwest::Error) -> RegistryError {
        RegistryError::Http {
            target: Box::new(self.target.clone()),
            action,
            source,
        }
    }

    pub fn invalid(&self, reason: String) -> RegistryError {
        RegistryError::InvalidResponse {
            target: Box::new(self.target.clone()),
            reason,
        }
    }

    fn unauthorized(&self, reason: String) -> RegistryError {
        RegistryError::Unauthorized {
            target: Box::new(self.target.clone()),
            reason,
        }
    }
}

/// Reads a body up to `limit` bytes; `None` when it is longer.
pub(crate) async fn read_limited(mut resp: Response, limit: usize) -> Result<Option<Bytes>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut buf = BytesMut::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// A header as text, if present and printable.
pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The registry's error JSON of a failed response, as text for a message.
async fn error_detail(resp: Response) -> String {
    let body = read_limited(resp, MAX_ERROR_BODY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    describe_error_body(&body)
}

/// A request refused before it was sent: `reason` says what about it was wrong.
pub(crate) fn invalid_argument(r: &Reference, object: String, reason: String) -> RegistryError {
    RegistryError::InvalidArgument {
        target: Box::new(Target {
            host: r.registry.clone(),
            repository: r.repository.clone(),
            object,
            mirror_of: None,
        }),
        reason,
    }
}
