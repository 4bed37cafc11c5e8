//! The counters of SPEC §6, named once for both builds: an adapter defines
//! [`Counter::all`] with its host at configuration and bumps them by
//! [`Counter::index`], so the wasm filter and the native module count the same
//! things under the same names.

use crate::reason::Reason;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `cjwt.allowed`: requests let through (dry-run refusals are not counted here).
    Allowed,
    /// `cjwt.denied`: requests refused.
    Denied,
    /// `cjwt.denied.<reason>`.
    DeniedBy(Reason),
    /// `cjwt.dry_run.denied.<reason>`: refusals that `mode: dry_run` let through.
    DryRunDenied(Reason),
    /// `cjwt.cache.hit`: the verified-token cache answered.
    CacheHit,
    /// `cjwt.cache.miss`: a token was verified.
    CacheMiss,
    /// `cjwt.verify.host` (extension): signatures verified by the host's crypto.
    VerifyHost,
    /// `cjwt.jwks.fetch_ok`.
    JwksFetchOk,
    /// `cjwt.jwks.fetch_failed`.
    JwksFetchFailed,
    /// `cjwt.usage_store.ok`: the mesh-wide store counted a use or said it was used up.
    UsageStoreOk,
    /// `cjwt.usage_store.failed`: the store did not answer usably (503 `usage_unavailable`).
    UsageStoreFailed,
    /// `cjwt.usage_store.refill_ok`: a leased allowance's background batch
    /// answered (taken, or the token found used up).
    UsageStoreRefillOk,
    /// `cjwt.usage_store.refill_failed`: a background batch got no usable
    /// answer (its uses, if taken, are lost).
    UsageStoreRefillFailed,
    /// `cjwt.status_list.fetch_ok` (SPEC §11).
    StatusListFetchOk,
    /// `cjwt.status_list.fetch_failed` (SPEC §11).
    StatusListFetchFailed,
}

const FIXED: [Counter; 13] = [
    Counter::Allowed,
    Counter::Denied,
    Counter::CacheHit,
    Counter::CacheMiss,
    Counter::VerifyHost,
    Counter::JwksFetchOk,
    Counter::JwksFetchFailed,
    Counter::UsageStoreOk,
    Counter::UsageStoreFailed,
    Counter::UsageStoreRefillOk,
    Counter::UsageStoreRefillFailed,
    Counter::StatusListFetchOk,
    Counter::StatusListFetchFailed,
];

impl Counter {
    /// Every counter, in [`Counter::index`] order.
    pub fn all() -> Vec<Counter> {
        let mut all = FIXED.to_vec();
        all.extend(Reason::ALL.iter().map(|r| Counter::DeniedBy(*r)));
        all.extend(Reason::ALL.iter().map(|r| Counter::DryRunDenied(*r)));
        all
    }

    /// The counter's position in [`Counter::all`].
    pub fn index(self) -> usize {
        let reason = |r: Reason| Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        match self {
            Counter::DeniedBy(r) => FIXED.len() + reason(r),
            Counter::DryRunDenied(r) => FIXED.len() + Reason::ALL.len() + reason(r),
            fixed => FIXED.iter().position(|c| *c == fixed).unwrap_or(0),
        }
    }

    /// The counter's name as the host shows it (after its own prefix, e.g.
    /// `wasmcustom.` or the module's metrics namespace).
    pub fn name(self) -> String {
        match self {
            Counter::Allowed => "cjwt.allowed".into(),
            Counter::Denied => "cjwt.denied".into(),
            Counter::DeniedBy(r) => format!("cjwt.denied.{}", r.code()),
            Counter::DryRunDenied(r) => format!("cjwt.dry_run.denied.{}", r.code()),
            Counter::CacheHit => "cjwt.cache.hit".into(),
            Counter::CacheMiss => "cjwt.cache.miss".into(),
            Counter::VerifyHost => "cjwt.verify.host".into(),
            Counter::JwksFetchOk => "cjwt.jwks.fetch_ok".into(),
            Counter::JwksFetchFailed => "cjwt.jwks.fetch_failed".into(),
            Counter::UsageStoreOk => "cjwt.usage_store.ok".into(),
            Counter::UsageStoreFailed => "cjwt.usage_store.failed".into(),
            Counter::UsageStoreRefillOk => "cjwt.usage_store.refill_ok".into(),
            Counter::UsageStoreRefillFailed => "cjwt.usage_store.refill_failed".into(),
            Counter::StatusListFetchOk => "cjwt.status_list.fetch_ok".into(),
            Counter::StatusListFetchFailed => "cjwt.status_list.fetch_failed".into(),
        }
    }
}

/// The host's id of every counter, defined once per configuration (Envoy's
/// counter id, proxy-wasm's metric id). A definition the host refused leaves
/// the counter without an id: counting is best effort, it never changes a decision.
#[derive(Debug, Default)]
pub struct CounterIds<I> {
    ids: Vec<Option<I>>,
}

impl<I: Copy> CounterIds<I> {
    /// Defines every counter: `define` gets its [`Counter::name`] and gives
    /// the host's id, `None` when the host refused it.
    pub fn define(mut define: impl FnMut(&str) -> Option<I>) -> CounterIds<I> {
        CounterIds { ids: Counter::all().into_iter().map(|c| define(&c.name())).collect() }
    }

    /// The host's id of `counter`, if it was defined.
    pub fn id(&self, counter: Counter) -> Option<I> {
        self.ids.get(counter.index()).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_index_and_name() {
        let all = Counter::all();
        for (i, c) in all.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let mut names: Vec<String> = all.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(names.contains(&"cjwt.denied.max_uses".to_string()));
        assert!(names.contains(&"cjwt.dry_run.denied.ip".to_string()));
    }

    #[test]
    fn counter_ids_by_counter_none_where_the_host_refused() {
        let ids = CounterIds::define(|name| (name != "cjwt.denied").then_some(name.len()));
        assert_eq!(ids.id(Counter::Allowed), Some("cjwt.allowed".len()));
        assert_eq!(ids.id(Counter::Denied), None);
        assert_eq!(ids.id(Counter::StatusListFetchFailed), Some("cjwt.status_list.fetch_failed".len()));
        assert_eq!(CounterIds::<u32>::default().id(Counter::Allowed), None);
    }
}
