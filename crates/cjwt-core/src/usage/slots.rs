//! `max_uses` counts, spent tokens and leased allowances over a host's store of
//! named byte values that its workers share and update by compare-and-swap
//! (proxy-wasm shared data): the host gives [`SlotStore::update`], the core
//! keeps the records ([`super::count_use`], [`super::spent`],
//! [`super::allowance`]) and what each failure means. The same [`Slots`] are
//! the DPoP replay cache ([`crate::sender::replay`]).

use super::allowance::{self, allowance_key, LastWritten, LocalSpend, Spending};
use super::spent::{is_spent_in, mark_spent_in, spent_key};
use super::{count_use, slot_key, SlotUpdate, UsageCounter, UsageError, UsageId};

/// What a [`SlotStore::update`] does with a value: the current value (`None`:
/// none yet) to the value to write, or to `None` (write nothing); an `Err`
/// writes nothing and fails the update.
pub type SlotNext<'a> = dyn FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, UsageError> + 'a;

/// A host's named byte values, shared by its workers.
pub trait SlotStore {
    /// Read-modify-write of `key`: `next` maps the current value to the value
    /// to write, or to `None` (nothing written: `Ok(false)`). `next` may be
    /// called again when another worker wrote in between; what it returned
    /// last is what was written. `Ok(true)` once written; `Err` on a host
    /// failure, a value `next` refuses, or too many conflicts (callers fail closed).
    fn update(&mut self, key: &str, next: &mut SlotNext<'_>) -> Result<bool, UsageError>;
}

/// The counter (and replay cache) over a host's [`SlotStore`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Slots<S>(pub S);

impl<S: SlotStore> UsageCounter for Slots<S> {
    fn try_use(&mut self, id: &UsageId, limit: u64, expires_at: i64, now: i64) -> Result<bool, UsageError> {
        self.0.update(&slot_key(id.slot()), &mut |value| match count_use(value, id, limit, expires_at, now) {
            Ok(SlotUpdate::Write(next)) => Ok(Some(next)),
            Ok(SlotUpdate::Exhausted) => Ok(None),
            Err(_) => Err(UsageError),
        })
    }

    /// The deny set of spent tokens, in values of its own ([`spent_key`]): read, never written here.
    fn is_spent(&mut self, id: &UsageId, now: i64) -> bool {
        let mut spent = false;
        let _ = self.0.update(&spent_key(id.slot()), &mut |value| {
            spent = is_spent_in(value, id, now);
            Ok(None)
        });
        spent
    }

    fn mark_spent(&mut self, id: &UsageId, expires_at: i64, now: i64) {
        // Best effort: a failure only means the next replay asks the store.
        let _ = self.0.update(&spent_key(id.slot()), &mut |value| {
            mark_spent_in(value, id, expires_at, now).map_err(|_| UsageError)
        });
    }

    /// Leased allowances, in values of their own ([`allowance_key`]): the
    /// spend and its note are one compare-and-swap, so workers never spend a
    /// use twice. Nothing written where a write was due, or a failure: the
    /// store is asked for the one use.
    fn spend_allowance(&mut self, id: &UsageId, at: Spending) -> LocalSpend {
        let mut found = LocalSpend::TakeOne;
        let written = self.0.update(&allowance_key(id.slot()), &mut |value| {
            let spend = allowance::spend(value, id, at).map_err(|_| UsageError)?;
            found = spend.kind();
            Ok(spend.into_value())
        });
        match written {
            Ok(true) => found,
            Ok(false) | Err(_) => LocalSpend::TakeOne,
        }
    }

    fn deposit_allowance(&mut self, id: &UsageId, spare: u64, last: LastWritten, expires_at: i64, now_ms: u64) {
        // Best effort: uses not deposited are lost (under), never handed out twice.
        let _ = self.0.update(&allowance_key(id.slot()), &mut |value| {
            allowance::deposit(value, id, spare, last, expires_at, now_ms).map(Some).map_err(|_| UsageError)
        });
    }

    fn dry_allowance(&mut self, id: &UsageId, expires_at: i64, now_ms: u64) {
        // Best effort: a failure only means the next refill learns it again.
        let _ = self.0.update(&allowance_key(id.slot()), &mut |value| {
            allowance::dry(value, id, expires_at, now_ms).map(Some).map_err(|_| UsageError)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// One worker's view of shared values; `fail` fails every update.
    #[derive(Default)]
    struct Map {
        values: HashMap<String, Vec<u8>>,
        fail: bool,
    }

    impl SlotStore for &mut Map {
        fn update(&mut self, key: &str, next: &mut SlotNext<'_>) -> Result<bool, UsageError> {
            if self.fail {
                return Err(UsageError);
            }
            match next(self.values.get(key).map(Vec::as_slice))? {
                Some(value) => {
                    self.values.insert(key.to_string(), value);
                    Ok(true)
                }
                None => Ok(false),
            }
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn uses_are_counted_to_the_limit_and_a_failing_store_fails_closed() {
        let mut map = Map::default();
        let id = UsageId::new("https://idp.example.com", "once");
        assert_eq!(Slots(&mut map).try_use(&id, 2, NOW + 60, NOW), Ok(true));
        assert_eq!(Slots(&mut map).try_use(&id, 2, NOW + 60, NOW), Ok(true));
        assert_eq!(Slots(&mut map).try_use(&id, 2, NOW + 60, NOW), Ok(false), "exhausted: nothing written");
        map.fail = true;
        assert_eq!(Slots(&mut map).try_use(&id, 2, NOW + 60, NOW), Err(UsageError));
    }

    #[test]
    fn a_spent_token_is_remembered_until_it_expires() {
        let mut map = Map::default();
        let id = UsageId::new("https://idp.example.com", "spent");
        assert!(!Slots(&mut map).is_spent(&id, NOW));
        Slots(&mut map).mark_spent(&id, NOW + 60, NOW);
        assert!(Slots(&mut map).is_spent(&id, NOW + 59));
        assert!(!Slots(&mut map).is_spent(&id, NOW + 60), "expired");
    }

    #[test]
    fn a_failing_store_spends_no_local_use() {
        let mut map = Map { fail: true, ..Map::default() };
        let id = UsageId::new("https://idp.example.com", "leased");
        let at = Spending { expires_at: NOW + 60, now_ms: 1_800_000_000_000, take_timeout_ms: 300, refill_below: 0 };
        assert_eq!(Slots(&mut map).spend_allowance(&id, at), LocalSpend::TakeOne);
    }
}
