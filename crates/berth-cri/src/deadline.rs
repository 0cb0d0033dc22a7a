//! Objects whose creation outlived the client's deadline.
//!
//! kubelet gives RunPodSandbox and CreateContainer a deadline (4 minutes by
//! default) and, past it, retries with the same name. Creating is not
//! cancelled when the client gives up, so the retry would find the name
//! taken and fail until kubelet removed the orphan: work thrown away under
//! exactly the load that made the first call slow. As CRI-O does, berth
//! keeps what a late creation produced and hands it to the retry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tonic::Request;

use crate::service::CriService;

/// Unclaimed late objects kept at most; kubelet's own garbage collection
/// removes any that no retry claims.
const MAX_KEPT: usize = 1024;

/// The caller's deadline, from the `grpc-timeout` header.
pub(crate) fn of<T>(req: &Request<T>) -> Option<Instant> {
    let value = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    Some(Instant::now() + parse_timeout(value)?)
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[derive(Default)]
pub(crate) struct Late(std::sync::Mutex<HashMap<String, String>>);

impl CriService {
    /// Records that `key` was created as `id` after the caller's deadline.
    pub(crate) fn keep_if_late(&self, deadline: Option<Instant>, key: String, id: &str) {
        if deadline.is_none_or(|d| Instant::now() < d) {
            return;
        }
        tracing::info!(%key, %id, "created after the client's deadline: kept for its retry");
        let mut late = self.late.0.lock().unwrap_or_else(|e| e.into_inner());
        if late.len() >= MAX_KEPT {
            late.clear();
        }
        late.insert(key, id.to_string());
    }

    /// The id a late creation of `key` left for this retry, if any.
    pub(crate) fn claim_late(&self, key: &str) -> Option<String> {
        self.late.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("7"), None);
        assert_eq!(parse_timeout("xS"), None);
        assert_eq!(parse_timeout("5s"), None);
    }
}
