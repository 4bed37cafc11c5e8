//! The DPoP proof replay cache (SPEC §10): a proof's (`jkt`, `jti`) is accepted
//! once while the proof could still be accepted (its `iat` plus
//! `max_age_seconds`), on this Envoy, across all its workers.
//!
//! As for `max_uses` ([`crate::usage`]), records live in a fixed number of slots
//! (proxy-wasm shared data has no delete), each slot one value; a write drops the
//! records that have expired. The bound is `replay_cache.max_entries` spread
//! over [`REPLAY_SLOTS`]: a slot that is full of live records refuses the proof
//! (fail closed: a proof that cannot be remembered is not accepted).
//!
//! Across replicas nothing is shared: there, server nonces close the gap.

use sha2::{Digest, Sha256};
use std::sync::Mutex;

/// The identity of one proof: SHA-256 over the length-prefixed `jkt` and `jti`,
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

    /// The slot this id lives in.
    pub fn slot(&self) -> u16 {
        let [a, b, ..] = self.0;
        u16::from_be_bytes([a, b]) % REPLAY_SLOTS
    }
}

/// Number of slots of the replay cache.
pub const REPLAY_SLOTS: u16 = 256;

/// Bytes of one record: id, expiry (i64 LE, Unix seconds).
const RECORD: usize = 24;

/// The store key of a slot (proxy-wasm shared data).
pub fn slot_key(slot: u16) -> String {
    format!("cjwt.dpop.{slot:03}")
}

/// Live records one slot may hold for `max_entries` in all.
pub fn slot_capacity(max_entries: usize) -> usize {
    max_entries.div_ceil(usize::from(REPLAY_SLOTS)).max(1)
}

/// A slot value this code did not write (the caller fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptSlot;

/// What recording a proof id in a slot gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayUpdate {
    /// First seen: write this value (compare-and-swap on the one read).
    Fresh(Vec<u8>),
    /// Seen before: a replay.
    Replayed,
    /// The slot holds `capacity` live records: nothing can be remembered.
    Full,
}

/// Records `id` (remembered until `expires_at`) in the slot value `current`,
/// dropping records expired at `now`, holding at most `capacity` records.
pub fn record(
    current: Option<&[u8]>,
    id: &ProofId,
    expires_at: i64,
    now: i64,
    capacity: usize,
) -> Result<ReplayUpdate, CorruptSlot> {
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return Err(CorruptSlot);
    }
    let mut next = Vec::with_capacity(current.len() + RECORD);
    for rec in current.chunks_exact(RECORD) {
        let (rid, exp) = rec.split_at(16);
        if rid == id.0 {
            return Ok(ReplayUpdate::Replayed);
        }
        let exp = i64::from_le_bytes(exp.try_into().map_err(|_| CorruptSlot)?);
        if exp > now {
            next.extend_from_slice(rec);
        }
    }
    if next.len() / RECORD >= capacity {
        return Ok(ReplayUpdate::Full);
    }
    next.extend_from_slice(&id.0);
    next.extend_from_slice(&expires_at.to_le_bytes());
    Ok(ReplayUpdate::Fresh(next))
}

/// The replay cache could not answer (the caller fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayError;

/// One replay cache per Envoy, shared by all its workers (SPEC §10).
pub trait ReplayCache {
    /// Records `id` until `expires_at`: `Ok(true)` when it was not seen before,
    /// `Ok(false)` for a replay or a full cache (`max_entries` bounds the whole
    /// cache), `Err` when the cache failed. The caller refuses unless `Ok(true)`.
    fn first_seen(&mut self, id: &ProofId, expires_at: i64, now: i64, max_entries: usize) -> Result<bool, ReplayError>;
}

/// A cache that answers nothing: DPoP proofs are refused (`dpop_replay`). For
/// callers that have no shared cache.
pub struct NoReplayCache;

impl ReplayCache for NoReplayCache {
    fn first_seen(&mut self, _: &ProofId, _: i64, _: i64, _: usize) -> Result<bool, ReplayError> {
        Err(ReplayError)
    }
}

/// A cache for one process whose threads share memory (the native module, the
/// command line, tests): the slots of [`record`], each behind its own lock.
#[derive(Debug)]
pub struct ProcessReplay {
    slots: Vec<Mutex<Vec<u8>>>,
}

