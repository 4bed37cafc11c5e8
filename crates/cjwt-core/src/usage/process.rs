//! `max_uses` counted for one process whose worker threads share memory (the
//! native Envoy module): the same bounded slot records as proxy-wasm shared data
//! ([`super::count_use`]), each slot behind its own lock, so a use is counted
//! exactly once across all workers and memory follows the live one-time tokens.

use super::allowance::{self, LastWritten, LocalSpend, Spending};
use super::spent::{is_spent_in, mark_spent_in};
use super::{count_use, SlotUpdate, UsageId, SLOTS};
use crate::usage::{UsageCounter, UsageError};
use std::sync::Mutex;

/// The per-process counter: [`SLOTS`] slot values, each updated under its lock.
#[derive(Debug)]
pub struct ProcessCounter {
    slots: Vec<Mutex<Vec<u8>>>,
    /// The deny set of spent tokens ([`super::spent`]), in slots of its own.
    spent: Vec<Mutex<Vec<u8>>>,
    /// Leased allowances ([`super::allowance`]), in slots of their own.
    allowances: Vec<Mutex<Vec<u8>>>,
}

impl Default for ProcessCounter {
    fn default() -> Self {
        let slots = || (0..usize::from(SLOTS)).map(|_| Mutex::new(Vec::new())).collect();
        ProcessCounter { slots: slots(), spent: slots(), allowances: slots() }
    }
}

impl ProcessCounter {
    /// An empty counter.
    pub fn new() -> ProcessCounter {
        ProcessCounter::default()
    }

    /// The process's one counter, shared by every configuration and worker (as
    /// proxy-wasm shared data is by every VM of a `vm_id`): a configuration
    /// update or a second listener never hands out fresh uses of a one-time token.
    pub fn global() -> &'static ProcessCounter {
        static COUNTER: std::sync::OnceLock<ProcessCounter> = std::sync::OnceLock::new();
        COUNTER.get_or_init(ProcessCounter::new)
    }

    /// Counts one use of `id` if fewer than `limit` were counted (see
    /// [`UsageCounter::try_use`]). A poisoned lock or a corrupt slot is a store
    /// failure: the caller fails closed.
    pub fn try_use(&self, id: &UsageId, limit: u64, expires_at: i64, now: i64) -> Result<bool, UsageError> {
        let slot = self.slots.get(usize::from(id.slot())).ok_or(UsageError)?;
        let mut value = slot.lock().map_err(|_| UsageError)?;
        let current = if value.is_empty() { None } else { Some(value.as_slice()) };
        match count_use(current, id, limit, expires_at, now).map_err(|_| UsageError)? {
            SlotUpdate::Exhausted => Ok(false),
            SlotUpdate::Write(next) => {
                *value = next;
                Ok(true)
            }
        }
    }
}

impl ProcessCounter {
    /// Whether the store said `id` is spent and the token lives at `now` ([`super::spent`]).
    pub fn is_spent(&self, id: &UsageId, now: i64) -> bool {
        let Some(Ok(value)) = self.spent.get(usize::from(id.slot())).map(Mutex::lock) else {
            return false;
        };
        is_spent_in(Some(value.as_slice()), id, now)
    }

    /// Remembers `id` as spent until `expires_at` (a poisoned lock or a corrupt
    /// slot remembers nothing: the store is asked again).
    pub fn mark_spent(&self, id: &UsageId, expires_at: i64, now: i64) {
        let Some(Ok(mut value)) = self.spent.get(usize::from(id.slot())).map(Mutex::lock) else {
            return;
        };
        let current = if value.is_empty() { None } else { Some(value.as_slice()) };
        if let Ok(Some(next)) = mark_spent_in(current, id, expires_at, now) {
            *value = next;
        }
    }
}

