//! `max_uses` bookkeeping (SPEC §8) as pure functions over bytes, so that every
//! store (proxy-wasm shared data, an in-process map, etcd) counts the same way.
//!
//! A use is identified by a hash of (`iss`, `jti`): no token data appears in a
//! store key. Stores without deletion (proxy-wasm shared data has none) keep
//! counters in a fixed number of [`SLOTS`], each slot one value holding the
//! records of the tokens that hash to it; every write to a slot drops the records
//! whose token has expired. The key space is bounded and memory follows the
//! number of live one-time tokens, not the number ever seen (SEC-12.5).

pub mod allowance;
mod counter;
pub mod etcd;
pub mod grpc;
pub mod process;
pub mod slots;
pub mod spent;

pub use counter::{MemoryCounter, UsageCounter, UsageError};

use sha2::{Digest, Sha256};

/// The identity of one token's usage counter: SHA-256 over the length-prefixed
/// issuer and `jti`, truncated to 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsageId(pub [u8; 16]);

impl UsageId {
    /// The id of the token with issuer `iss` and id `jti`.
    pub fn new(iss: &str, jti: &str) -> UsageId {
        let mut h = Sha256::new();
        h.update((iss.len() as u64).to_be_bytes());
        h.update(iss.as_bytes());
        h.update(jti.as_bytes());
        let digest = h.finalize();
        UsageId(digest.get(..16).and_then(|d| d.try_into().ok()).unwrap_or([0u8; 16]))
    }

    /// Lowercase hex (for store keys).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The slot this counter lives in.
    pub fn slot(&self) -> u16 {
        let [a, b, ..] = self.0;
        u16::from_be_bytes([a, b]) % SLOTS
    }
}

/// The identity of one DPoP proof, as the replay cache and the mesh's store
/// record it (SPEC §10): SHA-256 over the length-prefixed `jkt` and `jti`,
/// truncated to 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProofId(pub [u8; 16]);

impl ProofId {
    /// The id of the proof with key thumbprint `jkt` and id `jti`.
    pub fn new(jkt: &str, jti: &str) -> ProofId {
        let mut h = Sha256::new();
        h.update(b"dpop\0");
        h.update((jkt.len() as u64).to_be_bytes());
        h.update(jkt.as_bytes());
        h.update(jti.as_bytes());
        let digest = h.finalize();
        ProofId(digest.get(..16).and_then(|d| d.try_into().ok()).unwrap_or([0u8; 16]))
    }

    /// Lowercase hex (for store keys).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Number of slots: bounds the store's key count (each key costs the host
/// about a hundred bytes whatever its value).
pub const SLOTS: u16 = 1024;

/// Bytes of one record in a slot: id, count (u64 LE), expiry (i64 LE, Unix s).
const RECORD: usize = 32;

/// The store key of a slot.
pub fn slot_key(slot: u16) -> String {
    format!("cjwt.uses.{slot:04}")
}

/// A slot value that this code did not write (the caller fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptSlot;

/// What counting one use against a slot's current value gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotUpdate {
    /// The use is counted: write this value (compare-and-swap on the one read).
    Write(Vec<u8>),
    /// The token has been used `limit` times already: write nothing.
    Exhausted,
}

/// Counts one use of `id` (limit `limit`, token valid until `expires_at`) in the
/// slot value `current` (`None`: no value yet). Records expired at `now` are
/// dropped from the value written.
pub fn count_use(
    current: Option<&[u8]>,
    id: &UsageId,
    limit: u64,
    expires_at: i64,
    now: i64,
) -> Result<SlotUpdate, CorruptSlot> {
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return Err(CorruptSlot);
    }
    let mut next = Vec::with_capacity(current.len() + RECORD);
    let mut counted = false;
    for record in current.chunks_exact(RECORD) {
        let (rid, rest) = record.split_at(16);
        let (count, exp) = rest.split_at(8);
        let count = u64::from_le_bytes(count.try_into().map_err(|_| CorruptSlot)?);
        let exp = i64::from_le_bytes(exp.try_into().map_err(|_| CorruptSlot)?);
        if rid == id.0 {
            if count >= limit {
                return Ok(SlotUpdate::Exhausted);
            }
            push(&mut next, id, count + 1, exp.max(expires_at));
            counted = true;
        } else if exp > now {
            next.extend_from_slice(record);
        }
    }
    if !counted {
        if limit == 0 {
            return Ok(SlotUpdate::Exhausted);
        }
        push(&mut next, id, 1, expires_at);
    }
    Ok(SlotUpdate::Write(next))
}

