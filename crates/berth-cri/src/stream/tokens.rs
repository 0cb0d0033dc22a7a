//! The single-use request cache behind the streaming URLs: a CRI call
//! stores its request under a random token, the first HTTP request naming
//! that token takes it out again. Like kubelet's `requestCache`, entries
//! expire after a TTL and the number in flight is bounded, so a client that
//! asks for URLs and never uses them cannot grow the cache without limit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::v1;

/// kubelet's `cacheTTL`.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// kubelet's `maxInFlight`.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// 128 bits: kubelet uses 48, which is guessable in a long-lived daemon.
const TOKEN_BYTES: usize = 16;

/// What a token stands for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CachedRequest {
    Exec(v1::ExecRequest),
    Attach(v1::AttachRequest),
    PortForward(v1::PortForwardRequest),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("streaming request cache is full: {0} requests in flight")]
    TooManyInFlight(usize),
}

struct Entry {
    request: CachedRequest,
    expires: Instant,
}

#[derive(Default)]
struct Entries {
    by_token: HashMap<String, Entry>,
    /// Insertion order, oldest first, for expiry and eviction; a token
    /// consumed early stays here until its turn and is then skipped.
    order: VecDeque<(Instant, String)>,
}

pub(crate) struct TokenCache {
    entries: Mutex<Entries>,
    ttl: Duration,
    max_in_flight: usize,
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration, max_in_flight: usize) -> TokenCache {
        TokenCache {
            entries: Mutex::new(Entries::default()),
            ttl,
            max_in_flight,
        }
    }

    /// Stores `request` under a fresh token; fails when `max_in_flight`
    /// unexpired requests are waiting, as kubelet does.
    pub(crate) fn insert(&self, request: CachedRequest) -> Result<String, TokenError> {
        let mut entries = self.lock();
        let now = Instant::now();
        entries.expire(now);
        if entries.by_token.len() >= self.max_in_flight {
            return Err(TokenError::TooManyInFlight(entries.by_token.len()));
        }
        Ok(entries.add(request, now + self.ttl))
    }

    /// Like [`TokenCache::insert`], but makes room by dropping the oldest
    /// waiting request instead of failing.
    pub(crate) fn insert_evicting(&self, request: CachedRequest) -> String {
        let mut entries = self.lock();
        let now = Instant::now();
        entries.expire(now);
        while entries.by_token.len() >= self.max_in_flight.max(1) {
            entries.evict_oldest();
        }
        entries.add(request, now + self.ttl)
    }

    /// Takes the request out: a token works once, and not after it expired.
    pub(crate) fn consume(&self, token: &str) -> Option<CachedRequest> {
        let mut entries = self.lock();
        let entry = entries.by_token.remove(token)?;
        (Instant::now() <= entry.expires).then_some(entry.request)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_token.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map stays consistent across a panic in another holder: every
        // mutation is a single insert or remove.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entries {
    fn add(&mut self, request: CachedRequest, expires: Instant) -> String {
        let token = loop {
            let token = random_token();
            if !self.by_token.contains_key(&token) {
                break token;
            }
        };
        self.order.push_back((expires, token.clone()));
        self.by_token.insert(token.clone(), Entry { request, expires });
        token
    }

    fn expire(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires >= now {
                return;
            }
            let (_, token) = self.order.pop_front().expect("front exists");
            self.by_token.remove(&token);
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((_, token)) = self.order.pop_front() {
            if self.by_token.remove(&token).is_some() {
                return;
            }
        }
    }
}

fn random_token() -> String {
    let mut raw = [0u8; TOKEN_BYTES];
    // Without an entropy source the daemon cannot hand out safe URLs at
    // all; getrandom only fails on systems berth does not run on.
    getrandom::fill(&mut raw).expect("the kernel's random source is readable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: &str) -> CachedRequest {
        CachedRequest::Exec(v1::ExecRequest {
            container_id: id.into(),
            ..Default::default()
        })
    }

    #[test]
    fn token_is_single_use() {
        let cache = TokenCache::new(DEFAULT_TTL, 10);
        let token = cache.insert(exec("a")).unwrap();
        assert_eq!(cache.consume(&token), Some(exec("a")));
        assert_eq!(cache.consume(&token), None);
        assert_eq!(cache.consume("nonexistent"), None);
    }

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let cache = TokenCache::new(DEFAULT_TTL, 100);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let token = cache.insert(exec("a")).unwrap();
            assert!(token.len() >= 20, "{token}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token}"
            );
            assert!(seen.insert(token));
        }
    }

    #[test]
    fn expired_token_is_not_found_and_collected() {
        let cache = TokenCache::new(Duration::ZERO, 10);
        let token = cache.insert(exec("a")).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(cache.consume(&token), None);
        cache.insert(exec("b")).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        cache.insert(exec("c")).unwrap();
        assert_eq!(cache.len(), 1, "the expired entry is collected on insert");
    }

    #[test]
    fn in_flight_bound_fails_or_evicts() {
        let cache = TokenCache::new(DEFAULT_TTL, 2);
        let first = cache.insert(exec("1")).unwrap();
        cache.insert(exec("2")).unwrap();
        assert!(matches!(
            cache.insert(exec("3")),
            Err(TokenError::TooManyInFlight(2))
        ));
        let third = cache.insert_evicting(exec("3"));
        assert_eq!(cache.consume(&first), None, "the oldest was evicted");
        assert_eq!(cache.consume(&third), Some(exec("3")));
        // A consumed token frees its slot.
        cache.insert(exec("4")).unwrap();
    }
}
