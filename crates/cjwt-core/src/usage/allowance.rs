//! Leased allowances (issue 27 item 3): for a token whose `max_uses` is at least
//! `usage_store.etcd.allowance.from_max_uses`, an Envoy takes a batch of uses
//! from the mesh's store in one compare-and-swap (the token's count rises by the
//! batch, or by what is left) and spends them locally, across its workers, in
//! the bounded slot records below.
//!
//! **Background refill.** A request that spends a use and leaves fewer than
//! `refill_below` uses notes a batch as being taken and tells its caller to
//! take one in the background ([`Spend::SpentRefill`]): the request goes on at
//! once, and the batch's answer joins the allowance ([`deposit`]) on whatever
//! context receives it (`crate::lifecycle::refill`). A request waits for the
//! store only when the allowance is empty: the first request of a token on this
//! Envoy, a stream faster than a refill, or the whole mesh's allowance gone.
//! A refill that finds the token used up marks the record dry ([`dry`]): no
//! further batch is taken; the uses left are spent, then each request asks the
//! store (which answers `max_uses`, and the free deny path remembers it).
//!
//! **Exact or under.** A use is let through only when the store counted it: in
//! the batch it belongs to. Uses taken but not spent (the Envoy stops, its
//! record is evicted or expires with the token, a batch's answer is lost) are
//! lost, never handed out twice. **The bound on what is lost.** At most one batch
//! is taken at a time per Envoy and token (the note; a request finding a batch
//! being taken asks for its one use only), a request batch is taken only when
//! the allowance is empty (it leaves `batch − 1`) and a refill only when fewer
//! than `refill_below` are left (it adds at most `batch`): an Envoy never holds
//! more than `batch + refill_below − 1` unspent uses of a token (`batch − 1`
//! with `refill_below` 0). A batch whose answer is lost (timed out, the store
//! unavailable, the Envoy killed while it is in flight) loses at most `batch`
//! uses, and its note stands until `take_timeout_ms`, so such losses come at
//! most once per `take_timeout_ms` per Envoy and token. In all, the mesh loses
//! at most `Envoys × (batch + refill_below − 1) + batch × (batches whose answer
//! was lost)` uses of a token.
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
    /// Nothing left here and a batch is being taken by another request (or the
    /// store said the token is used up): ask the store for this one use only.
    TakeOne,
    /// One use spent, and fewer than `refill_below` left: write this value
    /// (which notes a batch as being taken) and take a batch in the background,
    /// swapping on the key as last written here; the request goes on at once.
    SpentRefill(Vec<u8>, LastWritten),
}

/// `taking_until_ms` of a record whose refill found the token used up: no
/// batch is taken for it again (its uses left are spent, then each request
/// asks the store, see the module).
const DRY: i64 = i64::MAX;

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

/// When a request spends a use: what the allowance holds, and when to refill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spending {
    /// The token's expiry (Unix s): its record goes with it.
    pub expires_at: i64,
    /// The clock, in Unix ms.
    pub now_ms: u64,
    /// How long a batch noted as being taken is trusted (the store's deadline
    /// plus the grace for a lost answer); after that a new batch may be taken.
    pub take_timeout_ms: u64,
    /// A spend that leaves fewer uses than this starts a background refill
    /// (0: never; a batch is taken only when the allowance is empty).
    pub refill_below: u64,
}

/// A request of token `id` finds the slot value `current`: spend one local
/// use (and maybe start a refill), or say how to ask the store.
pub fn spend(current: Option<&[u8]>, id: &UsageId, at: Spending) -> Result<Spend, CorruptSlot> {
    let Spending { expires_at, now_ms, take_timeout_ms, refill_below } = at;
    let now = ms_to_i64(now_ms / 1000);
    let now_ms = ms_to_i64(now_ms);
    let mut records = read(current)?;
    let mine = records.iter_mut().find(|r| r.id == id.0 && r.expires_at > now);
    match mine {
        Some(r) if r.left > 0 => {
            r.left -= 1;
            if r.left < refill_below && r.taking_until_ms <= now_ms {
                r.taking_until_ms = now_ms.saturating_add(ms_to_i64(take_timeout_ms));
                let last = r.last();
                return Ok(Spend::SpentRefill(write(records, now), last));
            }
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
            if r.taking_until_ms != DRY {
                r.taking_until_ms = 0;
            }
            r.expires_at = r.expires_at.max(expires_at);
            (r.last_count, r.last_rev) = (last_count, last_rev);
        }
        None => records.push(Record { id: id.0, left: spare, expires_at, taking_until_ms: 0, last_count, last_rev }),
    }
    Ok(write(records, now))
}

