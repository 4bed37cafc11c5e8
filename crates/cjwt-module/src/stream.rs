//! One HTTP stream: read the request, ask the core, execute the core's plan.

use crate::config::{ModuleConfig, Shared};
use crate::ffi::{log, Filter, Level, HEADERS_CONTINUE, HEADERS_STOP};
use crate::host::NativeHost;
use crate::jwks::{Waiter, EVENT_DISPATCH, EVENT_KEYS};
use cjwt_core::jwks::fetcher::WaitDecision;
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::{self, Act, Plan};
use cjwt_core::outcome::response::Refusal;
use std::sync::Arc;

/// The module's state for one stream.
pub struct Stream {
    shared: Arc<Shared>,
    /// Set once the request may go upstream: until then body and trailers are held.
    allowed: bool,
    /// Set while the request waits (paused) for its provider's keys.
    waiter: Option<Arc<Waiter>>,
}

/// What deciding a request led to.
enum Next {
    /// Act on this plan now.
    Act(Plan),
    /// The request waits for a key fetch; the stream is woken on its worker.
    Wait,
}

impl Stream {
    /// A new stream of configuration `config`.
    pub fn new(config: &ModuleConfig) -> Stream {
        Stream { shared: Arc::clone(&config.shared), allowed: false, waiter: None }
    }

    /// Whether the request was allowed (body and trailers may pass).
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Request headers: decide and act.
    pub fn on_request_headers(&mut self, f: Filter<'_>) -> u32 {
        #[cfg(feature = "fault-injection")]
        fault_injection(&f);
        let Some(host) = NativeHost::read(f) else {
            log(Level::Error, "cjwt: the clock cannot be read; refusing");
            internal_error(f);
            return HEADERS_STOP;
        };
        match self.decide(f, &host, true) {
            Some(Next::Act(plan)) => self.execute(f, plan),
            Some(Next::Wait) => HEADERS_STOP,
            None => {
                internal_error(f);
                HEADERS_STOP
            }
        }
    }

    /// Decides the request. With `may_wait`, a refusal that only lacks its
    /// provider's keys waits for a fetch when the fetcher allows one.
    fn decide(&mut self, f: Filter<'_>, host: &NativeHost<'_>, may_wait: bool) -> Option<Next> {
        let shared = Arc::clone(&self.shared);
        let host_calls = shared.crypto.calls();
        let decided = shared.with_engine(|engine| {
            let outcome = {
                let keys = shared.keys.read().ok()?;
                engine.decide(host, &*keys, &shared.crypto, &mut { shared.usage })
            };
            let waits = plan::awaits_keys(&outcome.decision).filter(|_| may_wait);
            Some((waits, plan::plan(&engine.config, &outcome, host)))
        });
        let (waits, plan) = decided.flatten()?;
        let verified = shared.crypto.calls().saturating_sub(host_calls);
        if verified > 0 {
            if let Some(Some(id)) = shared.counters.get(Counter::VerifyHost.index()) {
                f.increment(*id, verified);
            }
        }
        if let Some(provider) = waits {
            if self.wait_for_keys(f, provider, host) {
                // Counted when it is decided again, not now.
                return Some(Next::Wait);
            }
        }
        Some(Next::Act(plan))
    }

    /// Registers this stream as waiting for `provider`'s keys, if the fetcher
    /// lets it wait; a call it starts is queued for the main thread.
    fn wait_for_keys(&mut self, f: Filter<'_>, provider: usize, host: &NativeHost<'_>) -> bool {
        let Some(remote) = &self.shared.remote else {
            return false;
        };
        let waiter = match &self.waiter {
            Some(w) => Arc::clone(w),
            None => match f.scheduler() {
                Some(s) => Waiter::new(s),
                None => return false,
            },
        };
        let decision = match remote.state.lock() {
            Ok(mut state) => {
                let decision = state.fetcher.wait_for_keys(
                    provider,
                    Arc::clone(&waiter),
                    cjwt_core::request::host::Host::now(host),
                );
                if let WaitDecision::Start(request) = &decision {
                    state.queued.push(request.clone());
                }
                decision
            }
            Err(_) => return false,
        };
        match decision {
            WaitDecision::DoNotWait => false,
            WaitDecision::Wait => {
                self.waiter = Some(waiter);
                true
            }
            WaitDecision::Start(_) => {
                self.waiter = Some(waiter);
                self.shared.commit(EVENT_DISPATCH);
                true
            }
        }
    }

    /// A scheduled event on this stream's worker: the keys it waited for arrived
    /// (or the fetch failed). Decide again, without waiting, and act.
    pub fn on_scheduled(&mut self, f: Filter<'_>, event: u64) {
        if event != EVENT_KEYS || self.allowed {
            return;
        }
        let Some(host) = NativeHost::read(f) else {
            internal_error(f);
            return;
        };
        match self.decide(f, &host, false) {
            Some(Next::Act(plan)) => {
                if self.execute(f, plan) == HEADERS_CONTINUE {
                    f.continue_decoding();
                }
            }
            Some(Next::Wait) | None => internal_error(f),
        }
    }

    /// The stream ended: a fetch that answers later must not wake it.
    pub fn on_complete(&mut self) {
        if let Some(w) = self.waiter.take() {
            w.close();
        }
    }

    fn execute(&mut self, f: Filter<'_>, plan: Plan) -> u32 {
        for counter in &plan.counters {
            bump(&self.shared, &f, *counter);
        }
        if let Some(line) = &plan.log {
            log(Level::Info, line);
        }
        for (field, value) in &plan.audit {
            // Dynamic metadata `cjwt:<field>` for the access log (SPEC §12).
            f.set_metadata("cjwt", field, value);
        }
        match plan.act {
            Act::Forward(ops) => {
                for (name, value) in &ops {
                    if !f.set_request_header(name, value.as_deref().map(str::as_bytes)) {
                        log(Level::Error, "cjwt: could not rewrite request headers; refusing");
                        internal_error(f);
                        return HEADERS_STOP;
                    }
                }
                self.allowed = true;
                HEADERS_CONTINUE
            }
            Act::Refuse(refusal) => {
                send(f, &refusal);
                HEADERS_STOP
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.on_complete();
    }
}

fn bump(shared: &Shared, f: &Filter<'_>, counter: Counter) {
    if let Some(Some(id)) = shared.counters.get(counter.index()) {
        f.increment(*id, 1);
    }
}

fn send(f: Filter<'_>, refusal: &Refusal) {
    let headers: Vec<(&str, &str)> = refusal.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.send_response(u16::try_from(refusal.status).unwrap_or(503), &headers, refusal.body.as_bytes(), "cjwt");
}

/// 503: the request is refused because cjwt cannot decide or act safely.
pub fn internal_error(f: Filter<'_>) {
    send(f, &plan::unavailable());
}

/// Test builds only: panic on demand, to prove a panic answers 503.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn fault_injection(f: &Filter<'_>) {
    if f.request_headers().iter().any(|(n, v)| n == "x-cjwt-fault" && v == b"panic") {
        panic!("cjwt: injected fault");
    }
}
