//! `PUT /v2/<name>/manifests/<reference>`: store a manifest.

use berth_api::Digest;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use sha2::{Digest as _, Sha256};

use crate::client::{Call, Client, header_str};
use crate::error::{RegistryError, Target};
use crate::hosts::Capabilities;
use crate::manifest_get::parse_manifest_reference;
use crate::push_scope;
use crate::reference::Reference;

impl Client {
    /// Stores `body` as manifest `reference` (a tag, or its own digest) with
    /// `media_type`, at the push endpoints. Returns the digest the registry
    /// reports (`Docker-Content-Digest`), else the body's sha256.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<Digest, RegistryError> {
        let object = format!("manifest {reference}");
        let local_target = || Target {
            host: r.registry.clone(),
            repository: r.repository.clone(),
            object: object.clone(),
            mirror_of: None,
        };
        let computed = Digest::from_sha256(&Sha256::digest(&body).into());
        if let Some(expected) = parse_manifest_reference(r, reference)?
            && expected != computed
        {
            return Err(RegistryError::DigestMismatch {
                target: Box::new(local_target()),
                expected,
                got: computed,
            });
        }
        let content_type = HeaderValue::from_str(media_type)
            .ok()
            .filter(|_| !media_type.is_empty())
            .ok_or_else(|| RegistryError::InvalidArgument {
                target: Box::new(local_target()),
                reason: format!("media type {media_type:?} is not a valid header value"),
            })?;
        let tail = format!("manifests/{reference}");
        let plan = self.plan(r, Capabilities::PUSH, object.clone(), push_scope(&r.repository))?;
        let mut last = None;
        for ep in &plan.endpoints {
            let result = match plan.call(ep) {
                Ok(call) => put_manifest_at(&call, &tail, &content_type, &body, &computed).await,
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

async fn put_manifest_at(
    call: &Call<'_>,
    tail: &str,
    content_type: &HeaderValue,
    body: &Bytes,
    computed: &Digest,
) -> Result<Digest, RegistryError> {
    let url = call.url(tail)?;
    let resp = call
        .send("PUT", |http| {
            Ok(http
                .put(url.clone())
                .header(CONTENT_TYPE, content_type.clone())
                .body(body.clone()))
        })
        .await?;
    if !resp.status().is_success() {
        return Err(call.status_error("PUT", resp).await);
    }
    let reported = header_str(resp.headers(), "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
    Ok(match reported {
        Some(d) => {
            if &d != computed {
                tracing::warn!(
                    target = %call.target,
                    reported = %d,
                    computed = %computed,
                    "registry reports a manifest digest other than the body's"
                );
            }
            d
        }
        None => computed.clone(),
    })
}
