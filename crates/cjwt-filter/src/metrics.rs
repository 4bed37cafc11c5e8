//! The counters of SPEC §6 ([`Counter`], named in the core), defined once per VM
//! at configuration time as proxy-wasm metrics (`wasmcustom.cjwt.*` in Envoy).

use cjwt_core::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Metric ids of one VM by [`Counter::index`]. A failed definition leaves the id
/// unset (counting is best effort; it never changes a decision).
#[derive(Default, Debug)]
pub struct Metrics {
    ids: Vec<Option<u32>>,
}

impl Metrics {
    /// Defines every counter with the host.
    pub fn define() -> Metrics {
        let ids =
            Counter::all().into_iter().map(|c| hostcalls::define_metric(MetricType::Counter, &c.name()).ok()).collect();
        Metrics { ids }
    }

    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        if let (Some(Some(id)), true) = (self.ids.get(counter.index()), n > 0) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Adds one to `counter`.
    pub fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }
}
