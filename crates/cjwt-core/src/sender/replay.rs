//! The DPoP proof replay cache (SPEC §10): a proof's (`jkt`, `jti`) is accepted
//! once while the proof could still be accepted (its `iat` plus
//! `max_age_seconds`), on this Envoy, across all its workers.
//!
//! The protocol is written here once, over a [`ReplayStore`] of byte values
//! updated atomically one key at a time (proxy-wasm shared data with
//! compare-and-swap; a lock per value natively):
//!
//! - **Slots.** Records (id, expiry) live in [`REPLAY_SLOTS`] slot values by
//!   hash (proxy-wasm shared data has no delete); a write to a slot drops its
//!   expired records. A slot has no capacity of its own: it holds as many
//!   records as land in it, so where a proof's hash falls never refuses it.
//! - **Ledger.** One value counts the admitted live proofs by expiry second
//!   (exact: a proof stops counting the second it expires, whether or not its
//!   record was dropped yet) and the records held in all slots. A fresh proof is
//!   admitted iff fewer than `replay_cache.max_entries` are live, so
//!   `max_entries` distinct live proofs always fit, and the next one is refused
//!   (`dpop_replay`, fail closed: a proof that cannot be remembered is not
//!   accepted; a live proof is never forgotten to make room).
//! - **Memory.** When the records held reach twice `max_entries`, the request
//!   that saw it sweeps every slot of its expired records (at most once per
//!   `max_entries` admissions, since at most `max_entries` of them are live).
//!   So the cache holds at most about `2 × max_entries` records of [`RECORD`]
//!   bytes in 256 values, plus a ledger of at most `2 × max_age_seconds + 1`
//!   entries of 12 bytes.
//!
//! Across replicas nothing is shared here: `replay_cache.store: "usage_store"`
//! records proofs in the mesh-wide etcd store instead (see [`crate::engine`]).

use crate::usage::slots::{SlotStore, Slots};
pub use crate::usage::ProofId;
use crate::usage::UsageError;
use std::sync::Mutex;

/// Where a proof's record lives in this cache (the id itself is
/// [`crate::usage::ProofId`]: the mesh's store records proofs too).
impl ProofId {
    /// The slot this id lives in.
    pub fn slot(&self) -> u16 {
        let [a, b, ..] = self.0;
        u16::from_be_bytes([a, b]) % REPLAY_SLOTS
    }
}

/// Number of slots of the replay cache.
pub const REPLAY_SLOTS: u16 = 256;

/// Bytes of one record: id, expiry (i64 LE, Unix seconds).
pub const RECORD: usize = 24;

/// Bytes of one ledger entry: expiry second (i64 LE), proofs admitted (u32 LE).
const LEDGER_ENTRY: usize = 12;

/// The store key of a slot (proxy-wasm shared data).
pub fn slot_key(slot: u16) -> String {
    format!("cjwt.dpop.{slot:03}")
}

/// The store key of the ledger (proxy-wasm shared data).
pub const LEDGER_KEY: &str = "cjwt.dpop.ledger";

/// A value of the replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKey {
    /// The slot of this index.
    Slot(u16),
    /// The ledger.
    Ledger,
}

impl ReplayKey {
    /// The proxy-wasm shared-data key.
    pub fn name(&self) -> String {
        match self {
            ReplayKey::Slot(s) => slot_key(*s),
            ReplayKey::Ledger => LEDGER_KEY.to_string(),
        }
    }
}

/// A slot or ledger value this code did not write (the caller fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptSlot;

/// What recording a proof id in a slot gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayUpdate {
    /// First seen: write `value` (compare-and-swap on the one read), which
    /// dropped `dropped` expired records.
    Fresh {
        /// The slot's new value.
        value: Vec<u8>,
        /// Expired records left out of it.
        dropped: u64,
    },
    /// Seen before: a replay.
    Replayed,
}

