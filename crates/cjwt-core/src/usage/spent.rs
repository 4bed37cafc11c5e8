//! The free deny path (issue 27 item 4): once the mesh's store has said a token
//! is spent (`max_uses` reached), the Envoy that learned it refuses the token
//! locally until it expires, so replays of a spent token never reach the store.
//!
//! Counts only grow until the token expires, so a "spent" answer never goes
//! stale: refusing locally is exactly what the store would answer. The set lives
//! in the same bounded slots as the per-Envoy counts ([`super::count_use`]), in
//! its own key space ([`spent_key`]); each slot holds at most
//! [`MAX_SPENT_PER_SLOT`] tokens, so the whole set never holds more than
//! [`MAX_SPENT`] tokens ([`MAX_SPENT_BYTES`] bytes of values), whatever the flood. A
//! token evicted from a full slot (the one expiring first) is asked of the store
//! again on its next replay: forgetting costs one store call, never a use.

use super::{CorruptSlot, UsageId, SLOTS};

/// Bytes of one record: id, expiry (i64 LE, Unix s).
const RECORD: usize = 24;

/// The most spent tokens one slot remembers.
pub const MAX_SPENT_PER_SLOT: usize = 16;

/// The most spent tokens one Envoy remembers.
pub const MAX_SPENT: usize = SLOTS as usize * MAX_SPENT_PER_SLOT;

/// The most bytes the set's values hold (plus the host's cost per key, [`SLOTS`] keys).
pub const MAX_SPENT_BYTES: usize = MAX_SPENT * RECORD;

/// The store key of a slot of the deny set.
pub fn spent_key(slot: u16) -> String {
    format!("cjwt.spent.{slot:04}")
}

/// Whether the slot value `current` says `id` is spent at `now` (a record not
/// yet expired). A value this code did not write says nothing (the store is asked).
pub fn is_spent_in(current: Option<&[u8]>, id: &UsageId, now: i64) -> bool {
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return false;
    }
    current.chunks_exact(RECORD).any(|r| {
        let (rid, exp) = r.split_at(16);
        rid == id.0 && exp.try_into().map(i64::from_le_bytes).is_ok_and(|exp| exp > now)
    })
}

/// The slot value that also remembers `id` as spent until `expires_at`:
/// `Ok(None)` when there is nothing to write (already remembered, or already
/// expired). Expired records are dropped; a full slot drops the record that
/// expires first (its token is asked of the store again, see the module).
pub fn mark_spent_in(
    current: Option<&[u8]>,
    id: &UsageId,
    expires_at: i64,
    now: i64,
) -> Result<Option<Vec<u8>>, CorruptSlot> {
    if expires_at <= now {
        return Ok(None);
    }
    let current = current.unwrap_or(&[]);
    if current.len() % RECORD != 0 {
        return Err(CorruptSlot);
    }
    let mut records: Vec<([u8; 16], i64)> = Vec::with_capacity(current.len() / RECORD + 1);
    for r in current.chunks_exact(RECORD) {
        let (rid, exp) = r.split_at(16);
        let rid: [u8; 16] = rid.try_into().map_err(|_| CorruptSlot)?;
        let exp = i64::from_le_bytes(exp.try_into().map_err(|_| CorruptSlot)?);
        if rid == id.0 && exp > now {
            return Ok(None);
        }
        if exp > now && rid != id.0 {
            records.push((rid, exp));
        }
    }
    while records.len() >= MAX_SPENT_PER_SLOT {
        let first = records.iter().enumerate().min_by_key(|(_, (_, exp))| *exp).map(|(i, _)| i);
        match first {
            Some(i) => {
                records.swap_remove(i);
            }
            None => break,
        }
    }
    records.push((id.0, expires_at));
    let mut next = Vec::with_capacity(records.len() * RECORD);
    for (rid, exp) in records {
        next.extend_from_slice(&rid);
        next.extend_from_slice(&exp.to_le_bytes());
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(slot: &mut Option<Vec<u8>>, id: &UsageId, exp: i64, now: i64) {
        if let Some(v) = mark_spent_in(slot.as_deref(), id, exp, now).unwrap() {
            *slot = Some(v);
        }
    }

    #[test]
    fn a_spent_token_is_refused_until_it_expires() {
        let id = UsageId::new("https://i", "j");
        let other = UsageId::new("https://i", "k");
        let mut slot = None;
        assert!(!is_spent_in(slot.as_deref(), &id, 0));
        mark(&mut slot, &id, 100, 10);
        assert!(is_spent_in(slot.as_deref(), &id, 10));
        assert!(is_spent_in(slot.as_deref(), &id, 99));
        assert!(!is_spent_in(slot.as_deref(), &id, 100), "expired: the token is refused as expired anyway");
        assert!(!is_spent_in(slot.as_deref(), &other, 10));
        // Marking twice writes nothing; an expired token is not remembered.
        assert_eq!(mark_spent_in(slot.as_deref(), &id, 100, 20).unwrap(), None);
        assert_eq!(mark_spent_in(None, &other, 10, 10).unwrap(), None);
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_spent_tokens() {
        let mut slot = None;
        let ids: Vec<UsageId> = (0..100).map(|i| UsageId::new("https://i", &format!("{i}"))).collect();
        for (i, id) in ids.iter().enumerate() {
            mark(&mut slot, id, 1000 + i as i64, 0);
            assert!(slot.as_ref().unwrap().len() <= MAX_SPENT_PER_SLOT * RECORD);
        }
        // The latest ones are remembered; the ones expiring first were dropped.
        assert!(is_spent_in(slot.as_deref(), ids.last().unwrap(), 0));
        assert!(!is_spent_in(slot.as_deref(), &ids[0], 0));
        // Expired records go on the next write.
        mark(&mut slot, &UsageId::new("https://i", "late"), 5000, 2000);
        assert_eq!(slot.as_ref().unwrap().len(), RECORD);
        assert_eq!(MAX_SPENT_BYTES, 1024 * 16 * 24);
    }

    #[test]
    fn foreign_values_say_nothing_and_fail_writes() {
        let id = UsageId::new("https://i", "j");
        assert!(!is_spent_in(Some(&[1, 2, 3]), &id, 0));
        assert_eq!(mark_spent_in(Some(&[1, 2, 3]), &id, 10, 0), Err(CorruptSlot));
        assert_eq!(spent_key(3), "cjwt.spent.0003");
    }
}
