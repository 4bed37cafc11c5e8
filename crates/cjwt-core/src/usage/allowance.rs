//! Leased allowances (issue 27 item 3): for a token whose `max_uses` is at least
//! `usage_store.etcd.allowance.from_max_uses`, an Envoy takes a batch of uses
//! from the mesh's store in one compare-and-swap (the token's count rises by the
//! batch, or by what is left) and spends them locally, across its workers, in
//! the bounded slot records below; a request waits for the store only when the
//! local allowance is empty.
//!
//! **Exact or under.** A use is let through only when the store counted it: in
//! the batch it belongs to. Uses taken but not spent (the Envoy stops, its
//! record is evicted or expires with the token) are lost, never handed out
//! twice. **The bound on what is lost:** at most one batch (`batch`) is taken at a
//! time per Envoy and token (a request finding a batch already being taken asks
//! for one use only), and a batch is taken only when the local allowance is
//! empty, so an Envoy never holds more than `batch - 1` unspent uses of a token:
//! the whole mesh loses at most `(Envoys) × (batch - 1)` uses of a token, and
//! `max_uses − (Envoys × (batch − 1))` is the fewest uses a token is sure to be
//! let through while every Envoy that takes a batch keeps serving it.
//!
//! The records are pure functions over slot bytes, like [`super::count_use`], so
//! that proxy-wasm shared data and the native process map hold the same thing,
//! in the key space [`allowance_key`].

use super::{CorruptSlot, UsageId};

/// Bytes of one record: id, uses left (u64 LE), token expiry (i64 LE, Unix s),
/// the end of a batch being taken (i64 LE, Unix ms; 0: none), and the store's
/// key as this Envoy last wrote it: count (u64 LE) and `mod_revision` (i64 LE;
/// 0: unknown), so that the next batch swaps at once, without reading first.
const RECORD: usize = 56;

/// The store's key as last written by this Envoy: (count, `mod_revision`).
pub type LastWritten = Option<(u64, i64)>;

/// The most tokens one slot holds an allowance for; a full slot drops the
/// record that expires first (its uses are lost: under, never over).
pub const MAX_PER_SLOT: usize = 16;

/// The store key of a slot of allowances.
pub fn allowance_key(slot: u16) -> String {
    format!("cjwt.allow.{slot:04}")
}

/// What a request finds in the local allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// One use spent: write this value (compare-and-swap on the one read); the
    /// request goes on without the store.
    Spent(Vec<u8>),
    /// Nothing left here: take `batch` uses from the store (write this value,
    /// which notes the batch being taken until `taking_until_ms`), swapping on
    /// the key as last written here.
    TakeBatch(Vec<u8>, LastWritten),
    /// Nothing left here and a batch is being taken by another request: ask the
    /// store for this one use only.
    TakeOne,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    id: [u8; 16],
    left: u64,
    expires_at: i64,
    taking_until_ms: i64,
    last_count: u64,
    last_rev: i64,
}

impl Record {
    fn last(&self) -> LastWritten {
        Some((self.last_count, self.last_rev)).filter(|(_, rev)| *rev > 0)
    }
}

fn read(current: Option<&[u8]>) -> Result<Vec<Record>, CorruptSlot> {
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return Err(CorruptSlot);
    }
    current
        .chunks_exact(RECORD)
        .map(|r| {
            let (id, rest) = r.split_at(16);
            let (left, rest) = rest.split_at(8);
            let (exp, rest) = rest.split_at(8);
            let (taking, rest) = rest.split_at(8);
            let (last_count, last_rev) = rest.split_at(8);
            Ok(Record {
                id: id.try_into().map_err(|_| CorruptSlot)?,
                left: u64::from_le_bytes(left.try_into().map_err(|_| CorruptSlot)?),
                expires_at: i64::from_le_bytes(exp.try_into().map_err(|_| CorruptSlot)?),
                taking_until_ms: i64::from_le_bytes(taking.try_into().map_err(|_| CorruptSlot)?),
                last_count: u64::from_le_bytes(last_count.try_into().map_err(|_| CorruptSlot)?),
                last_rev: i64::from_le_bytes(last_rev.try_into().map_err(|_| CorruptSlot)?),
            })
        })
        .collect()
}

