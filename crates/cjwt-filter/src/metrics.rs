//! SPEC §6 counters, defined once per VM at configuration time.

use cjwt_core::reason::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Metric ids of one VM. A failed definition leaves the id unset (counting is
/// best effort; it never changes a decision).
#[derive(Default, Debug)]
pub struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    denied_by: Vec<(Reason, u32)>,
    dry_run_by: Vec<(Reason, u32)>,
    cache_hit: Option<u32>,
    cache_miss: Option<u32>,
    verify_host: Option<u32>,
    jwks_ok: Option<u32>,
    jwks_failed: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        let mut m = Metrics {
            allowed: counter("cjwt.allowed"),
            denied: counter("cjwt.denied"),
            cache_hit: counter("cjwt.cache.hit"),
            cache_miss: counter("cjwt.cache.miss"),
            verify_host: counter("cjwt.verify.host"),
            ..Metrics::default()
        };
        m.jwks_ok = counter("cjwt.jwks.fetch_ok");
        m.jwks_failed = counter("cjwt.jwks.fetch_failed");
        for reason in Reason::ALL {
            if let Some(id) = counter(&format!("cjwt.denied.{}", reason.code())) {
                m.denied_by.push((reason, id));
            }
            if let Some(id) = counter(&format!("cjwt.dry_run.denied.{}", reason.code())) {
                m.dry_run_by.push((reason, id));
            }
        }
        m
    }

    fn bump(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    pub fn allowed(&self) {
        Self::bump(self.allowed);
    }

    pub fn denied(&self, reason: Reason) {
        Self::bump(self.denied);
        Self::bump(self.denied_by.iter().find(|(r, _)| *r == reason).map(|(_, id)| *id));
    }

    pub fn dry_run_denied(&self, reason: Reason) {
        Self::bump(self.dry_run_by.iter().find(|(r, _)| *r == reason).map(|(_, id)| *id));
    }

    /// Signatures verified by Envoy's `verify_signature` (not in SPEC §6: shows
    /// which path verified RS*/ES* tokens).
    pub fn host_verifications(&self, n: u64) {
        if let (Some(id), true) = (self.verify_host, n > 0) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn jwks_fetch(&self, ok: bool) {
        Self::bump(if ok { self.jwks_ok } else { self.jwks_failed });
    }

    pub fn cache(&self, hit: Option<bool>) {
        match hit {
            Some(true) => Self::bump(self.cache_hit),
            Some(false) => Self::bump(self.cache_miss),
            None => {}
        }
    }
}