impl Default for ProcessReplay {
    fn default() -> Self {
        ProcessReplay { slots: (0..REPLAY_SLOTS).map(|_| Mutex::new(Vec::new())).collect() }
    }
}

impl ProcessReplay {
    /// An empty cache.
    pub fn new() -> ProcessReplay {
        ProcessReplay::default()
    }

    /// See [`ReplayCache::first_seen`]; a poisoned lock or corrupt slot fails.
    pub fn first_seen(&self, id: &ProofId, expires_at: i64, now: i64, max_entries: usize) -> Result<bool, ReplayError> {
        let slot = self.slots.get(usize::from(id.slot())).ok_or(ReplayError)?;
        let mut value = slot.lock().map_err(|_| ReplayError)?;
        let current = if value.is_empty() { None } else { Some(value.as_slice()) };
        match record(current, id, expires_at, now, slot_capacity(max_entries)).map_err(|_| ReplayError)? {
            ReplayUpdate::Fresh(next) => {
                *value = next;
                Ok(true)
            }
            ReplayUpdate::Replayed | ReplayUpdate::Full => Ok(false),
        }
    }

    /// Records held (live or not yet dropped), for tests and metrics.
    pub fn len(&self) -> usize {
        self.slots.iter().filter_map(|s| s.lock().ok().map(|v| v.len() / RECORD)).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayCache for &ProcessReplay {
    fn first_seen(&mut self, id: &ProofId, expires_at: i64, now: i64, max_entries: usize) -> Result<bool, ReplayError> {
        ProcessReplay::first_seen(self, id, expires_at, now, max_entries)
    }
}

impl ReplayCache for ProcessReplay {
    fn first_seen(&mut self, id: &ProofId, expires_at: i64, now: i64, max_entries: usize) -> Result<bool, ReplayError> {
        ProcessReplay::first_seen(self, id, expires_at, now, max_entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_accepted_once_until_it_expires_and_others_make_room() {
        let cache = ProcessReplay::new();
        let a = ProofId::new("jkt", "a");
        assert_eq!(cache.first_seen(&a, 160, 100, 65536), Ok(true));
        assert_eq!(cache.first_seen(&a, 160, 150, 65536), Ok(false));
        assert_ne!(ProofId::new("jkt", "a"), ProofId::new("jk", "ta"));
        assert_ne!(ProofId::new("k1", "a"), ProofId::new("k2", "a"), "the same jti under another key is another proof");
        // An expired record is dropped by the next write to its slot.
        let mut slot = None;
        let old = ProofId::new("k", "old");
        let new = ProofId::new("k", "new");
        for (id, exp, now) in [(&old, 10, 0), (&new, 100, 50)] {
            match record(slot.as_deref(), id, exp, now, 4).unwrap() {
                ReplayUpdate::Fresh(v) => slot = Some(v),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(slot.as_ref().map(Vec::len), Some(RECORD));
    }

    #[test]
    fn a_full_slot_refuses_and_a_corrupt_one_fails() {
        let mut slot: Option<Vec<u8>> = None;
        for i in 0..2 {
            match record(slot.as_deref(), &ProofId::new("k", &i.to_string()), 100, 0, 2).unwrap() {
                ReplayUpdate::Fresh(v) => slot = Some(v),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(record(slot.as_deref(), &ProofId::new("k", "x"), 100, 0, 2), Ok(ReplayUpdate::Full));
        assert!(matches!(record(slot.as_deref(), &ProofId::new("k", "x"), 100, 100, 2), Ok(ReplayUpdate::Fresh(_))));
        assert_eq!(record(Some(&[1, 2, 3]), &ProofId::new("k", "x"), 1, 0, 2), Err(CorruptSlot));
        assert_eq!(slot_capacity(65536), 256);
        assert_eq!(slot_capacity(1), 1);
        assert_eq!(slot_key(7), "cjwt.dpop.007");
        assert_eq!(NoReplayCache.first_seen(&ProofId::new("k", "x"), 1, 0, 1), Err(ReplayError));
    }

    #[test]
    fn concurrent_first_uses_are_accepted_exactly_once() {
        let cache = std::sync::Arc::new(ProcessReplay::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = std::sync::Arc::clone(&cache);
                std::thread::spawn(move || {
                    (0..200)
                        .filter(|i| c.first_seen(&ProofId::new("k", &i.to_string()), 100, 0, 65536) == Ok(true))
                        .count()
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(accepted, 200);
        assert_eq!(cache.len(), 200);
    }
}
