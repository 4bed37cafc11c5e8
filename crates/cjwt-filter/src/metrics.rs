//! The counters of SPEC §6 ([`Counter`], named in the core), defined once per VM
//! at configuration time as proxy-wasm metrics (`wasmcustom.cjwt.*` in Envoy).

use cjwt_core::{Counter, CounterIds};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Metric ids of one VM. A failed definition leaves the id unset (counting is
/// best effort; it never changes a decision).
#[derive(Default, Debug)]
pub struct Metrics(CounterIds<u32>);

impl Metrics {
    /// Defines every counter with the host.
    pub fn define() -> Metrics {
        Metrics(CounterIds::define(|name| hostcalls::define_metric(MetricType::Counter, name).ok()))
    }

    /// Adds one to `counter`.
    pub fn bump(&self, counter: Counter) {
        if let Some(id) = self.0.id(counter) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}