fn write(mut records: Vec<Record>, now: i64) -> Vec<u8> {
    records.retain(|r| r.expires_at > now);
    while records.len() > MAX_PER_SLOT {
        let first = records.iter().enumerate().min_by_key(|(_, r)| r.expires_at).map(|(i, _)| i);
        match first {
            Some(i) => {
                records.swap_remove(i);
            }
            None => break,
        }
    }
    let mut out = Vec::with_capacity(records.len() * RECORD);
    for r in records {
        out.extend_from_slice(&r.id);
        out.extend_from_slice(&r.left.to_le_bytes());
        out.extend_from_slice(&r.expires_at.to_le_bytes());
        out.extend_from_slice(&r.taking_until_ms.to_le_bytes());
        out.extend_from_slice(&r.last_count.to_le_bytes());
        out.extend_from_slice(&r.last_rev.to_le_bytes());
    }
    out
}

fn ms_to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A request of token `id` (valid until `expires_at`) at `now_ms` finds the
/// slot value `current`: spend one local use, or say how to ask the store.
/// A batch noted as being taken is trusted until `take_timeout_ms` after it
/// began (the store's deadline plus the grace for a lost answer); after that a
/// new batch may be taken.
pub fn spend(
    current: Option<&[u8]>,
    id: &UsageId,
    expires_at: i64,
    now_ms: u64,
    take_timeout_ms: u64,
) -> Result<Spend, CorruptSlot> {
    let now = ms_to_i64(now_ms / 1000);
    let now_ms = ms_to_i64(now_ms);
    let mut records = read(current)?;
    let mine = records.iter_mut().find(|r| r.id == id.0 && r.expires_at > now);
    match mine {
        Some(r) if r.left > 0 => {
            r.left -= 1;
            Ok(Spend::Spent(write(records, now)))
        }
        Some(r) if r.taking_until_ms > now_ms => Ok(Spend::TakeOne),
        Some(r) => {
            r.taking_until_ms = now_ms.saturating_add(ms_to_i64(take_timeout_ms));
            let last = r.last();
            Ok(Spend::TakeBatch(write(records, now), last))
        }
        None => {
            records.retain(|r| r.id != id.0);
            let taking_until_ms = now_ms.saturating_add(ms_to_i64(take_timeout_ms));
            records.push(Record { id: id.0, left: 0, expires_at, taking_until_ms, last_count: 0, last_rev: 0 });
            Ok(Spend::TakeBatch(write(records, now), None))
        }
    }
}

/// A batch taken for token `id` answered: `spare` uses (the batch granted, less
/// the one its request spends) join the local allowance, and the batch is no
/// longer being taken. Returns the value to write (`spare` of 0 still clears
/// the note, so that the next empty allowance takes a batch at once); `last`
/// is the key as the batch wrote it (for the next batch's swap).
pub fn deposit(
    current: Option<&[u8]>,
    id: &UsageId,
    spare: u64,
    last: LastWritten,
    expires_at: i64,
    now_ms: u64,
) -> Result<Vec<u8>, CorruptSlot> {
    let (last_count, last_rev) = last.unwrap_or((0, 0));
    let now = ms_to_i64(now_ms / 1000);
    let mut records = read(current)?;
    match records.iter_mut().find(|r| r.id == id.0) {
        Some(r) => {
            r.left = r.left.saturating_add(spare);
            r.taking_until_ms = 0;
            r.expires_at = r.expires_at.max(expires_at);
            (r.last_count, r.last_rev) = (last_count, last_rev);
        }
        None => records.push(Record { id: id.0, left: spare, expires_at, taking_until_ms: 0, last_count, last_rev }),
    }
    Ok(write(records, now))
}

/// What [`crate::usage::UsageCounter::spend_allowance`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSpend {
    /// One local use spent: the request goes on without the store.
    Spent,
    /// Take a batch from the store (this request's use is one of it),
    /// swapping on the key as last written here.
    TakeBatch(LastWritten),
    /// Ask the store for this one use only (a batch is being taken, or this
    /// host keeps no allowance).
    TakeOne,
}

impl Spend {
    /// What was found, without the value to write.
    pub fn kind(&self) -> LocalSpend {
        match self {
            Spend::Spent(_) => LocalSpend::Spent,
            Spend::TakeBatch(_, last) => LocalSpend::TakeBatch(*last),
            Spend::TakeOne => LocalSpend::TakeOne,
        }
    }

    /// The value to write, if any.
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            Spend::Spent(v) | Spend::TakeBatch(v, _) => Some(v),
            Spend::TakeOne => None,
        }
    }
}

