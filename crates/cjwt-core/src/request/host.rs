//! What the core needs from the proxy for one request, and nothing more.
//!
//! The proxy-wasm adapter implements [`Host`] over hostcalls; tests implement it
//! over plain data. Properties are fetched lazily, only when a decision needs them.

use crate::usage::UsageId;

/// The proxy as seen by one request.
pub trait Host {
    /// Every request header as received, pseudo-headers included, names lowercase,
    /// repeated names kept as separate entries, in order.
    fn headers(&self) -> &[(String, Vec<u8>)];
    /// A host property (e.g. `["source", "address"]`), raw bytes.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The host clock, Unix seconds. Never taken from the token or the request.
    fn now(&self) -> i64;
}

/// All values of header `name` (lowercase), as bytes.
pub fn header_values<'a>(host: &'a dyn Host, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    host.headers().iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// The single value of header `name` as UTF-8; `None` if absent, repeated or not UTF-8.
pub fn single_header<'a>(host: &'a dyn Host, name: &'a str) -> Option<&'a str> {
    let mut values = header_values(host, name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(first).ok()
}

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
}

/// An in-memory counter (tests and the command line; not shared across VMs).
#[derive(Default, Debug)]
pub struct MemoryCounter {
    counts: std::collections::HashMap<UsageId, (u64, i64)>,
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
}

/// Reading the host clock.
pub mod clock {
    /// 2020-01-01T00:00:00Z: a host clock before this is broken, not early.
    pub const EARLIEST: i64 = 1_577_836_800;

    /// Unix seconds of a host clock reading, or `None` for a reading no working
    /// clock gives (before [`EARLIEST`], or beyond `i64`): the caller fails closed.
    pub fn unix_seconds(t: std::time::SystemTime) -> Option<i64> {
        let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        i64::try_from(secs).ok().filter(|s| *s >= EARLIEST)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::{Duration, SystemTime, UNIX_EPOCH};

        #[test]
        fn a_broken_clock_reads_as_none_not_1970() {
            assert_eq!(unix_seconds(UNIX_EPOCH), None);
            assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(86_400)), None);
            assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(1_800_000_000)), Some(1_800_000_000));
            assert!(unix_seconds(SystemTime::now()).is_some());
        }
    }
}
