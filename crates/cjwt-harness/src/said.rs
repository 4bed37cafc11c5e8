//! What responses said, for suites that send many requests and check them all:
//! status and cjwt's reason, tallied and counted; polling with a deadline; a
//! process's resident memory.

use std::collections::BTreeMap;

/// What a response said: its status and cjwt's `reason` (none when allowed).
pub type Said = (u16, Option<String>);

/// `said` as counts per `"<status> <reason>"`, for an assertion message.
pub fn tally(said: &[Said]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for (status, reason) in said {
        *t.entry(format!("{status} {}", reason.as_deref().unwrap_or("-"))).or_insert(0) += 1;
    }
    t
}

/// How many of `said` have `status` and `reason`.
pub fn count(said: &[Said], status: u16, reason: Option<&str>) -> usize {
    said.iter().filter(|s| is(s, status, reason)).count()
}

/// Whether `said` is `status` with `reason`.
pub fn is(said: &Said, status: u16, reason: Option<&str>) -> bool {
    said.0 == status && said.1.as_deref() == reason
}

/// Polls `f` until it holds; panics naming `what` after `timeout` (the core's fixture).
pub use cjwt_core::testing::wait_until;

/// The resident memory of process `pid` (`VmRSS`, KiB; 0 when unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
