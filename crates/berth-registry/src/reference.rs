//! Image references as docker and containerd spell them:
//! `[registry/]repository[:tag][@digest]`.
//!
//! Normalization follows docker's rules so that `busybox`, `library/busybox`
//! and `docker.io/library/busybox:latest` name the same image: a first path
//! component is a registry host only if it contains `.` or `:` or is
//! `localhost`; otherwise the registry is `docker.io`, where single-component
//! names live under `library/`. A reference without tag and digest gets the
//! tag `latest`; one with a digest keeps whatever tag it was written with.

use std::fmt;
use std::str::FromStr;

use berth_api::Digest;

/// The registry of references that name none.
pub const DOCKER_HUB: &str = "docker.io";
/// Where docker.io's distribution API actually lives.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Docker's limit on `repository` plus registry host.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {input:?}: registry host {host:?} is invalid: {reason}")]
    Registry {
        input: String,
        host: String,
        reason: &'static str,
    },
    #[error("image reference {input:?}: repository {repository:?} is invalid: {reason}")]
    Repository {
        input: String,
        repository: String,
        reason: String,
    },
    #[error(
        "image reference {input:?}: tag {tag:?} is invalid: must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
    )]
    Tag { input: String, tag: String },
    #[error("image reference {input:?}: digest {digest:?} is invalid: {reason}")]
    Digest {
        input: String,
        digest: String,
        reason: String,
    },
    #[error("image reference {input:?}: name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong { input: String },
}