fn push(out: &mut Vec<u8>, id: &UsageId, count: u64, exp: i64) {
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&exp.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(store: &mut Option<Vec<u8>>, id: &UsageId, limit: u64, exp: i64, now: i64) -> bool {
        match count_use(store.as_deref(), id, limit, exp, now).unwrap() {
            SlotUpdate::Write(v) => {
                *store = Some(v);
                true
            }
            SlotUpdate::Exhausted => false,
        }
    }

    #[test]
    fn counts_exactly_up_to_the_limit() {
        let id = UsageId::new("https://i", "j1");
        let mut slot = None;
        assert!(apply(&mut slot, &id, 3, 100, 0));
        assert!(apply(&mut slot, &id, 3, 100, 0));
        assert!(apply(&mut slot, &id, 3, 100, 0));
        assert!(!apply(&mut slot, &id, 3, 100, 0));
        assert_eq!(slot.as_ref().map(Vec::len), Some(RECORD));
    }

    #[test]
    fn expired_records_go_on_the_next_write_and_live_ones_stay() {
        let old = UsageId::new("https://i", "old");
        let live = UsageId::new("https://i", "live");
        let new = UsageId::new("https://i", "new");
        let mut slot = None;
        assert!(apply(&mut slot, &old, 1, 10, 0));
        assert!(apply(&mut slot, &live, 1, 100, 0));
        assert!(apply(&mut slot, &new, 1, 100, 50));
        assert_eq!(slot.as_ref().map(Vec::len), Some(2 * RECORD), "old dropped");
        assert!(!apply(&mut slot, &live, 1, 100, 50), "a live record keeps its count");
    }

    #[test]
    fn an_exhausted_token_stays_exhausted_until_it_expires() {
        let id = UsageId::new("https://i", "j");
        let mut slot = None;
        assert!(apply(&mut slot, &id, 1, 10, 0));
        assert!(!apply(&mut slot, &id, 1, 10, 9));
        // Its own record is never dropped by its own use (only by others' writes
        // after expiry, when the token is refused as expired anyway).
        assert!(!apply(&mut slot, &id, 1, 10, 11));
    }

    #[test]
    fn ids_do_not_collide_on_concatenation_and_corrupt_values_fail() {
        assert_ne!(UsageId::new("ab", "c"), UsageId::new("a", "bc"));
        assert_eq!(count_use(Some(&[1, 2, 3]), &UsageId::new("a", "b"), 1, 1, 0), Err(CorruptSlot));
        assert!(UsageId::new("a", "b").slot() < SLOTS);
        assert_eq!(slot_key(7), "cjwt.uses.0007");
    }

    /// The store's footprint is flat under a steady stream of one-time tokens:
    /// ten rounds of 4,000, each after the previous one expired, never hold more
    /// than the live round plus the few slots the round did not write (10%).
    #[test]
    fn memory_is_flat_under_a_stream_of_one_time_tokens() {
        type Store = std::collections::HashMap<u16, Vec<u8>>;
        fn round(store: &mut Store, r: u32, now: i64) {
            for i in 0..4000 {
                let id = UsageId::new("https://i", &format!("{r}-{i}"));
                let slot = store.entry(id.slot()).or_default();
                match count_use(Some(slot), &id, 1, now + 60, now).unwrap() {
                    SlotUpdate::Write(v) => *slot = v,
                    SlotUpdate::Exhausted => panic!("fresh token refused"),
                }
            }
        }
        let mut store = Store::new();
        let live = 4000 * RECORD;
        round(&mut store, 1, 0);
        assert_eq!(store.values().map(Vec::len).sum::<usize>(), live);
        for r in 2..=10 {
            round(&mut store, r, i64::from(r) * 1000);
            let bytes: usize = store.values().map(Vec::len).sum();
            assert!(store.len() <= SLOTS as usize);
            // Only slots that this round did not write still hold expired records.
            assert!(bytes <= live + live / 10, "round {r}: {bytes} bytes for {live} live");
        }
    }
}
