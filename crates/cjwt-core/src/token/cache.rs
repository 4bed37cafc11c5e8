//! The verified-token cache (SPEC §2 `cache`): full token string → verified token.
//!
//! Keyed by the whole token, so no collision can admit a different token. Only
//! the signature check and parsing are cached: time checks, rules and every
//! request-dependent constraint still run on each request. Bounded in entries
//! and in memory (estimated heap bytes, see [`VerifiedToken::heap_bytes`]): when
//! either bound would be exceeded, expired entries go first, then the least
//! recently used eighth, until the new entry fits. An entry larger than the
//! whole memory bound is not cached.

use crate::token::verify::{KeyLookup, VerifiedToken};
use std::collections::HashMap;
use std::rc::Rc;

struct Entry {
    token: Rc<VerifiedToken>,
    /// Unix seconds after which the entry is useless (token `exp` + skew).
    expires_at: i64,
    last_used: u64,
    /// The provider's key-set generation when the token was verified.
    generation: u64,
    /// Estimated heap bytes of the key and the verified token.
    bytes: usize,
}

/// A bounded LRU-ish cache of verified tokens (one per worker VM).
pub struct TokenCache {
    entries: HashMap<String, Entry>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    tick: u64,
}

/// Per-entry bookkeeping beyond key and token: the map slot, the `Rc` box, allocator headers.
const ENTRY_OVERHEAD: usize = 160;

impl TokenCache {
    /// An empty cache of at most `capacity` entries (0 disables it) and
    /// `max_bytes` estimated heap bytes.
    pub fn new(capacity: usize, max_bytes: usize) -> TokenCache {
        TokenCache { entries: HashMap::with_capacity(capacity.min(1024)), capacity, max_bytes, bytes: 0, tick: 0 }
    }

    /// The number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Estimated heap bytes held by the entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cached verification of `token`, if present and not expired.
    /// The cached verification of `token`, unless it has expired or its
    /// provider's key set changed since (`keys`' generation): then it is dropped.
    pub fn get(&mut self, token: &str, now: i64, keys: &dyn KeyLookup) -> Option<Rc<VerifiedToken>> {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(token) {
            Some(e) if e.expires_at > now && e.generation == keys.generation(e.token.provider) => {
                e.last_used = tick;
                Some(Rc::clone(&e.token))
            }
            Some(_) => {
                if let Some(e) = self.entries.remove(token) {
                    self.bytes = self.bytes.saturating_sub(e.bytes);
                }
                None
            }
            None => None,
        }
    }

    /// Stores a verification. Does nothing when the cache is disabled, the token
    /// has expired, or the entry alone exceeds the memory bound.
    pub fn insert(
        &mut self,
        token: &str,
        verified: Rc<VerifiedToken>,
        expires_at: i64,
        now: i64,
        keys: &dyn KeyLookup,
    ) {
        let generation = keys.generation(verified.provider);
        let bytes = token.len().saturating_add(verified.heap_bytes()).saturating_add(ENTRY_OVERHEAD);
        if self.capacity == 0 || expires_at <= now || bytes > self.max_bytes {
            return;
        }
        if let Some(old) = self.entries.remove(token) {
            self.bytes = self.bytes.saturating_sub(old.bytes);
        }
        self.make_room(bytes, now);
        self.tick += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        self.entries
            .insert(token.to_owned(), Entry { token: verified, expires_at, last_used: self.tick, generation, bytes });
    }

    fn fits(&self, bytes: usize) -> bool {
        self.entries.len() < self.capacity && self.bytes.saturating_add(bytes) <= self.max_bytes
    }

    /// Drops expired entries, then the least recently used eighth at a time,
    /// until an entry of `bytes` fits.
    fn make_room(&mut self, bytes: usize, now: i64) {
        if self.fits(bytes) {
            return;
        }
        self.entries.retain(|_, e| e.expires_at > now);
        self.recount();
        while !self.fits(bytes) && !self.entries.is_empty() {
            let mut ages: Vec<u64> = self.entries.values().map(|e| e.last_used).collect();
            ages.sort_unstable();
            let cut = ages.get(ages.len() / 8).copied().unwrap_or(u64::MAX);
            self.entries.retain(|_, e| e.last_used > cut);
            self.recount();
        }
    }

    fn recount(&mut self) {
        self.bytes = self.entries.values().map(|e| e.bytes).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::key::VerificationKey;
    use crate::token::verify::InlineOnly;

    fn verified(payload_len: usize) -> Rc<VerifiedToken> {
        let claims = serde_json::json!({"iss": "https://i", "pad": "x".repeat(payload_len)});
        Rc::new(VerifiedToken::for_tests(claims))
    }

    #[test]
    fn the_memory_bound_evicts_least_recently_used_first_and_refuses_giants() {
        let mut cache = TokenCache::new(1000, 64 * 1024);
        for i in 0..100 {
            cache.insert(&format!("token-{i}"), verified(2000), 100, 0, &InlineOnly);
            assert!(cache.bytes() <= 64 * 1024, "{} bytes after {i}", cache.bytes());
        }
        assert!(cache.len() >= 10, "the bound still admits what fits: {}", cache.len());
        assert!(cache.get("token-99", 0, &InlineOnly).is_some(), "the newest survives");
        assert!(cache.get("token-0", 0, &InlineOnly).is_none(), "the oldest went first");
        let before = cache.len();
        cache.insert("giant", verified(100_000), 100, 0, &InlineOnly);
        assert!(cache.get("giant", 0, &InlineOnly).is_none());
        assert_eq!(cache.len(), before, "a giant entry evicts nothing");
    }

    #[test]
    fn expired_entries_release_their_bytes() {
        let mut cache = TokenCache::new(1000, 1 << 20);
        cache.insert("a", verified(1000), 10, 0, &InlineOnly);
        let one = cache.bytes();
        assert!(one > 1000);
        assert!(cache.get("a", 10, &InlineOnly).is_none());
        assert_eq!(cache.bytes(), 0);
        cache.insert("b", verified(1000), 10, 0, &InlineOnly);
        cache.insert("b", verified(1000), 10, 0, &InlineOnly);
        assert_eq!(cache.bytes(), one, "re-inserting a key does not count it twice");
    }

    /// A key store whose generation the test moves.
    struct Generation(u64);
    impl KeyLookup for Generation {
        fn fetched(&self, _provider: usize) -> Option<&[VerificationKey]> {
            None
        }
        fn generation(&self, _provider: usize) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_key_set_change_invalidates_cached_verifications() {
        let mut cache = TokenCache::new(1000, 1 << 20);
        cache.insert("a", verified(10), 100, 0, &Generation(1));
        assert!(cache.get("a", 0, &Generation(1)).is_some());
        assert!(cache.get("a", 0, &Generation(2)).is_none(), "verified under another key set");
        assert_eq!(cache.bytes(), 0, "and dropped");
        assert!(cache.get("a", 0, &Generation(1)).is_none());
    }
}
