//! `GET /v2/<name>/blobs/<digest>`: stream a blob.

use std::pin::Pin;
use std::task::{Context, Poll};

use berth_api::Digest;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;

use crate::client::{Call, Client};
use crate::error::{RegistryError, Target};
use crate::hosts::Capabilities;
use crate::pull_scope;
use crate::reference::Reference;

/// A blob's bytes as they arrive. The consumer verifies the digest while
/// consuming: nothing here buffers the blob.
pub struct BlobStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    content_length: Option<u64>,
    target: Target,
    /// Bytes still to drop: a server that ignored our Range header sent the
    /// blob from its start.
    skip: u64,
}

impl BlobStream {
    /// The length the server announced, if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Where the blob comes from (the mirror or upstream that served it).
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.body.poll_next_unpin(cx) {
                Poll::Ready(Some(Err(source))) => Poll::Ready(Some(Err(RegistryError::Http {
                    target: Box::new(self.target.clone()),
                    action: "reading the blob",
                    source,
                }))),
                Poll::Ready(Some(Ok(mut b))) if self.skip > 0 => {
                    let n = self.skip.min(b.len() as u64);
                    self.skip -= n;
                    let rest = b.split_off(n as usize);
                    if rest.is_empty() {
                        continue;
                    }
                    Poll::Ready(Some(Ok(rest)))
                }
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(b))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("target", &self.target)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens blob `digest` of `r`'s repository for streaming, from the first
    /// pull endpoint that serves it. Redirects (to blob storage) are
    /// followed; credentials are not sent along to another host.
    pub async fn get_blob(&self, r: &Reference, digest: &Digest) -> Result<BlobStream, RegistryError> {
        self.get_blob_from(r, digest, 0).await
    }

    /// Like [`Client::get_blob`], from byte `offset` on: resumes a download
    /// whose connection broke. Servers that ignore `Range` work too (the
    /// first `offset` bytes are dropped here).
    pub async fn get_blob_from(
        &self,
        r: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobStream, RegistryError> {
        let tail = format!("blobs/{digest}");
        let plan = self.plan(
            r,
            Capabilities::PULL,
            format!("blob {digest}"),
            pull_scope(&r.repository),
        )?;
        let mut last = None;
        for ep in &plan.endpoints {
            let result = match plan.call(ep) {
                Ok(call) => get_blob_at(&call, &tail, offset).await,
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

async fn get_blob_at(call: &Call<'_>, tail: &str, offset: u64) -> Result<BlobStream, RegistryError> {
    let url = call.url(tail)?;
    let resp = call
        .send("GET", |http| {
            let rb = http.get(url.clone());
            Ok(if offset > 0 {
                rb.header(reqwest::header::RANGE, format!("bytes={offset}-"))
            } else {
                rb
            })
        })
        .await?;
    let skip = match resp.status() {
        StatusCode::OK => offset,
        StatusCode::PARTIAL_CONTENT if offset > 0 => {
            let start = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(RegistryError::InvalidResponse {
                    target: Box::new(call.target.clone()),
                    reason: format!("asked for bytes from {offset}, got Content-Range starting at {start:?}"),
                });
            }
            0
        }
        _ => return Err(call.status_error("GET", resp).await),
    };
    Ok(BlobStream {
        content_length: resp.content_length().map(|n| n.saturating_sub(skip)),
        body: Box::pin(resp.bytes_stream()),
        target: call.target.clone(),
        skip,
    })
}
