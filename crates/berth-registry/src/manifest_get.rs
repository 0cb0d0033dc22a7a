//! `GET /v2/<name>/manifests/<reference>`: fetch and verify a manifest.

use berth_api::Digest;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::client::{Call, Client, header_str, read_limited};
use crate::error::{RegistryError, Target};
use crate::hosts::Capabilities;
use crate::media_types::{self, MANIFEST_ACCEPT};
use crate::reference::{Reference, is_valid_tag};
use crate::{Descriptor, pull_scope};

/// Manifests are small; anything bigger is refused before it is buffered
/// (containerd's limit).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

impl Client {
    /// Fetches the manifest `reference` (a tag or a digest) of `r`'s
    /// repository. The bytes are verified against the requested digest, or
    /// for a tag against the registry's `Docker-Content-Digest` when sent.
    /// A tag needs an endpoint with `pull` and `resolve`, a digest only
    /// `pull` (hosts.toml capabilities).
    pub async fn get_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<(Descriptor, Bytes), RegistryError> {
        let wanted = parse_manifest_reference(r, reference)?;
        let caps = match wanted {
            Some(_) => Capabilities::PULL,
            None => Capabilities::PULL | Capabilities::RESOLVE,
        };
        let tail = format!("manifests/{reference}");
        let plan = self.plan(
            r,
            caps,
            format!("manifest {reference}"),
            pull_scope(&r.repository),
        )?;
        let mut last = None;
        for ep in &plan.endpoints {
            let result = match plan.call(ep) {
                Ok(call) => get_manifest_at(&call, &tail, wanted.as_ref()).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(plan.failed(ep, e)),
            }
        }
        Err(plan.give_up(last))
    }
}

async fn get_manifest_at(
    call: &Call<'_>,
    tail: &str,
    wanted: Option<&Digest>,
) -> Result<(Descriptor, Bytes), RegistryError> {
    let url = call.url(tail)?;
    let resp = call
        .send("GET", |http| {
            Ok(http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
        })
        .await?;
    if resp.status() != StatusCode::OK {
        return Err(call.status_error("GET", resp).await);
    }
    let headers = resp.headers();
    let content_type = header_str(headers, CONTENT_TYPE.as_str())
        .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_string());
    let announced = header_str(headers, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
    let body = read_limited(resp, MAX_MANIFEST_SIZE)
        .await
        .map_err(|e| call.http_error("reading the manifest", e))?
        .ok_or_else(|| call.invalid(format!("manifest is larger than {MAX_MANIFEST_SIZE} bytes")))?;
    let got = Digest::from_sha256(&Sha256::digest(&body).into());
    if let Some(expected) = wanted.cloned().or(announced)
        && expected != got
    {
        return Err(RegistryError::DigestMismatch {
            target: Box::new(call.target.clone()),
            expected,
            got,
        });
    }
    let media_type = media_type_of(content_type.as_deref(), &body)
        .ok_or_else(|| call.invalid("manifest has no recognizable media type".into()))?;
    let descriptor = Descriptor {
        media_type,
        digest: got,
        size: body.len() as u64,
    };
    Ok((descriptor, body))
}

/// A digest reference, or `None` for a valid tag; anything else is refused
/// before it becomes part of a URL.
pub(crate) fn parse_manifest_reference(
    r: &Reference,
    reference: &str,
) -> Result<Option<Digest>, RegistryError> {
    if is_valid_tag(reference) {
        return Ok(None);
    }
    reference
        .parse::<Digest>()
        .map(Some)
        .map_err(|e| RegistryError::InvalidArgument {
            target: Box::new(Target {
                host: r.registry.clone(),
                repository: r.repository.clone(),
                object: format!("manifest {reference:?}"),
                mirror_of: None,
            }),
            reason: format!("not a tag or digest: {e}"),
        })
}

#[derive(Deserialize)]
struct Sniff {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
    config: Option<serde::de::IgnoredAny>,
}

/// The registry's Content-Type, unless it is generic; then the body's
/// `mediaType`; then the OCI type its shape implies (`mediaType` is
/// optional in OCI manifests).
fn media_type_of(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    if let Some(ct) = content_type
        && !ct.is_empty()
        && !matches!(ct, "application/json" | "text/plain" | "application/octet-stream")
    {
        return Some(ct.to_string());
    }
    let sniff: Sniff = serde_json::from_slice(body).ok()?;
    if let Some(mt) = sniff.media_type.filter(|m| !m.is_empty()) {
        return Some(mt);
    }
    if sniff.manifests.is_some() {
        Some(media_types::OCI_INDEX.to_string())
    } else if sniff.layers.is_some() || sniff.config.is_some() {
        Some(media_types::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_sources() {
        let oci = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            media_type_of(Some(media_types::DOCKER_MANIFEST), oci).as_deref(),
            Some(media_types::DOCKER_MANIFEST),
            "a specific Content-Type wins"
        );
        assert_eq!(
            media_type_of(Some("application/json"), br#"{"mediaType":"x/y"}"#).as_deref(),
            Some("x/y")
        );
        assert_eq!(
            media_type_of(None, oci).as_deref(),
            Some(media_types::OCI_MANIFEST)
        );
        assert_eq!(
            media_type_of(Some(""), br#"{"manifests":[]}"#).as_deref(),
            Some(media_types::OCI_INDEX)
        );
        assert_eq!(media_type_of(None, b"{}"), None);
        assert_eq!(media_type_of(None, b"not json"), None);
    }

    #[test]
    fn manifest_references_are_tags_or_digests() {
        let r = Reference::parse("x").unwrap();
        assert_eq!(parse_manifest_reference(&r, "v1").unwrap(), None);
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_manifest_reference(&r, d).unwrap().unwrap().as_str(), d);
        for bad in ["../../x", "a/b", "", "sha256:zz", "v1?x=y"] {
            let e = parse_manifest_reference(&r, bad).unwrap_err();
            assert!(matches!(e, RegistryError::InvalidArgument { .. }), "{bad}: {e}");
        }
    }
}