/// Records `id` (remembered until `expires_at`) in the slot value `current`,
/// dropping records expired at `now`.
pub fn record(current: Option<&[u8]>, id: &ProofId, expires_at: i64, now: i64) -> Result<ReplayUpdate, CorruptSlot> {
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return Err(CorruptSlot);
    }
    let mut value = Vec::with_capacity(current.len() + RECORD);
    let mut dropped = 0u64;
    for rec in current.chunks_exact(RECORD) {
        let (rid, exp) = rec.split_at(16);
        if rid == id.0 {
            return Ok(ReplayUpdate::Replayed);
        }
        if i64::from_le_bytes(exp.try_into().map_err(|_| CorruptSlot)?) > now {
            value.extend_from_slice(rec);
        } else {
            dropped += 1;
        }
    }
    value.extend_from_slice(&id.0);
    value.extend_from_slice(&expires_at.to_le_bytes());
    Ok(ReplayUpdate::Fresh { value, dropped })
}

/// The slot value `current` without `id`'s record (a proof recorded but not
/// admitted); `None` when it holds none (nothing to write).
pub fn forget(current: Option<&[u8]>, id: &ProofId) -> Result<Option<Vec<u8>>, CorruptSlot> {
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return Err(CorruptSlot);
    }
    let value: Vec<u8> =
        current.chunks_exact(RECORD).filter(|r| r.get(..16) != Some(&id.0[..])).flatten().copied().collect();
    Ok((value.len() != current.len()).then_some(value))
}

/// The slot value `current` without the records expired at `now`, and how many
/// were dropped; `None` when none was (nothing to write).
pub fn drop_expired(current: Option<&[u8]>, now: i64) -> Result<Option<(Vec<u8>, u64)>, CorruptSlot> {
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return Err(CorruptSlot);
    }
    let mut value = Vec::with_capacity(current.len());
    let mut dropped = 0u64;
    for rec in current.chunks_exact(RECORD) {
        let exp = rec.get(16..).and_then(|e| e.try_into().ok()).map(i64::from_le_bytes).ok_or(CorruptSlot)?;
        if exp > now {
            value.extend_from_slice(rec);
        } else {
            dropped += 1;
        }
    }
    Ok((dropped > 0).then_some((value, dropped)))
}

/// The ledger: records held in the slots, and admitted proofs by expiry second.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Records held in all slots (live or expired but not yet dropped).
    pub held: u64,
    /// (expiry second, proofs admitted with it), for the seconds after the last write.
    pub live: Vec<(i64, u32)>,
}

impl Ledger {
    /// Reads a ledger value (`None`: empty).
    pub fn parse(value: Option<&[u8]>) -> Result<Ledger, CorruptSlot> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Ledger::default());
        };
        let (held, rest) = value.split_at_checked(8).ok_or(CorruptSlot)?;
        if rest.len() % LEDGER_ENTRY != 0 {
            return Err(CorruptSlot);
        }
        let held = u64::from_le_bytes(held.try_into().map_err(|_| CorruptSlot)?);
        let live = rest
            .chunks_exact(LEDGER_ENTRY)
            .map(|e| {
                let (exp, n) = e.split_at(8);
                Ok((
                    i64::from_le_bytes(exp.try_into().map_err(|_| CorruptSlot)?),
                    u32::from_le_bytes(n.try_into().map_err(|_| CorruptSlot)?),
                ))
            })
            .collect::<Result<_, _>>()?;
        Ok(Ledger { held, live })
    }

    /// The value to store.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + LEDGER_ENTRY * self.live.len());
        out.extend_from_slice(&self.held.to_le_bytes());
        for (exp, n) in &self.live {
            out.extend_from_slice(&exp.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// Proofs admitted and still live at `now`.
    pub fn live_at(&self, now: i64) -> u64 {
        self.live.iter().filter(|(exp, _)| *exp > now).map(|(_, n)| u64::from(*n)).sum()
    }
}

/// What the ledger says to a proof newly recorded in its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The ledger's new value (always written: it carries the records dropped).
    pub value: Vec<u8>,
    /// Whether the proof is admitted (fewer than `max_entries` were live).
    pub admitted: bool,
    /// Whether the slots hold so many records that they should be swept.
    pub sweep: bool,
}

