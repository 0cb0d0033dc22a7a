//! `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repository>`:
//! cross-repository blob mount.

use berth_api::Digest;
use reqwest::StatusCode;
use reqwest::header::CONTENT_LENGTH;

use crate::client::{Call, Client, invalid_argument};
use crate::error::RegistryError;
use crate::hosts::Capabilities;
use crate::push_scope;
use crate::reference::{Reference, validate_repository};

impl Client {
    /// Asks the registry to link blob `digest` from `from_repository` (same
    /// registry) into `r`'s repository. `true` when mounted (201); `false`
    /// when the registry started an ordinary upload instead (202), which is
    /// cancelled here, so the caller pushes the blob.
    pub async fn mount_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let object = format!("blob {digest} (mount from {from_repository})");
        if let Err(reason) = validate_repository(from_repository) {
            return Err(invalid_argument(
                r,
                object,
                format!("source repository {from_repository:?}: {reason}"),
            ));
        }
        let mut scope = push_scope(&r.repository);
        scope.push(format!("repository:{from_repository}:pull"));
        let plan = self.plan(r, Capabilities::PUSH, object, scope)?;
        let mut last = None;
        for ep in &plan.endpoints {
            let result = match plan.call(ep) {
                Ok(call) => mount_blob_at(&call, digest, from_repository).await,
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

async fn mount_blob_at(
    call: &Call<'_>,
    digest: &Digest,
    from_repository: &str,
) -> Result<bool, RegistryError> {
    let mut url = call.url("blobs/uploads/")?;
    url.query_pairs_mut()
        .append_pair("mount", digest.as_str())
        .append_pair("from", from_repository);
    let resp = call
        .send("POST", |http| {
            Ok(http.post(url.clone()).header(CONTENT_LENGTH, 0))
        })
        .await?;
    match resp.status() {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => {
            // An upload session nobody will use: end it now rather than
            // leave it to the registry's upload purger.
            if let Ok(location) = call.location(&resp) {
                let cancelled = call
                    .send("DELETE", |http| Ok(http.delete(location.clone())))
                    .await;
                if let Err(e) = cancelled {
                    tracing::debug!(error = %e, "cancelling the unused upload failed");
                }
            }
            Ok(false)
        }
        _ => Err(call.status_error("POST", resp).await),
    }
}
