//! Test support: a real `docker-registry` per test on a free loopback port,
//! killed by PID when its guard drops (also on panic), and a tiny HTTP/1.1
//! server for behaviour a real registry will not produce.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_registry::{Client, ClientConfig, Digest, Reference};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `alice:s3cret`, bcrypt cost 4 (docker-registry accepts only bcrypt).
/// Made once with Python's `crypt.crypt("s3cret", crypt.mksalt(METHOD_BLOWFISH, rounds=16))`.
pub const HTPASSWD: &str = "alice:$2b$04$fdsRYkYPP60VYYTjEJylYeKDNAkOMd3K97kiYRWtvV3h05eeoe8vm\n";

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    tls: bool,
    dir: tempfile::TempDir,
}

/// How to run a registry.
#[derive(Default)]
pub struct Options<'a> {
    /// htpasswd contents: the registry then requires Basic auth.
    pub htpasswd: Option<&'a str>,
    /// Certificate and key (PEM files): the registry then serves HTTPS.
    pub tls: Option<(&'a Path, &'a Path)>,
}

impl Registry {
    pub async fn start() -> Registry {
        Registry::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options<'_>) -> Registry {
        let htpasswd = opts.htpasswd;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n",
            root = dir.path().join("data").display(),
        );
        if let Some((cert, key)) = opts.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(h) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, h).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // If this test process dies without unwinding (SIGKILL), the kernel
        // kills the registry too. prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let reg = Registry {
            child,
            port,
            tls: opts.tls.is_some(),
            dir,
        };
        reg.wait_ready().await;
        reg
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let scheme = if self.tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}/v2/", self.port);
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Readiness only: the tests check certificates with the client under test.
        let http = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        loop {
            if let Ok(resp) = http.get(&url).send().await
                && matches!(resp.status().as_u16(), 200 | 401)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry on port {} did not come up; log:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reference(&self, repo_and_tag: &str) -> Reference {
        Reference::parse(&format!("{}/{repo_and_tag}", self.host())).unwrap()
    }

    /// Access log lines (`"METHOD /path HTTP/1.1" status …`) so far.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("registry.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" HTTP/"))
            .map(str::to_string)
            .collect()
    }

    /// How many requests with `method` went to a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        let needle = format!("\"{method} {prefix}");
        self.requests().iter().filter(|l| l.contains(&needle)).count()
    }

    /// `count`, waiting briefly for it to reach `expected`: the registry logs
    /// a request just after answering it.
    pub async fn wait_count(&self, method: &str, prefix: &str, expected: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let n = self.count(method, prefix);
            if n == expected || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to exactly this PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config(certs_dir: &Path) -> ClientConfig {
    ClientConfig {
        certs_dir: certs_dir.to_path_buf(),
        docker_config: None,
        creds: None,
        user_agent: "berth-registry-tests".into(),
    }
}

/// A client with an empty certs dir (so: no mirrors) and no credentials.
pub fn plain_client(dir: &tempfile::TempDir) -> Client {
    Client::new(config(&dir.path().join("certs.d"))).unwrap()
}

pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_sha256(&Sha256::digest(bytes).into())
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write_blob(dir: &Path, bytes: &[u8]) -> (Digest, PathBuf) {
    let d = digest_of(bytes);
    let path = dir.join(d.hex());
    std::fs::write(&path, bytes).unwrap();
    (d, path)
}

/// Pushes `bytes` as a blob of `r` and returns its digest.
pub async fn push_bytes(client: &Client, r: &Reference, dir: &Path, bytes: &[u8]) -> Digest {
    let (d, path) = write_blob(dir, bytes);
    client.push_blob(r, &d, bytes.len() as u64, &path).await.unwrap();
    d
}

/// Collects a blob stream.
pub async fn read_blob(client: &Client, r: &Reference, d: &Digest) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut s = client.get_blob(r, d).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Pushes a config and a layer and returns an OCI manifest naming them.
pub async fn push_oci_image(client: &Client, r: &Reference, dir: &Path, seed: u64) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = bytes_of(4096, seed);
    let cd = push_bytes(client, r, dir, &config).await;
    let ld = push_bytes(client, r, dir, &layer).await;
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"{OCI_CONFIG}","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes()
}

// ---- a minimal HTTP/1.1 server -------------------------------------------

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path with query, as sent.
    pub target: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Query parameters in order (decoded).
    pub fn query(&self) -> Vec<(String, String)> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Resp {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Resp {
        self.body = body.into();
        self
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// Serves `handler` on a loopback port until the test's runtime ends. One
/// request per connection (`Connection: close`), which is all these tests need.
pub async fn serve(handler: Handler) -> SocketAddr {
    serve_on(bind().await, handler)
}

/// A loopback listener, for servers whose handler must know their address.
pub async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// [`serve`] on an already bound listener.
pub fn serve_on(listener: tokio::net::TcpListener, handler: Handler) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let Some(req) = read_request(&mut conn).await else {
                    return;
                };
                let resp = handler(&req);
                let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
                let has_len = resp
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
                for (k, v) in &resp.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                if !has_len {
                    head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
                }
                head.push_str("\r\n");
                let _ = conn.write_all(head.as_bytes()).await;
                if req.method != "HEAD" {
                    let _ = conn.write_all(&resp.body).await;
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Req {
        method,
        target,
        headers,
        body,
    })
}
