//! The mesh-wide usage count, the host's side (SPEC §8 v2): the core's request
//! lifecycle hands out each call of a use (`Step::AwaitStore`); this module
//! dispatches it to etcd through the configured Envoy cluster, finds the paused
//! request its answer belongs to, and gives the answer back to that request's
//! flow. Nothing here decides.
//!
//! Calls are dispatched as the root context (like key fetches), and their
//! answers are matched by token, whichever context the SDK hands them to. A wait
//! whose answer never comes (the context that received it ended) is settled as
//! unavailable on the tick, one second after its deadline at most.
//!
//! A leased allowance's background refill (`cjwt_core::Refill`, taken from a
//! request's flow after each step) is a call of the VM's own: dispatched as the
//! root context, remembered apart from any stream, its answer handed to the
//! refill (which deposits the batch in shared data), settled on the tick if
//! the answer never comes. A stream that ends meanwhile changes nothing.

use super::http::wake;
use super::state::{Shared, Waiter};
use super::host::SharedDataCounter;
use super::http::log_line;
use cjwt_core::{Level, Refill, RefillStep, StoreCall};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

/// One request waiting for the store: the call in flight and the paused stream.
pub struct UsageWait {
    token: u32,
    waiter: Waiter,
}

/// The host clock in milliseconds (0 when it cannot be read: every deadline has passed).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time().map_or(0, cjwt_core::clock::unix_millis)
}

/// Sends `call` for the paused request `waiter` (`dispatch_http_call` as the
/// root context, back to the stream afterwards) and remembers the wait.
pub fn dispatch(shared: &Shared, call: &StoreCall, waiter: &Waiter) -> Result<(), String> {
    if hostcalls::set_effective_context(shared.root_context).is_err() {
        return Err("the root context cannot be made current".into());
    }
    let sent = hostcalls::dispatch_http_call(
        &call.cluster,
        call.headers().to_vec(),
        Some(call.body.as_bytes()),
        vec![],
        Duration::from_millis(call.timeout_ms),
    );
    let _ = hostcalls::set_effective_context(waiter.context);
    let token = sent.map_err(|e| format!("cluster {:?}: dispatch failed ({e:?})", call.cluster))?;
    let mut waits = shared.usage.try_borrow_mut().map_err(|_| "internal".to_string())?;
    waits.push(UsageWait { token, waiter: waiter.clone() });
    Ok(())
}

/// One background refill in flight: the call's token and the refill.
pub struct RefillWait {
    token: u32,
    refill: Refill,
}

/// Starts `refill` (a request's flow handed it out while `current` was the
/// effective context, made current again afterwards).
pub fn start_refill(shared: &Shared, refill: Refill, current: u32) {
    let call = refill.first();
    send_refill(shared, refill, &call, current);
}

/// Sends one call of `refill` as the root context and remembers it; a call
/// that cannot be sent ends the refill at once.
fn send_refill(shared: &Shared, refill: Refill, call: &StoreCall, current: u32) {
    let sent = if hostcalls::set_effective_context(shared.root_context).is_ok() {
        hostcalls::dispatch_http_call(
            &call.cluster,
            call.headers().to_vec(),
            Some(call.body.as_bytes()),
            vec![],
            Duration::from_millis(call.timeout_ms),
        )
        .map_err(|e| format!("cluster {:?}: dispatch failed ({e:?})", call.cluster))
    } else {
        Err("the root context cannot be made current".into())
    };
    let _ = hostcalls::set_effective_context(current);
    match (sent, shared.refills.try_borrow_mut()) {
        (Ok(token), Ok(mut refills)) => refills.push(RefillWait { token, refill }),
        (Err(why), _) => refill_step(shared, refill, refill_failed(&why), current),
        (Ok(_), Err(_)) => refill_step(shared, refill, refill_failed("internal"), current),
    }
}

fn refill_failed(why: &str) -> RefillStep {
    RefillStep::Done(cjwt_core::Counter::UsageStoreRefillFailed, Some(format!("cjwt: refill failed: {why}")))
}

/// Executes a refill's next step: its next call, or its counter and log line.
fn refill_step(shared: &Shared, refill: Refill, step: RefillStep, current: u32) {
    match step {
        RefillStep::Send(call) => send_refill(shared, refill, &call, current),
        RefillStep::Done(counter, line) => {
            shared.metrics.bump(counter);
            if let Some(line) = line {
                log_line(Level::Warn, &line);
            }
        }
    }
}

/// An HTTP call answer: `true` when it was a usage call or a refill (handled here).
pub fn on_response(shared: &Shared, token: u32, body_size: usize) -> bool {
    let refill = match shared.refills.try_borrow_mut() {
        Ok(mut refills) => refills.iter().position(|r| r.token == token).map(|i| refills.swap_remove(i).refill),
        Err(_) => None,
    };
    if let Some(mut refill) = refill {
        let (status, body) = answer(body_size);
        let step = refill.on_answer(&mut SharedDataCounter, status.as_deref(), &body, body_size, now_ms());
        refill_step(shared, refill, step, shared.root_context);
        return true;
    }
    let waiter = match shared.usage.try_borrow_mut() {
        Ok(mut waits) => match waits.iter().position(|w| w.token == token) {
            Some(i) => waits.swap_remove(i).waiter,
            None => return false,
        },
        Err(_) => return false,
    };
    let (status, body) = answer(body_size);
    wake(shared, &waiter, |flow, engine, env| {
        flow.on_answer(engine, env, status.as_deref(), &body, body_size, now_ms())
    });
    true
}

/// The answer of the call being answered: `:status` and body (an answer over
/// the limit is not read: the flow or the refill refuses it by its size).
fn answer(body_size: usize) -> (Option<String>, Vec<u8>) {
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let body = if body_size > StoreCall::MAX_ANSWER_BYTES {
        Vec::new()
    } else {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default()
    };
    (status, body)
}

/// Settles the waits and refills whose answer is more than a second overdue (it will not come).
pub fn on_tick(shared: &Shared) {
    let now = now_ms();
    let late: Vec<RefillWait> = match shared.refills.try_borrow_mut() {
        Ok(mut refills) => {
            let (late, kept) = std::mem::take(&mut *refills).into_iter().partition(|r| r.refill.overdue(now));
            *refills = kept;
            late
        }
        Err(_) => Vec::new(),
    };
    for mut wait in late {
        let step = wait.refill.on_failure("no answer (the call was lost)");
        refill_step(shared, wait.refill, step, shared.root_context);
    }
    let overdue: Vec<UsageWait> = match shared.usage.try_borrow_mut() {
        Ok(mut waits) => {
            let (late, kept) = std::mem::take(&mut *waits)
                .into_iter()
                .partition(|w| w.waiter.flow.try_borrow().is_ok_and(|f| f.store_overdue(now)));
            *waits = kept;
            late
        }
        Err(_) => return,
    };
    for wait in overdue {
        wake(shared, &wait.waiter, |flow, engine, env| {
            flow.on_store_failure(engine, env.host, "no answer (the call was lost)")
        });
    }
    let _ = hostcalls::set_effective_context(shared.root_context);
}

/// Forgets the waits of a stream that ended.
pub fn forget(shared: &Shared, context: u32) {
    if let Ok(mut waits) = shared.usage.try_borrow_mut() {
        waits.retain(|w| w.waiter.context != context);
    }
}