impl Reference {
    /// Parses and normalizes a reference; see the module documentation.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, d)) => {
                let digest = d.parse::<Digest>().map_err(|e| ReferenceError::Digest {
                    input: input.to_string(),
                    digest: d.to_string(),
                    reason: e.to_string(),
                })?;
                (name, Some(digest))
            }
            None => (input, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag
            && !is_valid_tag(tag)
        {
            return Err(ReferenceError::Tag {
                input: input.to_string(),
                tag: tag.to_string(),
            });
        }

        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if is_registry_component(first) => {
                (normalize_registry(first).to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if let Err(reason) = validate_registry(&registry) {
            return Err(ReferenceError::Registry {
                input: input.to_string(),
                host: registry,
                reason,
            });
        }
        if let Err(reason) = validate_repository(&repository) {
            return Err(ReferenceError::Repository {
                input: input.to_string(),
                repository,
                reason,
            });
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong {
                input: input.to_string(),
            });
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Checks a reference built by hand (the fields are public) against the
    /// same rules as [`Reference::parse`]; the client refuses invalid ones
    /// before they become URLs or configuration paths.
    pub fn validate(&self) -> Result<(), ReferenceError> {
        let input = self.to_string();
        validate_registry(&self.registry).map_err(|reason| ReferenceError::Registry {
            input: input.clone(),
            host: self.registry.clone(),
            reason,
        })?;
        validate_repository(&self.repository).map_err(|reason| ReferenceError::Repository {
            input: input.clone(),
            repository: self.repository.clone(),
            reason,
        })?;
        match &self.tag {
            Some(tag) if !is_valid_tag(tag) => Err(ReferenceError::Tag {
                input,
                tag: tag.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// What to ask the registry's manifest endpoint for: the digest when
    /// present (content addressed, no trust in the tag needed), else the tag.
    pub fn tag_or_digest(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => "latest",
        }
    }

    /// The short form docker prints: `busybox:latest`, `user/x:1`,
    /// `localhost:5000/x:tag`.
    pub fn familiar(&self) -> String {
        let mut s = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        self.push_tag_and_digest(&mut s);
        s
    }

    /// `registry/repository` without tag and digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    fn push_tag_and_digest(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_tag_and_digest(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// `[\w][\w.-]{0,127}`, the OCI distribution tag grammar.
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

fn is_registry_component(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// `index.docker.io` is docker's historical name for docker.io.
fn normalize_registry(host: &str) -> &str {
    if host == "index.docker.io" {
        DOCKER_HUB
    } else {
        host
    }
}

/// `host[:port]` where host is a DNS name (labels of [A-Za-z0-9-]) or a
/// bracketed IPv6 address.
pub(crate) fn validate_registry(registry: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err("unterminated IPv6 address");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("not an IPv6 address");
        }
        match after {
            "" => return Ok(()),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err("unexpected characters after the IPv6 address"),
            },
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.is_empty() || !host.split('.').all(label_ok) {
            return Err("host must be DNS labels of letters, digits and '-' separated by '.'");
        }
    }
    if let Some(port) = port
        && (port.is_empty() || port.parse::<u16>().is_err())
    {
        return Err("port must be a number from 0 to 65535");
    }
    Ok(())
}

/// Path components of `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, separated by `/`.
pub(crate) fn validate_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("repository name is empty".into());
    }
    for component in repository.split('/') {
        validate_component(component).map_err(|why| format!("path component {component:?} {why}"))?;
    }
    Ok(())
}

fn validate_component(c: &str) -> Result<(), &'static str> {
    let b = c.as_bytes();
    if b.is_empty() {
        return Err("is empty");
    }
    if b.iter().any(|c| c.is_ascii_uppercase()) {
        return Err("must be lowercase");
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err("must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|s| s == b'-');
        if !ok {
            return Err("may only use '.', '_', '__' or '-' between lowercase letters and digits");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn good_references_normalize() {
        let d = format!("@{D}");
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            // input, registry, repository, tag
            ("busybox", "docker.io", "library/busybox", Some("latest")),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36")),
            ("user/x", "docker.io", "user/x", Some("latest")),
            (
                "docker.io/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            ("localhost/x", "localhost", "x", Some("latest")),
            ("localhost:5000/x", "localhost:5000", "x", Some("latest")),
            ("127.0.0.1:5123/a/b:tag", "127.0.0.1:5123", "a/b", Some("tag")),
            (
                "quay.io/a/b/c-d__e.f:V_1.0-rc",
                "quay.io",
                "a/b/c-d__e.f",
                Some("V_1.0-rc"),
            ),
            ("[::1]:5000/x", "[::1]:5000", "x", Some("latest")),
            ("a---b", "docker.io", "library/a---b", Some("latest")),
        ];
        for (input, registry, repository, tag) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, *registry, "{input}");
            assert_eq!(r.repository, *repository, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.digest, None, "{input}");
        }

        let r = Reference::parse(&format!("host.example/x{d}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("host.example", "x")
        );
        assert_eq!(r.tag, None, "a digest reference gets no default tag");
        assert_eq!(r.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(r.tag_or_digest(), D);

        let r = Reference::parse(&format!("x:tag{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("tag"), "tag kept next to the digest");
        assert_eq!(r.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/x:tag{d}"));
        assert_eq!(r.tag_or_digest(), D, "the digest wins for fetching");
    }

    #[test]
    fn display_and_familiar() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("user/x:1", "docker.io/user/x:1", "user/x:1"),
            (
                "library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            (
                "localhost:5000/x",
                "localhost:5000/x:latest",
                "localhost:5000/x:latest",
            ),
        ];
        for (input, full, short) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), full);
            assert_eq!(r.familiar(), short);
            // Display is a fixed point of parsing.
            assert_eq!(Reference::parse(full).unwrap(), r);
        }
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.familiar(), format!("busybox@{D}"));
    }

    #[test]
    fn bad_references_name_the_bad_part() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Busybox", "\"Busybox\""),
            ("docker.io/Library/x", "\"Library\""),
            ("x:", "tag \"\""),
            ("x:-bad", "tag \"-bad\""),
            ("x:bad/tag", "registry host \"x:bad\""),
            ("x@sha256:abc", "digest \"sha256:abc\""),
            ("x@md5:abc", "digest \"md5:abc\""),
            ("a//b", "component \"\""),
            ("a/-b", "\"-b\""),
            ("a/b.", "\"b.\""),
            ("a/b..c", "\"b..c\""),
            ("a/b___c", "\"b___c\""),
            ("a/b-.c", "\"b-.c\""),
            ("my host:5000/x", "registry host \"my host:5000\""),
            ("host:99999/x", "registry host \"host:99999\""),
            ("ho_st.io/x", "registry host \"ho_st.io\""),
            ("host.io:/x", "registry host \"host.io:\""),
            ("[::1/x", "registry host \"[::1\""),
        ];
        for (input, needle) in cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{input:?}: {msg:?} lacks {needle:?}");
                }
            }
        }
        let long_tag = format!("x:{}", "a".repeat(129));
        let e = Reference::parse(&long_tag).unwrap_err().to_string();
        assert!(e.contains("tag \"aaaa"), "{e}");

        // Like docker: without a '/', "localhost:5000" is repository
        // "localhost" with tag "5000", not a registry.
        let r = Reference::parse("localhost:5000").unwrap();
        assert_eq!(r.repository, "library/localhost");
        assert_eq!(r.tag.as_deref(), Some("5000"));

        let long = format!("h.io/{}", "a".repeat(260));
        let mut hand_made = Reference::parse("x").unwrap();
        hand_made.repository = "../../v2/other".into();
        assert!(matches!(
            hand_made.validate(),
            Err(ReferenceError::Repository { .. })
        ));
        hand_made.repository = "ok".into();
        hand_made.registry = "../etc".into();
        assert!(matches!(
            hand_made.validate(),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(Reference::parse("a.io/b/c:d").unwrap().validate().is_ok());

        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::NameTooLong { .. })
        ));
    }

    #[test]
    fn tag_grammar() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag("a?b"));
        assert!(!is_valid_tag("sha256:00"));
    }
}
