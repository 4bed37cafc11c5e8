//! The verified-token cache (SPEC §2 `cache`): full token string → verified token.
//!
//! Keyed by the whole token, so no collision can admit a different token. Only
//! the signature check and parsing are cached: time checks, rules and every
//! request-dependent constraint still run on each request. Bounded: when full,
//! expired entries go first, then the least recently used eighth.

use crate::core::verify::VerifiedToken;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

/// Hashes cache keys (whole tokens, hundreds of bytes) eight bytes at a time,
/// from a per-VM random seed: several times cheaper than SipHash in wasm. Flooding
/// does not apply: only tokens whose signature verified are ever inserted, and
/// equal hashes never admit anything (keys are compared in full).
#[derive(Clone, Copy, Debug)]
struct SeededTokenHash {
    seed: u64,
}

impl SeededTokenHash {
    fn random() -> SeededTokenHash {
        SeededTokenHash { seed: RandomState::new().hash_one(0x5eed_u64) }
    }
}

impl BuildHasher for SeededTokenHash {
    type Hasher = TokenHasher;
    fn build_hasher(&self) -> TokenHasher {
        TokenHasher(self.seed)
    }
}

struct TokenHasher(u64);

impl TokenHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::K).rotate_left(26);
    }
}

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(<[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes));
        }
        let mut tail = [0u8; 8];
        for (t, b) in tail.iter_mut().zip(chunks.remainder()) {
            *t = *b;
        }
        self.mix(u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56);
    }

    fn finish(&self) -> u64 {
        self.0.wrapping_mul(Self::K)
    }
}

struct Entry {
    token: Rc<VerifiedToken>,
    /// Unix seconds after which the entry is useless (token `exp` + skew).
    expires_at: i64,
    last_used: u64,
}

/// A bounded LRU-ish cache of verified tokens (one per worker VM).
pub struct TokenCache {
    entries: HashMap<String, Entry, SeededTokenHash>,
    capacity: usize,
    tick: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: HashMap::with_capacity_and_hasher(capacity.min(1024), SeededTokenHash::random()),
            capacity,
            tick: 0,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_differing_in_one_byte_anywhere_hash_apart() {
        let build = SeededTokenHash::random();
        let base = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyIn0.".to_string() + &"A".repeat(86);
        let mut hashes = HashSet::new();
        for i in 0..base.len() {
            for c in [b'B', b'C', b'-'] {
                let mut t = base.clone().into_bytes();
                t[i] = c;
                hashes.insert(build.hash_one(String::from_utf8(t).unwrap()));
            }
        }
        assert_eq!(hashes.len(), base.len() * 3, "no collisions among single-byte variants");
        // Prefixes of one another (the length is mixed in) hash apart too.
        let prefixes: HashSet<u64> = (0..=base.len()).map(|n| build.hash_one(&base[..n])).collect();
        assert_eq!(prefixes.len(), base.len() + 1);
    }

    #[test]
    fn two_vms_seed_differently() {
        assert_ne!(SeededTokenHash::random().hash_one("t"), SeededTokenHash::random().hash_one("t"));
    }
}