/// Admits a proof live until `expires_at` if fewer than `max_entries` are live at
/// `now`, and takes the `dropped` records the slot write left out off the held count.
pub fn admit(
    current: Option<&[u8]>,
    expires_at: i64,
    now: i64,
    max_entries: usize,
    dropped: u64,
) -> Result<Admission, CorruptSlot> {
    let mut ledger = Ledger::parse(current)?;
    ledger.live.retain(|(exp, n)| *exp > now && *n > 0);
    ledger.held = ledger.held.saturating_sub(dropped);
    let max = u64::try_from(max_entries).unwrap_or(u64::MAX);
    let admitted = ledger.live_at(now) < max;
    if admitted {
        ledger.held = ledger.held.saturating_add(1);
        match ledger.live.iter_mut().find(|(exp, _)| *exp == expires_at) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => ledger.live.push((expires_at, 1)),
        }
    }
    let sweep = ledger.held >= max.saturating_mul(2);
    Ok(Admission { value: ledger.to_bytes(), admitted, sweep })
}

/// The ledger after a sweep dropped `dropped` records.
pub fn swept(current: Option<&[u8]>, now: i64, dropped: u64) -> Result<Vec<u8>, CorruptSlot> {
    let mut ledger = Ledger::parse(current)?;
    ledger.live.retain(|(exp, n)| *exp > now && *n > 0);
    ledger.held = ledger.held.saturating_sub(dropped);
    Ok(ledger.to_bytes())
}

/// A store failed or held a value this code did not write (the caller fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreError;

/// What a [`ReplayStore::update`] does with a value: the current value (`None`:
/// none yet) to the value to write, or to `None` (write nothing).
pub type NextValue<'a> = dyn FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, CorruptSlot> + 'a;

/// The values of one replay cache, each updated atomically.
pub trait ReplayStore {
    /// Read-modify-write of `key`: `next` maps the current value (`None`: none
    /// yet) to the value to write, or to `None` (write nothing: `Ok(false)`).
    /// `next` may be called again when another writer got in between; what it
    /// returned last is what was written. `Ok(true)` once written.
    fn update(&mut self, key: ReplayKey, next: &mut NextValue<'_>) -> Result<bool, StoreError>;
}

/// The replay cache's decision for one proof, over `store`: `Ok(true)` when
/// the proof is fresh and admitted (remembered until `expires_at`), `Ok(false)`
/// for a replay or when `max_entries` live proofs are remembered already.
///
/// Order: the record goes into its slot first (a replay writes nothing), then
/// the ledger admits it or not; a proof not admitted is taken out of its slot
/// again (it was never accepted). So two requests with the same proof never
/// both pass, and a proof is counted live exactly while it is remembered.
pub fn first_seen_in(
    store: &mut dyn ReplayStore,
    id: &ProofId,
    expires_at: i64,
    now: i64,
    max_entries: usize,
) -> Result<bool, ReplayError> {
    let slot = ReplayKey::Slot(id.slot());
    let mut fresh = None;
    store
        .update(slot, &mut |value| match record(value, id, expires_at, now)? {
            ReplayUpdate::Fresh { value, dropped } => {
                fresh = Some(dropped);
                Ok(Some(value))
            }
            ReplayUpdate::Replayed => {
                fresh = None;
                Ok(None)
            }
        })
        .map_err(|_| ReplayError)?;
    let Some(dropped) = fresh else {
        return Ok(false);
    };
    let (mut admitted, mut sweep) = (false, false);
    store
        .update(ReplayKey::Ledger, &mut |value| {
            let a = admit(value, expires_at, now, max_entries, dropped)?;
            (admitted, sweep) = (a.admitted, a.sweep);
            Ok(Some(a.value))
        })
        .map_err(|_| ReplayError)?;
    if !admitted {
        // Over the bound: not accepted, so not remembered either. A failure here
        // leaves the record (the proof stays refused): still closed.
        let _ = store.update(slot, &mut |value| forget(value, id));
        return Ok(false);
    }
    if sweep {
        sweep_all(store, now);
    }
    Ok(true)
}

/// Drops every slot's expired records and takes them off the held count (best
/// effort: a slot that fails is swept next time).
pub fn sweep_all(store: &mut dyn ReplayStore, now: i64) {
    let mut total = 0u64;
    for s in 0..REPLAY_SLOTS {
        let mut dropped = 0;
        let wrote = store.update(ReplayKey::Slot(s), &mut |value| {
            Ok(drop_expired(value, now)?.map(|(v, d)| {
                dropped = d;
                v
            }))
        });
        if wrote == Ok(true) {
            total = total.saturating_add(dropped);
        }
    }
    if total > 0 {
        let _ = store.update(ReplayKey::Ledger, &mut |value| swept(value, now, total).map(Some));
    }
}

/// The replay cache could not answer (the caller fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayError;

/// One replay cache per Envoy, shared by all its workers (SPEC §10).
pub trait ReplayCache {
    /// Records `id` until `expires_at`: `Ok(true)` when it was not seen before,
    /// `Ok(false)` for a replay or a full cache (`max_entries` live proofs
    /// remembered), `Err` when the cache failed. The caller refuses unless `Ok(true)`.
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
/// command line, tests): the slots and the ledger of [`first_seen_in`], each
/// behind its own lock.
#[derive(Debug)]
pub struct ProcessReplay {
    slots: Vec<Mutex<Vec<u8>>>,
    ledger: Mutex<Vec<u8>>,
}

impl Default for ProcessReplay {
    fn default() -> Self {
        ProcessReplay {
            slots: (0..REPLAY_SLOTS).map(|_| Mutex::new(Vec::new())).collect(),
            ledger: Mutex::new(Vec::new()),
        }
    }
}

impl ProcessReplay {
    /// The process's one replay cache (SPEC §10), shared by every
    /// configuration and worker, as [`ProcessCounter::global`](crate::usage::process::ProcessCounter::global)
    /// is: a proof accepted by one worker is a replay on every other.
    pub fn global() -> &'static ProcessReplay {
        static REPLAY: std::sync::OnceLock<ProcessReplay> = std::sync::OnceLock::new();
        REPLAY.get_or_init(ProcessReplay::new)
    }

