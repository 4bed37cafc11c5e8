//! The per-VM state every context of the VM shares. It is built once in
//! `on_configure` (root.rs); the streams (http.rs) and the key fetches (jwks.rs)
//! borrow it. A VM is single-threaded, so `RefCell` is enough; every borrow is
//! `try_` and fails closed.

use super::host::EnvoyCrypto;
use super::metrics::Metrics;
use cjwt_core::engine::Engine;
use cjwt_core::lifecycle::remote::Effect;
use cjwt_core::outcome::Level;
use cjwt_core::jwks::fetcher::{FetchRequest, Fetcher};
use cjwt_core::jwks::store::KeyStore;
use cjwt_core::revocation::fetcher::ListFetcher;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Per-VM state shared by every stream of the VM.
pub struct Shared {
    /// The compiled configuration and the verified-token cache.
    pub engine: RefCell<Engine>,
    /// The VM's counters.
    pub metrics: Metrics,
    /// Envoy's `verify_signature`, when the host has it.
    pub crypto: EnvoyCrypto,
    /// Keys fetched from remote JWKS, per provider.
    pub keys: RefCell<KeyStore>,
    /// When to fetch them, and the requests waiting for them.
    pub fetcher: RefCell<Fetcher<Waiter>>,
    /// The root context's id: key fetches are dispatched from it, so that their
    /// answers arrive even when the stream that needed them is gone (SEC-12.3).
    pub root_context: u32,
    /// Key fetches a stream started (the fetcher handed them out to a request
    /// with an unknown `kid`), for the root context to dispatch on its next
    /// tick, which the stream brings forward (jwks.rs): a call dispatched from a
    /// stream's callback dies with the stream (issue 24).
    pub wanted: RefCell<Vec<FetchRequest>>,
    /// Set while the tick runs at [`super::jwks::WAKE_PERIOD`] for `wanted`.
    pub woken: Cell<bool>,
    /// This VM's tag in the shared fetch leases (jwks.rs): unique among the VMs of an Envoy.
    pub lease_tag: u64,
    /// When to fetch the configured status lists (SPEC §11); the lists live in `keys`.
    pub lists: RefCell<ListFetcher>,
    /// Requests waiting for the mesh-wide usage store (SPEC §8 v2).
    pub usage: RefCell<Vec<super::usage::UsageWait>>,
}

/// A stream, as a paused request is remembered (waiting for keys or for the
/// usage store): the answer takes its flow's next step and sets `allowed`. Until `allowed` is set, request body and
/// trailers are held (no body callback's answer may release the request).
#[derive(Debug, Clone)]
pub struct Waiter {
    /// The stream's context id (made current to decide it again).
    pub context: u32,
    /// Whether the request was allowed (shared with the stream's context).
    pub allowed: Rc<Cell<bool>>,
    /// The request's lifecycle (shared with the stream's context).
    pub flow: Rc<RefCell<cjwt_core::lifecycle::request::RequestFlow>>,
}

impl Shared {
    /// Executes what the core asks of the host: log lines and counters.
    pub fn apply(&self, effects: impl IntoIterator<Item = Effect>) {
        for effect in effects {
            match effect {
                Effect::Log(Level::Info, line) => log::info!("{line}"),
                Effect::Log(Level::Warn, line) => log::warn!("{line}"),
                Effect::Count(counter) => self.metrics.bump(counter),
            }
        }
    }
}