impl ProcessCounter {
    /// One request's local use of a batch-counted token ([`super::allowance::spend`]);
    /// a poisoned lock or a corrupt slot asks the store for the one use.
    pub fn spend_allowance(&self, id: &UsageId, at: Spending) -> LocalSpend {
        let Some(Ok(mut value)) = self.allowances.get(usize::from(id.slot())).map(Mutex::lock) else {
            return LocalSpend::TakeOne;
        };
        let current = if value.is_empty() { None } else { Some(value.as_slice()) };
        match allowance::spend(current, id, at) {
            Ok(spend) => {
                let kind = spend.kind();
                if let Some(next) = spend.into_value() {
                    *value = next;
                }
                kind
            }
            Err(_) => LocalSpend::TakeOne,
        }
    }

    /// A batch's spare uses join the allowance ([`super::allowance::deposit`]).
    pub fn deposit_allowance(&self, id: &UsageId, spare: u64, last: LastWritten, expires_at: i64, now_ms: u64) {
        let Some(Ok(mut value)) = self.allowances.get(usize::from(id.slot())).map(Mutex::lock) else {
            return;
        };
        let current = if value.is_empty() { None } else { Some(value.as_slice()) };
        if let Ok(next) = allowance::deposit(current, id, spare, last, expires_at, now_ms) {
            *value = next;
        }
    }

    /// A refill found `id` used up ([`super::allowance::dry`]).
    pub fn dry_allowance(&self, id: &UsageId, expires_at: i64, now_ms: u64) {
        let Some(Ok(mut value)) = self.allowances.get(usize::from(id.slot())).map(Mutex::lock) else {
            return;
        };
        let current = if value.is_empty() { None } else { Some(value.as_slice()) };
        if let Ok(next) = allowance::dry(current, id, expires_at, now_ms) {
            *value = next;
        }
    }
}

impl UsageCounter for &ProcessCounter {
    fn spend_allowance(&mut self, id: &UsageId, at: Spending) -> LocalSpend {
        ProcessCounter::spend_allowance(self, id, at)
    }

    fn dry_allowance(&mut self, id: &UsageId, expires_at: i64, now_ms: u64) {
        ProcessCounter::dry_allowance(self, id, expires_at, now_ms);
    }

    fn deposit_allowance(&mut self, id: &UsageId, spare: u64, last: LastWritten, expires_at: i64, now_ms: u64) {
        ProcessCounter::deposit_allowance(self, id, spare, last, expires_at, now_ms);
    }

    fn try_use(&mut self, id: &UsageId, limit: u64, expires_at: i64, now: i64) -> Result<bool, UsageError> {
        ProcessCounter::try_use(self, id, limit, expires_at, now)
    }

    fn is_spent(&mut self, id: &UsageId, now: i64) -> bool {
        ProcessCounter::is_spent(self, id, now)
    }

    fn mark_spent(&mut self, id: &UsageId, expires_at: i64, now: i64) {
        ProcessCounter::mark_spent(self, id, expires_at, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_uses_are_counted_exactly_once_each() {
        let counter = Arc::new(ProcessCounter::new());
        let id = UsageId::new("https://issuer.test", "one-time");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&counter);
                std::thread::spawn(move || {
                    (0..100).filter(|_| c.try_use(&id, 250, 2_000_000_000, 1_800_000_000) == Ok(true)).count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 250);
    }

    #[test]
    fn expired_records_make_room_and_limits_are_per_token() {
        let counter = ProcessCounter::new();
        let a = UsageId::new("i", "a");
        let b = UsageId::new("i", "b");
        assert_eq!(counter.try_use(&a, 1, 100, 50), Ok(true));
        assert_eq!(counter.try_use(&a, 1, 100, 50), Ok(false));
        assert_eq!(counter.try_use(&b, 1, 100, 50), Ok(true));
        assert_eq!(counter.try_use(&a, 0, 100, 50), Ok(false));
    }

    #[test]
    fn the_deny_set_is_shared_by_workers_and_kept_apart_from_counts() {
        let counter = Arc::new(ProcessCounter::new());
        let a = UsageId::new("i", "a");
        let other = Arc::clone(&counter);
        std::thread::spawn(move || other.mark_spent(&a, 100, 50)).join().unwrap();
        assert!(counter.is_spent(&a, 60));
        assert!(!counter.is_spent(&a, 100));
        // The per-Envoy count of the same token is untouched.
        assert_eq!(counter.try_use(&a, 1, 100, 50), Ok(true));
    }
}