    /// An empty cache.
    pub fn new() -> ProcessReplay {
        ProcessReplay::default()
    }

    /// See [`ReplayCache::first_seen`]; a poisoned lock or corrupt value fails.
    pub fn first_seen(&self, id: &ProofId, expires_at: i64, now: i64, max_entries: usize) -> Result<bool, ReplayError> {
        first_seen_in(&mut &*self, id, expires_at, now, max_entries)
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

impl ReplayStore for &ProcessReplay {
    fn update(&mut self, key: ReplayKey, next: &mut NextValue<'_>) -> Result<bool, StoreError> {
        let lock = match key {
            ReplayKey::Slot(s) => self.slots.get(usize::from(s)).ok_or(StoreError)?,
            ReplayKey::Ledger => &self.ledger,
        };
        let mut value = lock.lock().map_err(|_| StoreError)?;
        let current = if value.is_empty() { None } else { Some(value.as_slice()) };
        match next(current).map_err(|_| StoreError)? {
            Some(v) => {
                *value = v;
                Ok(true)
            }
            None => Ok(false),
        }
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

/// The replay cache over a host's shared values ([`Slots`], with the
/// `max_uses` counts): each slot and the ledger one value, under [`ReplayKey::name`].
impl<S: SlotStore> ReplayStore for Slots<S> {
    fn update(&mut self, key: ReplayKey, next: &mut NextValue<'_>) -> Result<bool, StoreError> {
        self.0.update(&key.name(), &mut |value| next(value).map_err(|_| UsageError)).map_err(|_| StoreError)
    }
}

impl<S: SlotStore> ReplayCache for Slots<S> {
    fn first_seen(&mut self, id: &ProofId, expires_at: i64, now: i64, max_entries: usize) -> Result<bool, ReplayError> {
        first_seen_in(self, id, expires_at, now, max_entries)
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
        for (id, exp, now, dropped) in [(&old, 10, 0, 0), (&new, 100, 50, 1)] {
            match record(slot.as_deref(), id, exp, now).unwrap() {
                ReplayUpdate::Fresh { value, dropped: d } => {
                    assert_eq!(d, dropped);
                    slot = Some(value)
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(slot.as_ref().map(Vec::len), Some(RECORD));
    }

    #[test]
    fn corrupt_values_fail_and_keys_are_fixed() {
        assert_eq!(record(Some(&[1, 2, 3]), &ProofId::new("k", "x"), 1, 0), Err(CorruptSlot));
        assert_eq!(forget(Some(&[1, 2, 3]), &ProofId::new("k", "x")), Err(CorruptSlot));
        assert_eq!(drop_expired(Some(&[1, 2, 3]), 0), Err(CorruptSlot));
        assert_eq!(admit(Some(&[1, 2, 3]), 1, 0, 1024, 0), Err(CorruptSlot));
        assert_eq!(admit(Some(&[0; 9]), 1, 0, 1024, 0), Err(CorruptSlot));
        assert_eq!(slot_key(7), "cjwt.dpop.007");
        assert_eq!(ReplayKey::Ledger.name(), "cjwt.dpop.ledger");
        assert_eq!(NoReplayCache.first_seen(&ProofId::new("k", "x"), 1, 0, 1), Err(ReplayError));
        // A corrupt ledger refuses (fail closed) and leaves nothing remembered.
        let cache = ProcessReplay::new();
        *cache.ledger.lock().unwrap() = vec![1, 2, 3];
        assert_eq!(cache.first_seen(&ProofId::new("k", "x"), 100, 0, 1024), Err(ReplayError));
    }

    #[test]
    fn the_ledger_counts_live_proofs_exactly_by_expiry() {
        let mut value: Option<Vec<u8>> = None;
        let mut go = |exp: i64, now: i64, dropped: u64| {
            let a = admit(value.as_deref(), exp, now, 3, dropped).unwrap();
            value = Some(a.value.clone());
            a
        };
        assert!(go(110, 100, 0).admitted);
        assert!(go(120, 100, 0).admitted);
        assert!(go(120, 101, 0).admitted);
        assert!(!go(130, 102, 0).admitted, "three live");
        // At 110 the first one expires: room for exactly one.
        assert!(go(130, 110, 0).admitted);
        let a = go(130, 111, 0);
        assert!(!a.admitted);
        assert_eq!(Ledger::parse(Some(&a.value)).unwrap().live_at(111), 3);
        assert_eq!(Ledger::parse(Some(&a.value)).unwrap().held, 4);
        // Held reaches 2 x max_entries: sweep.
        let a = go(200, 121, 0);
        assert!(a.admitted && !a.sweep);
        let a = go(200, 131, 0);
        assert!(a.admitted && a.sweep, "{:?}", Ledger::parse(Some(&a.value)));
        let after = swept(Some(&a.value), 131, 4).unwrap();
        assert_eq!(Ledger::parse(Some(&after)).unwrap(), Ledger { held: 2, live: vec![(200, 2)] });
    }

    /// Memory follows the live proofs: rounds of `max_entries` proofs, each after
    /// the previous round expired, never hold more than twice `max_entries`.
    #[test]
    fn memory_stays_within_twice_max_entries() {
        let cache = ProcessReplay::new();
        let max = 1024;
        for round in 0..12i64 {
            let now = 1_000 + round * 100;
            for i in 0..max {
                let id = ProofId::new("k", &format!("{round}-{i}"));
                assert_eq!(cache.first_seen(&id, now + 61, now, max), Ok(true), "round {round}, proof {i}");
            }
            assert!(cache.len() <= 2 * max, "round {round}: {} records held", cache.len());
        }
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

    /// A store with compare-and-swap semantics (proxy-wasm shared data): every
    /// update loses its first race (`next` runs on a value that another writer
    /// then changes) and is retried. The protocol's bookkeeping follows the
    /// write that happened, not the attempt that lost.
    #[test]
    fn the_protocol_holds_when_every_write_is_retried() {
        struct Racy {
            values: std::collections::HashMap<String, Vec<u8>>,
            /// Written by "another worker" between this worker's read and write.
            intruder: Option<(ReplayKey, ProofId)>,
        }
        impl ReplayStore for Racy {
            fn update(&mut self, key: ReplayKey, next: &mut NextValue<'_>) -> Result<bool, StoreError> {
                let name = key.name();
                let current = self.values.get(&name).cloned();
                let _lost = next(current.as_deref()).map_err(|_| StoreError)?;
                // Another worker records its own proof in this slot meanwhile.
                if let (Some((k, id)), ReplayKey::Slot(_)) = (self.intruder, key) {
                    if k == key {
                        if let Ok(ReplayUpdate::Fresh { value, .. }) = record(current.as_deref(), &id, 500, 0) {
                            self.values.insert(name.clone(), value);
                        }
                    }
                }
                let current = self.values.get(&name).cloned();
                match next(current.as_deref()).map_err(|_| StoreError)? {
                    Some(v) => {
                        self.values.insert(name, v);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
        }
        let mut store = Racy { values: Default::default(), intruder: None };
        let a = ProofId::new("k", "a");
        assert_eq!(first_seen_in(&mut store, &a, 100, 0, 1024), Ok(true));
        assert_eq!(first_seen_in(&mut store, &a, 100, 1, 1024), Ok(false), "replay");
        // The same proof recorded by another worker between the read and the write: a replay.
        let b = ProofId::new("k", "b");
        store.intruder = Some((ReplayKey::Slot(b.slot()), b));
        assert_eq!(first_seen_in(&mut store, &b, 100, 2, 1024), Ok(false), "the other worker got it first");
        store.intruder = None;
        let ledger = Ledger::parse(store.values.get(LEDGER_KEY).map(Vec::as_slice)).unwrap();
        assert_eq!((ledger.held, ledger.live_at(2)), (1, 1), "the lost attempt counted nothing");
        // At the bound, the proof not admitted is taken out of its slot again.
        for i in 0..1023 {
            assert_eq!(first_seen_in(&mut store, &ProofId::new("k", &format!("f{i}")), 100, 3, 1024), Ok(true));
        }
        let over = ProofId::new("k", "over");
        assert_eq!(first_seen_in(&mut store, &over, 100, 3, 1024), Ok(false));
        let slot = store.values.get(&slot_key(over.slot())).cloned();
        assert_eq!(forget(slot.as_deref(), &over), Ok(None), "not remembered");
        let ledger = Ledger::parse(store.values.get(LEDGER_KEY).map(Vec::as_slice)).unwrap();
        assert_eq!((ledger.held, ledger.live_at(3)), (1024, 1024));
    }

    /// At the bound, concurrent fresh proofs: exactly `max_entries` admitted.
    #[test]
    fn concurrent_fresh_proofs_are_admitted_up_to_the_bound_exactly() {
        let cache = std::sync::Arc::new(ProcessReplay::new());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let c = std::sync::Arc::clone(&cache);
                std::thread::spawn(move || {
                    (0..300)
                        .filter(|i| c.first_seen(&ProofId::new("k", &format!("{t}-{i}")), 100, 0, 1024) == Ok(true))
                        .count()
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(accepted, 1024);
        assert_eq!(cache.len(), 1024, "refused proofs are not remembered");
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    /// Issue 24 item 5: exactly `max_entries` distinct live proofs all fit; the
    /// next one is refused (fail closed) and no live proof is forgotten.
    #[test]
    fn max_entries_fresh_proofs_all_fit_and_the_next_is_refused() {
        for max_entries in [1024usize, 4096] {
            let cache = ProcessReplay::new();
            let now = 1_800_000_000;
            let ids: Vec<ProofId> = (0..max_entries).map(|i| ProofId::new("jkt", &format!("p{i}"))).collect();
            let refused = ids.iter().filter(|id| cache.first_seen(id, now + 61, now, max_entries) != Ok(true)).count();
            assert_eq!(refused, 0, "fresh proofs refused below max_entries {max_entries}");
            let extra = ProofId::new("jkt", "one-more");
            assert_eq!(cache.first_seen(&extra, now + 61, now + 1, max_entries), Ok(false), "over the bound");
            assert!(
                ids.iter().all(|id| cache.first_seen(id, now + 61, now + 2, max_entries) == Ok(false)),
                "every live proof is still remembered"
            );
            // Once they expire there is room again.
            assert_eq!(cache.first_seen(&extra, now + 200, now + 61, max_entries), Ok(true));
        }
    }
}
