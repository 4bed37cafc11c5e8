//! Stateless DPoP nonces (RFC 9449 §8): a nonce is a keyed hash of a time
//! bucket, so every replica configured with the same secret issues and accepts
//! the same nonces without shared state. The current and the previous bucket
//! are accepted, so a nonce stays valid for at least `rotate_seconds`.

use crate::config::NonceKey;
use crate::encoding::b64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Domain separation of the nonce MAC.
const LABEL: &[u8] = b"cjwt dpop nonce v1\0";

fn nonce_for(key: &NonceKey, bucket: i64) -> String {
    let tag = Hmac::<Sha256>::new_from_slice(&key.secret)
        .map(|m| m.chain_update(LABEL).chain_update(bucket.to_be_bytes()).finalize().into_bytes().to_vec())
        .unwrap_or_default();
    b64::encode(tag.get(..16).unwrap_or(&[]))
}

fn bucket(key: &NonceKey, now: i64) -> i64 {
    now.div_euclid(key.rotate_seconds.max(1))
}

/// The nonce current at `now` (for the `dpop-nonce` header).
pub fn current(key: &NonceKey, now: i64) -> String {
    nonce_for(key, bucket(key, now))
}

/// Whether `nonce` is the current or the previous bucket's nonce at `now`,
/// compared in constant time.
pub fn is_current(key: &NonceKey, nonce: &str, now: i64) -> bool {
    let b = bucket(key, now);
    [b, b.saturating_sub(1)]
        .iter()
        .fold(false, |ok, b| ok | constant_time_eq(nonce_for(key, *b).as_bytes(), nonce.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> NonceKey {
        NonceKey { secret: vec![byte; 32], rotate_seconds: 300 }
    }

    #[test]
    fn a_nonce_is_good_for_its_bucket_and_the_next_only() {
        let k = key(7);
        let now: i64 = 1_800_000_100;
        let n = current(&k, now);
        assert_eq!(n.len(), 22);
        assert!(is_current(&k, &n, now));
        let start = now - now % 300;
        assert!(is_current(&k, &n, start + 599), "still good in the next bucket");
        assert!(!is_current(&k, &n, start + 600), "two buckets later it is stale");
        assert!(!is_current(&k, &n, start - 1), "not before its bucket");
        assert!(!is_current(&key(8), &n, now), "another secret, another nonce");
        assert!(!is_current(&k, "", now));
        assert_eq!(current(&k, now), current(&k, start), "replicas agree");
    }
}
