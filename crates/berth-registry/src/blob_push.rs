//! Blob upload: `POST /v2/<name>/blobs/uploads/`, then either one
//! `PUT <location>?digest=` with the whole body (monolithic) or `PATCH`
//! chunks with `Content-Range` and a closing `PUT ?digest=`.

use std::io::{Seek, SeekFrom};
use std::path::Path;

use berth_api::Digest;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, StatusCode};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;
use url::Url;

use crate::client::{Call, Client, header_str};
use crate::error::{RegistryError, Target};
use crate::hosts::Capabilities;
use crate::push_scope;
use crate::reference::Reference;

/// Read size while streaming a file into a request body.
const FILE_READ_BUF: usize = 256 << 10;
const OCTET_STREAM: &str = "application/octet-stream";

impl Client {
    /// Uploads the file at `path` (`size` bytes, content `digest`) as a blob
    /// of `r`'s repository at the push endpoints. Files up to
    /// [`Client::upload_chunk_size`] go in one PUT, larger ones in PATCH
    /// chunks of that size. The file is streamed, never read whole; the
    /// registry verifies the digest when the upload is closed.
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        path: &Path,
    ) -> Result<(), RegistryError> {
        let object = format!("blob {digest}");
        let local_target = || Target {
            host: r.registry.clone(),
            repository: r.repository.clone(),
            object: object.clone(),
            mirror_of: None,
        };
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|source| RegistryError::File {
                target: Box::new(local_target()),
                path: path.to_path_buf(),
                source,
            })?;
        if meta.len() != size {
            return Err(RegistryError::InvalidArgument {
                target: Box::new(local_target()),
                reason: format!("{} has {} bytes, the blob {size}", path.display(), meta.len()),
            });
        }
        let threshold = self.upload_chunk_size;
        let plan = self.plan(r, Capabilities::PUSH, object.clone(), push_scope(&r.repository))?;
        let mut last = None;
        for ep in &plan.endpoints {
            let result = match plan.call(ep) {
                Ok(call) => push_blob_at(&call, digest, size, path, threshold).await,
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

async fn push_blob_at(
    call: &Call<'_>,
    digest: &Digest,
    size: u64,
    path: &Path,
    threshold: u64,
) -> Result<(), RegistryError> {
    let start = call.url("blobs/uploads/")?;
    let resp = call
        .send("POST", |http| {
            Ok(http.post(start.clone()).header(CONTENT_LENGTH, 0))
        })
        .await?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(call.status_error("POST", resp).await);
    }
    let mut location = call.location(&resp)?;
    // OCI distribution lets a registry ask for bigger chunks.
    let min_chunk = header_str(resp.headers(), "oci-chunk-min-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);

    // Monolithic: the whole file goes with the closing PUT.
    let final_body = if size <= threshold {
        Some((0, size))
    } else {
        let chunk = threshold.max(min_chunk);
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            location = patch_chunk(call, &location, path, offset, len).await?;
            offset += len;
        }
        None
    };

    let mut url = location;
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    let resp = call
        .send("PUT", |http| {
            let rb = http.put(url.clone()).header(CONTENT_TYPE, OCTET_STREAM);
            Ok(match final_body {
                Some((offset, len)) => rb
                    .header(CONTENT_LENGTH, len)
                    .body(file_body(call, path, offset, len)?),
                None => rb.header(CONTENT_LENGTH, 0),
            })
        })
        .await?;
    if !resp.status().is_success() {
        return Err(call.status_error("PUT", resp).await);
    }
    if let Some(reported) =
        header_str(resp.headers(), "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
        && &reported != digest
    {
        return Err(RegistryError::DigestMismatch {
            target: Box::new(call.target.clone()),
            expected: digest.clone(),
            got: reported,
        });
    }
    Ok(())
}

/// Sends bytes `offset..offset+len` of the file; returns the next upload URL.
async fn patch_chunk(
    call: &Call<'_>,
    location: &Url,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Url, RegistryError> {
    // Content-Range of an upload chunk is "<first>-<last>", inclusive,
    // without the "bytes " unit of HTTP ranges (distribution spec).
    let range = format!("{offset}-{}", offset + len - 1);
    let resp = call
        .send("PATCH", |http| {
            Ok(http
                .patch(location.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_LENGTH, len)
                .header("content-range", range.as_str())
                .body(file_body(call, path, offset, len)?))
        })
        .await?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(call.status_error("PATCH", resp).await);
    }
    call.location(&resp)
}

/// A request body streaming `len` bytes of `path` from `offset`. Opened
/// afresh for every attempt, so an auth retry resends the same bytes. The
/// caller sets Content-Length: hyper then sends a fixed-length body rather
/// than chunked transfer encoding.
fn file_body(call: &Call<'_>, path: &Path, offset: u64, len: u64) -> Result<Body, RegistryError> {
    let open = || -> std::io::Result<std::fs::File> {
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(f)
    };
    let file = open().map_err(|source| RegistryError::File {
        target: Box::new(call.target.clone()),
        path: path.to_path_buf(),
        source,
    })?;
    let reader = tokio::fs::File::from_std(file).take(len);
    Ok(Body::wrap_stream(ReaderStream::with_capacity(
        reader,
        FILE_READ_BUF,
    )))
}
