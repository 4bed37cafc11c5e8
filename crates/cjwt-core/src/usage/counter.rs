//! The store that counts `max_uses` uses (SPEC §8), as the decision sees it:
//! the host's counter (per Envoy, or deferred to the mesh's store), or memory.

use super::allowance::{self, LastWritten, LocalSpend, Spending};
use super::UsageId;

/// The usage store failed (the caller fails closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageError;

/// Usage counting for `max_uses` (SPEC §8).
pub trait UsageCounter {
    /// Atomically counts one use of `id` if fewer than `limit` were counted.
    /// Returns `Ok(true)` when the use was counted, `Ok(false)` when the limit is
    /// reached. `expires_at` (Unix seconds) lets the store drop the counter later.
    /// An `Err` is a store failure; the caller fails closed.
    fn try_use(&mut self, id: &UsageId, limit: u64, expires_at: i64, now: i64) -> Result<bool, UsageError>;

    /// With a mesh-wide `usage_store`: whether this Envoy learned from the store
    /// that `id` is spent and the token has not expired at `now` (the free deny
    /// path, [`super::spent`]). A store without a deny set answers `false`: the
    /// mesh's store is asked, as always.
    fn is_spent(&mut self, _id: &UsageId, _now: i64) -> bool {
        false
    }

    /// The mesh's store said `id` is spent: remember it until `expires_at` (best
    /// effort; a failure only means the next replay asks the store again).
    fn mark_spent(&mut self, _id: &UsageId, _expires_at: i64, _now: i64) {}

    /// Leased allowances ([`super::allowance`]): a request of token `id`
    /// (counted in batches) spends one local use (maybe starting a refill), or
    /// learns how to ask the store ([`Spending`]: expiry, clock, how long a
    /// batch being taken is trusted, the low-water mark). A store without
    /// allowances (or failing) answers [`LocalSpend::TakeOne`]: the mesh's
    /// store counts this one use.
    fn spend_allowance(&mut self, _id: &UsageId, _at: Spending) -> LocalSpend {
        LocalSpend::TakeOne
    }

    /// A refill found `id` used up: take no batch for it again (best effort:
    /// a failure only means the next refill asks the store and learns it again).
    fn dry_allowance(&mut self, _id: &UsageId, _expires_at: i64, _now_ms: u64) {}

    /// A batch taken for `id` answered: `spare` uses join the local allowance,
    /// with the key as the batch wrote it, `last` (best effort: uses not
    /// deposited are lost, never handed out twice).
    fn deposit_allowance(&mut self, _id: &UsageId, _spare: u64, _last: LastWritten, _expires_at: i64, _now_ms: u64) {}
}

/// An in-memory counter (tests and the command line; not shared across VMs).
#[derive(Default, Debug)]
pub struct MemoryCounter {
    counts: std::collections::HashMap<UsageId, (u64, i64)>,
    spent: std::collections::HashMap<UsageId, i64>,
    allowances: Option<Vec<u8>>,
}

impl UsageCounter for MemoryCounter {
    fn try_use(&mut self, id: &UsageId, limit: u64, expires_at: i64, now: i64) -> Result<bool, UsageError> {
        self.counts.retain(|_, (_, exp)| *exp > now);
        let entry = self.counts.entry(*id).or_insert((0, expires_at));
        if entry.0 >= limit {
            return Ok(false);
        }
        entry.0 += 1;
        Ok(true)
    }

    fn is_spent(&mut self, id: &UsageId, now: i64) -> bool {
        self.spent.get(id).is_some_and(|exp| *exp > now)
    }

    fn mark_spent(&mut self, id: &UsageId, expires_at: i64, now: i64) {
        self.spent.retain(|_, exp| *exp > now);
        if expires_at > now {
            self.spent.insert(*id, expires_at);
        }
    }

    fn spend_allowance(&mut self, id: &UsageId, at: Spending) -> LocalSpend {
        match allowance::spend(self.allowances.as_deref(), id, at) {
            Ok(spend) => {
                let kind = spend.kind();
                if let Some(v) = spend.into_value() {
                    self.allowances = Some(v);
                }
                kind
            }
            Err(_) => LocalSpend::TakeOne,
        }
    }

    fn deposit_allowance(&mut self, id: &UsageId, spare: u64, last: LastWritten, expires_at: i64, now_ms: u64) {
        if let Ok(v) = allowance::deposit(self.allowances.as_deref(), id, spare, last, expires_at, now_ms) {
            self.allowances = Some(v);
        }
    }

    fn dry_allowance(&mut self, id: &UsageId, expires_at: i64, now_ms: u64) {
        if let Ok(v) = allowance::dry(self.allowances.as_deref(), id, expires_at, now_ms) {
            self.allowances = Some(v);
        }
    }
}
