//! The verified-token cache (SPEC §2 `cache`): full token string → verified token.
//!
//! Keyed by the whole token, so no collision can admit a different token. Only
//! the signature check and parsing are cached: time checks, rules and every
//! request-dependent constraint still run on each request. Bounded: when full,
//! expired entries go first, then the least recently used eighth.

use crate::core::verify::VerifiedToken;
use std::collections::HashMap;
use std::rc::Rc;

struct Entry {
    token: Rc<VerifiedToken>,
    /// Unix seconds after which the entry is useless (token `exp` + skew).
    expires_at: i64,
    last_used: u64,
}

/// A bounded LRU-ish cache of verified tokens (one per worker VM).
pub struct TokenCache {
    entries: HashMap<String, Entry>,
    capacity: usize,
    tick: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache { entries: HashMap::with_capacity(capacity.min(1024)), capacity, tick: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached verification of `token`, if present and not expired.
    pub fn get(&mut self, token: &str, now: i64) -> Option<Rc<VerifiedToken>> {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(token) {
            Some(e) if e.expires_at > now => {
                e.last_used = tick;
                Some(Rc::clone(&e.token))
            }
            Some(_) => {
                self.entries.remove(token);
                None
            }
            None => None,
        }
    }

    /// Stores a verification. Does nothing when the cache is disabled.
    pub fn insert(&mut self, token: &str, verified: Rc<VerifiedToken>, expires_at: i64, now: i64) {
        if self.capacity == 0 || expires_at <= now {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict(now);
        }
        self.tick += 1;
        self.entries.insert(token.to_owned(), Entry { token: verified, expires_at, last_used: self.tick });
    }

    fn evict(&mut self, now: i64) {
        self.entries.retain(|_, e| e.expires_at > now);
        if self.entries.len() < self.capacity {
            return;
        }
        let mut ages: Vec<u64> = self.entries.values().map(|e| e.last_used).collect();
        ages.sort_unstable();
        let cut = ages.get(self.capacity / 8).copied().unwrap_or(u64::MAX);
        self.entries.retain(|_, e| e.last_used > cut);
    }
}