/// The batch to ask for: `batch`, never more than `max_uses`.
pub fn batch_for(max_uses: u64, batch: u64) -> u64 {
    batch.clamp(1, max_uses.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    fn apply(slot: &mut Option<Vec<u8>>, id: &UsageId, now_ms: u64) -> &'static str {
        match spend(slot.as_deref(), id, 1_800_000_100, now_ms, 1300).unwrap() {
            Spend::Spent(v) => {
                *slot = Some(v);
                "spent"
            }
            Spend::TakeBatch(v, _) => {
                *slot = Some(v);
                "batch"
            }
            Spend::TakeOne => "one",
        }
    }

    #[test]
    fn one_batch_at_a_time_then_local_spending_then_a_batch_again() {
        let id = UsageId::new("https://i", "j");
        let mut slot = None;
        assert_eq!(apply(&mut slot, &id, T), "batch");
        // While it is being taken, other requests ask for one use each.
        assert_eq!(apply(&mut slot, &id, T + 10), "one");
        assert_eq!(apply(&mut slot, &id, T + 20), "one");
        // The batch of 4 answered: its request spent one, 3 are spare.
        slot = Some(deposit(slot.as_deref(), &id, 3, None, 1_800_000_100, T + 30).unwrap());
        for i in 0..3 {
            assert_eq!(apply(&mut slot, &id, T + 40 + i), "spent");
        }
        assert_eq!(apply(&mut slot, &id, T + 50), "batch");
    }

    #[test]
    fn the_next_batch_swaps_on_the_key_as_last_written() {
        let id = UsageId::new("https://i", "j");
        let first = spend(None, &id, 1_800_000_100, T, 1300).unwrap();
        assert!(matches!(first, Spend::TakeBatch(_, None)));
        let slot = deposit(first.into_value().as_deref(), &id, 0, Some((16, 42)), 1_800_000_100, T + 5).unwrap();
        assert_eq!(
            spend(Some(&slot), &id, 1_800_000_100, T + 6, 1300).unwrap().kind(),
            LocalSpend::TakeBatch(Some((16, 42)))
        );
    }

    #[test]
    fn a_batch_whose_answer_was_lost_is_taken_again_after_the_timeout() {
        let id = UsageId::new("https://i", "j");
        let mut slot = None;
        assert_eq!(apply(&mut slot, &id, T), "batch");
        assert_eq!(apply(&mut slot, &id, T + 1299), "one");
        assert_eq!(apply(&mut slot, &id, T + 1300), "batch");
    }

    #[test]
    fn expired_allowances_are_dropped_and_a_slot_holds_a_bounded_number() {
        let mut slot = None;
        for i in 0..40 {
            let id = UsageId::new("https://i", &format!("{i}"));
            slot = Some(deposit(slot.as_deref(), &id, 5, None, 1_800_000_100 + i, T).unwrap());
            assert!(slot.as_ref().unwrap().len() <= MAX_PER_SLOT * RECORD);
        }
        // The latest stays, spendable; the first was dropped (its uses lost: under).
        let last = UsageId::new("https://i", "39");
        assert_eq!(apply(&mut slot, &last, T), "spent");
        let first = UsageId::new("https://i", "0");
        assert_eq!(apply(&mut slot, &first, T), "batch");
        // After every token expired, a write keeps only the live record.
        let live = UsageId::new("https://i", "live");
        slot = Some(deposit(slot.as_deref(), &live, 1, None, 1_900_000_000, 1_850_000_000_000).unwrap());
        assert_eq!(slot.as_ref().unwrap().len(), RECORD);
        // An expired allowance is never spent.
        assert!(!matches!(spend(slot.as_deref(), &live, 1_900_000_000, 1_900_000_000_000, 10), Ok(Spend::Spent(_))));
    }

    #[test]
    fn local_spending_never_exceeds_what_was_deposited() {
        // Random interleavings of spends and deposits: uses let through locally
        // never exceed the spare uses deposited.
        let id = UsageId::new("https://i", "j");
        let mut slot = None;
        let (mut deposited, mut spent) = (0u64, 0u64);
        let mut x = 7u64;
        for step in 0..2000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if x >> 60 < 3 {
                let spare = (x >> 40) % 5;
                deposited += spare;
                slot = Some(deposit(slot.as_deref(), &id, spare, None, 1_800_000_100, T + step).unwrap());
            } else if apply(&mut slot, &id, T + step) == "spent" {
                spent += 1;
            }
            assert!(spent <= deposited);
        }
        assert!(spent > 0);
    }

    #[test]
    fn batches_fit_the_limit_and_corrupt_values_fail() {
        assert_eq!(batch_for(1000, 50), 50);
        assert_eq!(batch_for(20, 50), 20);
        assert_eq!(batch_for(20, 0), 1);
        let id = UsageId::new("https://i", "j");
        assert_eq!(spend(Some(&[1]), &id, 1, 0, 1), Err(CorruptSlot));
        assert_eq!(deposit(Some(&[1]), &id, 1, None, 1, 0), Err(CorruptSlot));
        assert_eq!(allowance_key(5), "cjwt.allow.0005");
    }
}
