//! The per-VM state every context of the VM shares. It is built once in
//! `on_configure` (root.rs); the streams (http.rs), the fetches (remote.rs) and
//! the usage waits (usage.rs) borrow it. A VM is single-threaded, so `RefCell` is enough; every borrow is
//! `try_` and fails closed.

use super::host::EnvoyCrypto;
use super::metrics::Metrics;
use cjwt_core::{Engine, Fetched, InFlight, Refills, Remote, RequestFlow};
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
    /// Keys fetched from remote JWKS, per provider, and the status lists.
    pub keys: RefCell<Fetched>,
    /// What to fetch, when, by which VM, and the requests waiting for keys (remote.rs).
    pub remote: RefCell<Remote<Waiter>>,
    /// The root context's id: fetches are dispatched from it, so that their
    /// answers arrive even when the stream that needed them is gone (SEC-12.3).
    pub root_context: u32,
    /// Set while the tick runs at [`super::remote::WAKE_PERIOD`] for a fetch or a refill a request started.
    pub woken: Cell<bool>,
    /// Requests waiting for the mesh-wide usage store (SPEC §8 v2), by call token.
    pub usage: RefCell<InFlight<Waiter>>,
    /// Leased allowances' background refills (no request waits for them).
    pub refills: RefCell<Refills>,
}

/// A stream, as a paused request is remembered (waiting for keys or for the
/// usage store): the answer takes its flow's next step. Until the flow has
/// allowed it, request body and trailers are held (no body callback's answer
/// may release the request).
#[derive(Debug, Clone)]
pub struct Waiter {
    /// The stream's context id (made current to decide it again).
    pub context: u32,
    /// The request's lifecycle (shared with the stream's context).
    pub flow: Rc<RefCell<RequestFlow>>,
}
