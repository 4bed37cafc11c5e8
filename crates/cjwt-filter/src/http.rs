//! One HTTP stream: read the request, ask the core, then forward or refuse.

use super::host::{host_now, ProxyHost, SharedDataCounter, SharedDataReplay};
use super::jwks;
use super::state::{Shared, Waiter};
use super::usage;
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::{self, Act, Plan};
use cjwt_core::outcome::response::Refusal;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::cell::Cell;
use std::rc::Rc;

/// One HTTP stream's context.
pub struct CjwtHttp {
    shared: Option<Rc<Shared>>,
    me: Waiter,
}

impl CjwtHttp {
    /// The stream `context_id` of a VM configured with `shared` (`None`: not configured).
    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> CjwtHttp {
        CjwtHttp { shared, me: Waiter { context: context_id, allowed: Rc::new(Cell::new(false)) } }
    }

    /// Body and trailers pass only once the request is allowed; until then
    /// Envoy buffers them (within its buffer limits) or drops them with the refusal.
    fn hold_until_allowed(&self) -> Action {
        if self.me.allowed.get() {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

impl Drop for CjwtHttp {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            usage::forget(shared, self.me.context);
        }
    }
}

impl Context for CjwtHttp {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(shared) = &self.shared {
            if usage::on_response(shared, token_id, body_size) {
                return;
            }
            let released = jwks::on_response(shared, token_id, body_size, Some(self.me.context));
            answer_waiters(shared, released);
        }
    }
}

impl HttpContext for CjwtHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "fault-injection")]
        fault_injection();
        let Some(shared) = self.shared.clone() else {
            // No configuration: Envoy would not have started; refuse anyway.
            return send(&plan::unavailable());
        };
        #[cfg(feature = "vm-bench")]
        if super::vm_bench::answer(&shared) {
            return Action::Pause;
        }
        let action = process(&shared, &self.me, true);
        self.me.allowed.set(action == Action::Continue);
        action
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold_until_allowed()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hold_until_allowed()
    }
}

/// Decides the current request (`me`) and acts on the core's plan. With
/// `may_wait_for_keys`, a request refused only because its provider's keys are
/// missing waits (paused) for a key fetch instead; [`answer_waiters`] decides it
/// again without waiting. A request allowed but for its use waits (paused) for
/// the usage store (usage.rs).
pub fn process(shared: &Shared, me: &Waiter, may_wait_for_keys: bool) -> Action {
    let Some(host) = ProxyHost::read() else {
        log::error!("cjwt: the host clock cannot be read; refusing");
        return send(&plan::unavailable());
    };
    let (Ok(mut engine), Ok(keys)) = (shared.engine.try_borrow_mut(), shared.keys.try_borrow()) else {
        return send(&plan::unavailable());
    };
    let host_calls = shared.crypto.calls.get();
    let mut outcome = engine.decide_with(&host, &*keys, &shared.crypto, &mut SharedDataCounter, &mut SharedDataReplay);
    drop(keys);
    shared.metrics.add(Counter::VerifyHost, shared.crypto.calls.get().saturating_sub(host_calls));
    if let Some(provider) = plan::awaits_keys(&outcome.decision) {
        if may_wait_for_keys {
            drop(engine);
            // Another worker may have the keys already: take its set over and decide again.
            if let Some(released) = host_now().and_then(|now| jwks::adopt_shared(shared, provider, now)) {
                answer_waiters(shared, released);
                let _ = hostcalls::set_effective_context(me.context);
                return process(shared, me, may_wait_for_keys);
            }
            if jwks::wait_for_keys(shared, provider, Some(me)) {
                // Counted when it is decided again, not now.
                return Action::Pause;
            }
            let Ok(engine) = shared.engine.try_borrow_mut() else {
                return send(&plan::unavailable());
            };
            let plan = plan::plan(&engine.config, &outcome, &host);
            drop(engine);
            return execute(shared, plan);
        }
    }
    if let (Some(call), Some(store)) = (outcome.pending_use.take(), engine.config.usage_store.clone()) {
        drop(engine);
        return usage::start(shared, &store, me, outcome, call);
    }
    let plan = plan::plan(&engine.config, &outcome, &host);
    drop(engine);
    execute(shared, plan)
}

/// Executes a plan: counters, the log line, then forward (after the header
/// operations) or refuse.
pub fn execute(shared: &Shared, plan: Plan) -> Action {
    for counter in &plan.counters {
        shared.metrics.bump(*counter);
    }
    if let Some(line) = &plan.log {
        log::info!("{line}");
    }
    for (field, value) in &plan.audit {
        // Filter state `wasm.cjwt.<field>` for the access log (SPEC §12); best effort.
        let name = match *field {
            "reason" => "cjwt.reason",
            "sub" => "cjwt.sub",
            "iss" => "cjwt.iss",
            _ => "cjwt.rule",
        };
        let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
    }
    match plan.act {
        Act::Forward(ops) => {
            for (name, value) in &ops {
                if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value.as_deref()).is_err() {
                    // Never forward with a client-supplied header intact.
                    log::error!("cjwt: could not rewrite request headers; refusing");
                    return send(&plan::unavailable());
                }
            }
            Action::Continue
        }
        Act::Refuse(refusal) => send(&refusal),
    }
}

/// Decides again every request that a key fetch released (it waited for the
/// keys), and resumes the ones now allowed; the others get their refusal.
pub fn answer_waiters(shared: &Shared, waiters: Vec<Waiter>) {
    if waiters.is_empty() {
        return;
    }
    for waiter in waiters {
        // A stream that ended while it waited cannot be made current: skip it.
        if hostcalls::set_effective_context(waiter.context).is_err() {
            continue;
        }
        let action = process(shared, &waiter, false);
        // Paused again: it waits for the usage store now, which resumes it.
        if action == Action::Pause && shared.usage.try_borrow().is_ok_and(|w| w.iter().any(|w| w.is(&waiter))) {
            continue;
        }
        let allowed = action == Action::Continue;
        waiter.allowed.set(allowed);
        if allowed {
            let _ = hostcalls::resume_http_request();
        }
    }
    // Back to the root context (the caller's): a fetch started after this must not
    // be dispatched as the last waiter's stream.
    let _ = hostcalls::set_effective_context(shared.root_context);
}

/// Test builds only: trap the VM on demand.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn fault_injection() {
    if let Ok(Some(v)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-cjwt-fault") {
        if v == b"panic" {
            panic!("cjwt: injected fault");
        }
    }
}

/// Sends a local reply and stops the request; it never reaches the upstream.
pub fn send(r: &Refusal) -> Action {
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _ = hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes()));
    Action::Pause
}
