//! Errors of the registry client. Every message names the host contacted,
//! the repository, the object (manifest tag/digest or blob digest) and what
//! went wrong, with the registry's own error codes when it sent any.

use std::fmt;
use std::path::PathBuf;

use berth_api::Digest;
use serde::Deserialize;

use crate::auth::AuthError;
use crate::hosts::HostsError;

/// What a request was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host contacted (`127.0.0.1:5000`, `registry-1.docker.io`).
    pub host: String,
    pub repository: String,
    /// `manifest latest`, `blob sha256:…`, `blob upload sha256:…`.
    pub object: String,
    /// Set when `host` is a mirror: the registry it stands in for.
    pub mirror_of: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}/{}", self.object, self.host, self.repository)?;
        if let Some(r) = &self.mirror_of {
            write!(f, " (mirror of {r})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("{target}: not found{}", paren(detail))]
    NotFound { target: Box<Target>, detail: String },
    #[error("{target}: unauthorized: {reason}")]
    Unauthorized { target: Box<Target>, reason: String },
    #[error("{target}: digest mismatch: expected {expected}, got {got}")]
    DigestMismatch {
        target: Box<Target>,
        expected: Digest,
        got: Digest,
    },
    #[error("{target}: {method} answered HTTP {status}{}", paren(detail))]
    Status {
        target: Box<Target>,
        method: &'static str,
        status: u16,
        detail: String,
    },
    #[error("{target}: {action}: {}", chain(source))]
    Http {
        target: Box<Target>,
        action: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{target}: invalid response: {reason}")]
    InvalidResponse { target: Box<Target>, reason: String },
    #[error("{target}: {reason}")]
    InvalidArgument { target: Box<Target>, reason: String },
    #[error("{target}: reading {}: {source}", path.display())]
    File {
        target: Box<Target>,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{target}: no endpoint of registry {registry} has the {capability} capability (check hosts.toml)"
    )]
    NoEndpoint {
        target: Box<Target>,
        registry: String,
        capability: &'static str,
    },
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("building an HTTP client for {what}: {reason}")]
    Client { what: String, reason: String },
}

impl RegistryError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RegistryError::Unauthorized { .. })
    }

    /// The request the error is about, when there was one.
    pub fn target(&self) -> Option<&Target> {
        use RegistryError::*;
        match self {
            NotFound { target, .. }
            | Unauthorized { target, .. }
            | DigestMismatch { target, .. }
            | Status { target, .. }
            | Http { target, .. }
            | InvalidResponse { target, .. }
            | InvalidArgument { target, .. }
            | File { target, .. }
            | NoEndpoint { target, .. } => Some(&**target),
            Hosts(_) | Auth(_) | Client { .. } => None,
        }
    }
}

fn paren(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// reqwest's own message is terse ("error sending request"); the cause
/// (connection refused, TLS failure, …) is what a user needs.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The registry's `{"errors":[{"code","message"}]}` as `CODE: message; …`,
/// else the start of whatever text it sent.
pub(crate) fn describe_error_body(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
        && !parsed.errors.is_empty()
    {
        return parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            host: "127.0.0.1:5000".into(),
            repository: "app".into(),
            object: "manifest v1".into(),
            mirror_of: None,
        }
    }

    #[test]
    fn messages_name_host_repository_object_and_cause() {
        let e = RegistryError::NotFound {
            target: Box::new(target()),
            detail: describe_error_body(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1"}}]}"#,
            ),
        };
        assert_eq!(
            e.to_string(),
            "manifest v1 in 127.0.0.1:5000/app: not found (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert!(e.is_not_found());

        let mut t = target();
        t.mirror_of = Some("docker.io".into());
        let e = RegistryError::Status {
            target: Box::new(t),
            method: "PUT",
            status: 400,
            detail: describe_error_body(
                br#"{"errors":[{"code":"DIGEST_INVALID","message":"a"},{"code":"X","message":""}]}"#,
            ),
        };
        assert_eq!(
            e.to_string(),
            "manifest v1 in 127.0.0.1:5000/app (mirror of docker.io): PUT answered HTTP 400 (DIGEST_INVALID: a; X)"
        );
        assert!(!e.is_not_found());
        assert_eq!(describe_error_body(b"  plain text\n"), "plain text");
        assert_eq!(describe_error_body(&[b'x'; 300]).chars().count(), 201);
    }
}
