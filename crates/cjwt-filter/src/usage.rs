//! The mesh-wide usage count, the host's side (SPEC §8 v2): a request that the
//! core allowed but for its use waits (paused) while the calls of its
//! [`UseCall`] go to etcd through the configured Envoy cluster, each within what
//! is left of `timeout_ms`; the final answer is settled by the core and the plan
//! executed. Nothing here decides.
//!
//! Calls are dispatched as the root context (like key fetches), and their
//! answers are matched by token, whichever context the SDK hands them to. A wait
//! whose answer never comes (the context that received it ended) is settled as
//! unavailable on the tick, one second after its deadline at most.

use super::host::ProxyHost;
use super::http::{execute, send};
use super::state::{Shared, Waiter};
use cjwt_core::config::EtcdStore;
use cjwt_core::engine::{settle, Outcome};
use cjwt_core::outcome::plan;
use cjwt_core::usage::etcd::{EtcdCall, Step, UseAnswer, UseCall, MAX_ANSWER_BYTES};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, MapType};
use std::time::{Duration, UNIX_EPOCH};

/// One request waiting for the store.
pub struct UsageWait {
    /// The call in flight.
    token: u32,
    /// The paused stream.
    waiter: Waiter,
    /// Where the use is.
    call: UseCall,
    /// The decision to settle.
    outcome: Outcome,
    /// When the wait ends whatever the store does (host clock, ms).
    deadline_ms: u64,
}

impl UsageWait {
    /// Whether this is `waiter`'s wait.
    pub fn is(&self, waiter: &Waiter) -> bool {
        self.waiter.context == waiter.context
    }
}

/// The host clock in milliseconds (0 when it cannot be read: every deadline has passed).
fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts counting the use of the current request (`waiter`, allowed but for
/// its use): sends the first call and pauses; when no call can be sent, settles
/// as unavailable at once.
pub fn start(shared: &Shared, store: &EtcdStore, waiter: &Waiter, outcome: Outcome, call: UseCall) -> Action {
    let deadline_ms = now_ms().saturating_add(store.timeout_ms);
    match dispatch(shared, store, &call.first(), store.timeout_ms, waiter.context) {
        Ok(token) => {
            let wait = UsageWait { token, waiter: waiter.clone(), call, outcome, deadline_ms };
            match shared.usage.try_borrow_mut() {
                Ok(mut waits) => {
                    waits.push(wait);
                    Action::Pause
                }
                Err(_) => act(shared, wait.outcome, &UseAnswer::Unavailable("internal".into())),
            }
        }
        Err(why) => act(shared, outcome, &UseAnswer::Unavailable(why)),
    }
}

/// `dispatch_http_call` as the root context, back to `stream` afterwards.
fn dispatch(shared: &Shared, store: &EtcdStore, call: &EtcdCall, timeout_ms: u64, stream: u32) -> Result<u32, String> {
    if hostcalls::set_effective_context(shared.root_context).is_err() {
        return Err("the root context cannot be made current".into());
    }
    let headers = vec![
        (":method", "POST"),
        (":path", call.path.as_str()),
        (":authority", store.authority.as_str()),
        ("content-type", "application/json"),
    ];
    let sent = hostcalls::dispatch_http_call(
        &store.cluster,
        headers,
        Some(call.body.as_bytes()),
        vec![],
        Duration::from_millis(timeout_ms),
    );
    let _ = hostcalls::set_effective_context(stream);
    sent.map_err(|e| format!("cluster {:?}: dispatch failed ({e:?})", store.cluster))
}

/// An HTTP call answer: `true` when it was a usage call (handled here).
pub fn on_response(shared: &Shared, token: u32, body_size: usize) -> bool {
    let wait = match shared.usage.try_borrow_mut() {
        Ok(mut waits) => match waits.iter().position(|w| w.token == token) {
            Some(i) => waits.swap_remove(i),
            None => return false,
        },
        Err(_) => return false,
    };
    let UsageWait { waiter, mut call, outcome, deadline_ms, .. } = wait;
    let step = if body_size > MAX_ANSWER_BYTES {
        Step::Done(call.on_failure(&format!("answer of {body_size} bytes is too large")))
    } else {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
        let body =
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
        call.on_answer(status.as_deref(), &body)
    };
    let store = match shared.engine.try_borrow() {
        Ok(engine) => engine.config.usage_store.clone(),
        Err(_) => None,
    };
    let answer = match (step, store) {
        (Step::Done(answer), _) => answer,
        (Step::Send(next), Some(store)) => {
            let left = deadline_ms.saturating_sub(now_ms());
            if left == 0 {
                call.on_failure(&format!("no answer within {} ms", store.timeout_ms))
            } else {
                match dispatch(shared, &store, &next, left, waiter.context) {
                    Ok(token) => {
                        let wait = UsageWait { token, waiter, call, outcome, deadline_ms };
                        match shared.usage.try_borrow_mut() {
                            Ok(mut waits) => {
                                waits.push(wait);
                                return true;
                            }
                            Err(_) => return true,
                        }
                    }
                    Err(why) => call.on_failure(&why),
                }
            }
        }
        (Step::Send(_), None) => call.on_failure("no usage store configured"),
    };
    resume(shared, &waiter, outcome, &answer);
    true
}

/// Settles the waits whose answer is more than a second overdue (it will not come).
pub fn on_tick(shared: &Shared) {
    let cutoff = now_ms().saturating_sub(1000);
    let overdue: Vec<UsageWait> = match shared.usage.try_borrow_mut() {
        Ok(mut waits) => {
            let (late, kept) = std::mem::take(&mut *waits).into_iter().partition(|w| w.deadline_ms < cutoff);
            *waits = kept;
            late
        }
        Err(_) => return,
    };
    for mut wait in overdue {
        let answer = wait.call.on_failure("no answer (the call was lost)");
        resume(shared, &wait.waiter, wait.outcome, &answer);
    }
    let _ = hostcalls::set_effective_context(shared.root_context);
}

/// Forgets the waits of a stream that ended.
pub fn forget(shared: &Shared, context: u32) {
    if let Ok(mut waits) = shared.usage.try_borrow_mut() {
        waits.retain(|w| w.waiter.context != context);
    }
}

/// Makes the waiting stream current, acts on the settled decision, and resumes it if allowed.
fn resume(shared: &Shared, waiter: &Waiter, outcome: Outcome, answer: &UseAnswer) {
    // A stream that ended while it waited cannot be made current: nothing to do.
    if hostcalls::set_effective_context(waiter.context).is_err() {
        return;
    }
    let allowed = act(shared, outcome, answer) == Action::Continue;
    waiter.allowed.set(allowed);
    if allowed {
        let _ = hostcalls::resume_http_request();
    }
}

/// Settles `outcome` with the store's answer and executes the plan for the current stream.
fn act(shared: &Shared, outcome: Outcome, answer: &UseAnswer) -> Action {
    if let UseAnswer::Unavailable(why) = answer {
        log::warn!("cjwt: usage store unavailable: {why}");
    }
    let Some(host) = ProxyHost::read() else {
        return send(&plan::unavailable());
    };
    let plan = match shared.engine.try_borrow() {
        Ok(engine) => plan::plan(&engine.config, &settle(engine.config.mode, outcome, answer), &host),
        Err(_) => return send(&plan::unavailable()),
    };
    execute(shared, plan)
}
