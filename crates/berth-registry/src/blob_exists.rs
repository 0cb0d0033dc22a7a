//! `HEAD /v2/<name>/blobs/<digest>`: does the push target have a blob?

use berth_api::Digest;
use reqwest::StatusCode;

use crate::client::{Call, Client};
use crate::error::RegistryError;
use crate::hosts::Capabilities;
use crate::push_scope;
use crate::reference::Reference;

impl Client {
    /// Whether the push endpoint (the first with the `push` capability that
    /// answers) has blob `digest` in `r`'s repository. Asked with push scope
    /// because it precedes uploads: the token then serves the upload too.
    pub async fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let tail = format!("blobs/{digest}");
        let plan = self.plan(
            r,
            Capabilities::PUSH,
            format!("blob {digest}"),
            push_scope(&r.repository),
        )?;
        let mut last = None;
        for ep in &plan.endpoints {
            let result = match plan.call(ep) {
                Ok(call) => blob_exists_at(&call, &tail).await,
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

async fn blob_exists_at(call: &Call<'_>, tail: &str) -> Result<bool, RegistryError> {
    let url = call.url(tail)?;
    let resp = call.send("HEAD", |http| Ok(http.head(url.clone()))).await?;
    match resp.status() {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(call.status_error("HEAD", resp).await),
    }
}