/// A refill found token `id` used up: the record is marked dry (no batch is
/// taken for it again; its uses left are still spent). Returns the value to write.
pub fn dry(current: Option<&[u8]>, id: &UsageId, expires_at: i64, now_ms: u64) -> Result<Vec<u8>, CorruptSlot> {
    let now = ms_to_i64(now_ms / 1000);
    let mut records = read(current)?;
    match records.iter_mut().find(|r| r.id == id.0) {
        Some(r) => r.taking_until_ms = DRY,
        None => {
            records.push(Record { id: id.0, left: 0, expires_at, taking_until_ms: DRY, last_count: 0, last_rev: 0 })
        }
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
    /// One local use spent, and a batch to take in the background (the
    /// request goes on without the store), swapping on the key as last written here.
    SpentRefill(LastWritten),
}

impl Spend {
    /// What was found, without the value to write.
    pub fn kind(&self) -> LocalSpend {
        match self {
            Spend::Spent(_) => LocalSpend::Spent,
            Spend::TakeBatch(_, last) => LocalSpend::TakeBatch(*last),
            Spend::TakeOne => LocalSpend::TakeOne,
            Spend::SpentRefill(_, last) => LocalSpend::SpentRefill(*last),
        }
    }

    /// The value to write, if any.
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            Spend::Spent(v) | Spend::TakeBatch(v, _) | Spend::SpentRefill(v, _) => Some(v),
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

    fn at(expires_at: i64, now_ms: u64, take_timeout_ms: u64, refill_below: u64) -> Spending {
        Spending { expires_at, now_ms, take_timeout_ms, refill_below }
    }

    fn apply(slot: &mut Option<Vec<u8>>, id: &UsageId, now_ms: u64) -> &'static str {
        apply_below(slot, id, now_ms, 0)
    }

    fn apply_below(slot: &mut Option<Vec<u8>>, id: &UsageId, now_ms: u64, refill_below: u64) -> &'static str {
        match spend(slot.as_deref(), id, at(1_800_000_100, now_ms, 1300, refill_below)).unwrap() {
            Spend::Spent(v) => {
                *slot = Some(v);
                "spent"
            }
            Spend::TakeBatch(v, _) => {
                *slot = Some(v);
                "batch"
            }
            Spend::TakeOne => "one",
            Spend::SpentRefill(v, _) => {
                *slot = Some(v);
                "refill"
            }
        }
    }

    #[test]
    fn a_spend_below_the_low_water_mark_starts_one_refill_and_the_request_goes_on() {
        let id = UsageId::new("https://i", "j");
        let mut slot = None;
        assert_eq!(apply_below(&mut slot, &id, T, 8), "batch");
        slot = Some(deposit(slot.as_deref(), &id, 15, Some((16, 7)), 1_800_000_100, T + 1).unwrap());
        // 15 left: spent down to 8 without the store, the spend leaving 7 refills.
        for i in 0..7 {
            assert_eq!(apply_below(&mut slot, &id, T + 2 + i, 8), "spent", "spend {i}");
        }
        let refill = spend(slot.as_deref(), &id, at(1_800_000_100, T + 10, 1300, 8)).unwrap();
        assert_eq!(refill.kind(), LocalSpend::SpentRefill(Some((16, 7))), "swaps on the key as last written");
        slot = refill.into_value();
        // While the refill is in flight: the 7 left are spent, none starts another batch.
        for i in 0..7 {
            assert_eq!(apply_below(&mut slot, &id, T + 11 + i, 8), "spent", "spend {i} during the refill");
        }
        // Empty with the refill still out: one use at a time, never a second batch.
        assert_eq!(apply_below(&mut slot, &id, T + 20, 8), "one");
        // The refill's 16 arrive (all spare: no request spent one of them).
        slot = Some(deposit(slot.as_deref(), &id, 16, Some((32, 9)), 1_800_000_100, T + 30).unwrap());
        for i in 0..8 {
            assert_eq!(apply_below(&mut slot, &id, T + 31 + i, 8), "spent");
        }
        assert_eq!(apply_below(&mut slot, &id, T + 40, 8), "refill", "below the mark again");
    }

    #[test]
    fn a_refill_whose_answer_is_lost_is_retried_only_after_the_timeout() {
        let id = UsageId::new("https://i", "j");
        let mut slot = Some(deposit(None, &id, 10, None, 1_800_000_100, T).unwrap());
        assert_eq!(apply_below(&mut slot, &id, T + 1, 10), "refill");
        // No answer (lost, timed out): the note stands, nothing is deposited.
        assert_eq!(apply_below(&mut slot, &id, T + 2, 10), "spent");
        assert_eq!(apply_below(&mut slot, &id, T + 1300, 10), "spent", "within the timeout");
        // After the timeout a spend below the mark refills again.
        assert_eq!(apply_below(&mut slot, &id, T + 1301, 10), "refill");
    }

    #[test]
    fn a_dry_allowance_spends_what_is_left_and_never_takes_a_batch_again() {
        let id = UsageId::new("https://i", "j");
        let mut slot = Some(deposit(None, &id, 3, None, 1_800_000_100, T).unwrap());
        assert_eq!(apply_below(&mut slot, &id, T + 1, 4), "refill");
        // The refill found the token used up.
        slot = Some(dry(slot.as_deref(), &id, 1_800_000_100, T + 2).unwrap());
        assert_eq!(apply_below(&mut slot, &id, T + 3, 4), "spent");
        assert_eq!(apply_below(&mut slot, &id, T + 4, 4), "spent");
        // Empty and dry: each request asks the store for its one use, long after any timeout.
        assert_eq!(apply_below(&mut slot, &id, T + 5, 4), "one");
        assert_eq!(apply_below(&mut slot, &id, T + 50_000, 4), "one");
        // A late deposit adds its uses but keeps it dry.
        slot = Some(deposit(slot.as_deref(), &id, 1, None, 1_800_000_100, T + 50_001).unwrap());
        assert_eq!(apply_below(&mut slot, &id, T + 50_002, 4), "spent");
        assert_eq!(apply_below(&mut slot, &id, T + 50_003, 4), "one");
        // A token never seen here, marked dry: it starts empty and dry.
        let other = UsageId::new("https://i", "k");
        let mut fresh = Some(dry(None, &other, 1_800_000_100, T).unwrap());
        assert_eq!(apply_below(&mut fresh, &other, T + 1, 4), "one");
    }

    /// Random interleavings of spends, refills and request batches answered
    /// or lost (an answer later than the timeout is dropped, as the adapters
    /// do): never more let through locally than the store handed out, and
    /// never more held than `batch + refill_below - 1`.
    #[test]
    fn with_refills_local_spending_never_exceeds_what_was_taken_and_holdings_stay_bounded() {
        let id = UsageId::new("https://i", "j");
        let (batch, below, timeout) = (16u64, 8u64, 1300u64);
        let mut slot: Option<Vec<u8>> = None;
        let (mut taken, mut spent) = (0u64, 0u64);
        // Batches in flight: (spare uses, started at).
        let mut in_flight: Vec<(u64, u64)> = Vec::new();
        let (mut refills, mut lost) = (0, 0);
        let mut x = 11u64;
        // 9,000 steps of 10 ms: the token (expiring at T + 100 s) lives throughout.
        for step in 0..9_000u64 {
            let now = T + step * 10;
            in_flight.retain(|(_, started)| now - started < timeout);
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let roll = x >> 58;
            if roll < 12 && !in_flight.is_empty() {
                let (spare, _) = in_flight.remove(0);
                if roll == 0 {
                    lost += 1;
                } else {
                    slot = Some(deposit(slot.as_deref(), &id, spare, None, 1_800_000_100, now).unwrap());
                }
                continue;
            }
            match apply_below(&mut slot, &id, now, below) {
                "spent" => spent += 1,
                "refill" => {
                    (spent, taken, refills) = (spent + 1, taken + batch, refills + 1);
                    in_flight.push((batch, now));
                }
                "batch" => {
                    (spent, taken) = (spent + 1, taken + batch);
                    in_flight.push((batch - 1, now));
                }
                _ => {}
            }
            assert!(in_flight.len() <= 1, "step {step}: two batches at once");
            assert!(spent <= taken, "step {step}: {spent} spent of {taken} taken");
            let held = read(slot.as_deref()).unwrap().iter().map(|r| r.left).sum::<u64>();
            assert!(held < batch + below, "step {step}: {held} held");
        }
        assert!(spent > 4_000 && refills > 100 && lost > 10, "{spent} spent, {refills} refills, {lost} lost");
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
        let first = spend(None, &id, at(1_800_000_100, T, 1300, 0)).unwrap();
        assert!(matches!(first, Spend::TakeBatch(_, None)));
        let slot = deposit(first.into_value().as_deref(), &id, 0, Some((16, 42)), 1_800_000_100, T + 5).unwrap();
        assert_eq!(
            spend(Some(&slot), &id, at(1_800_000_100, T + 6, 1300, 0)).unwrap().kind(),
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
        assert!(!matches!(
            spend(slot.as_deref(), &live, at(1_900_000_000, 1_900_000_000_000, 10, 0)),
            Ok(Spend::Spent(_))
        ));
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
        assert_eq!(spend(Some(&[1]), &id, at(1, 0, 1, 0)), Err(CorruptSlot));
        assert_eq!(deposit(Some(&[1]), &id, 1, None, 1, 0), Err(CorruptSlot));
        assert_eq!(allowance_key(5), "cjwt.allow.0005");
    }
}
