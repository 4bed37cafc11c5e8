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
//! request's flow after each step) is a call of the VM's own: the stream queues
//! it and brings the root's tick forward ([`WAKE_PERIOD`]); the root sends it in
//! its tick (the SDK answers a call to the context whose callback made it, so a
//! call made in a stream's callback is lost with the stream), remembers it apart
//! from any stream, hands its answer to the refill (which deposits the batch in
//! shared data), and settles it on the tick if the answer never comes. A stream
//! that ends meanwhile changes nothing.

use super::host::SharedDataCounter;
use super::http::log_line;
use super::http::wake;
use super::remote::WAKE_PERIOD;
use super::state::{Shared, Waiter};
use cjwt_core::usage::etcd::EtcdReply;
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
        Some(call.body.as_slice()),
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

/// The VM's background refills: queued by streams, in flight from the root.
#[derive(Default)]
pub struct Refills {
    queued: Vec<Refill>,
    in_flight: Vec<RefillWait>,
}

/// Queues `refill` (a request's flow handed it out while `current` was the
/// effective context) and brings the root's tick forward: only a call made in a
/// root callback is answered to the root (the SDK answers a call to the context
/// whose callback made it, and a stream's may be gone by then).
pub fn start_refill(shared: &Shared, refill: Refill, current: u32) {
    if let Ok(mut refills) = shared.refills.try_borrow_mut() {
        refills.queued.push(refill);
    }
    if !shared.woken.replace(true) {
        // The tick period is the root context's: set it as the root, then the stream again.
        let _ = hostcalls::set_effective_context(shared.root_context);
        let _ = hostcalls::set_tick_period(WAKE_PERIOD);
        let _ = hostcalls::set_effective_context(current);
    }
}

/// Sends one call of `refill` (in a root callback) and remembers it; a call
/// that cannot be sent ends the refill at once.
fn send_refill(shared: &Shared, mut refill: Refill, call: &StoreCall) {
    let _ = hostcalls::set_effective_context(shared.root_context);
    let sent = hostcalls::dispatch_http_call(
        &call.cluster,
        call.headers().to_vec(),
        Some(call.body.as_slice()),
        vec![],
        Duration::from_millis(call.timeout_ms),
    );
    match (sent, shared.refills.try_borrow_mut()) {
        (Ok(token), Ok(mut refills)) => refills.in_flight.push(RefillWait { token, refill }),
        (Err(e), _) => {
            let step = refill.on_failure(&format!("cluster {:?}: dispatch failed ({e:?})", call.cluster));
            refill_step(shared, refill, step);
        }
        (Ok(_), Err(_)) => {
            let step = refill.on_failure("internal");
            refill_step(shared, refill, step);
        }
    }
}

/// Executes a refill's next step: its next call, or its counter and log line.
fn refill_step(shared: &Shared, refill: Refill, step: RefillStep) {
    match step {
        RefillStep::Send(call) => send_refill(shared, refill, &call),
        RefillStep::Done(counter, line) => {
            shared.metrics.bump(counter);
            if let Some(line) = line {
                log_line(Level::Warn, &line);
            }
        }
    }
}

/// An HTTP call answer (`trailers`: how many trailers it has): `true` when it
/// was a usage call or a refill (handled here).
pub fn on_response(shared: &Shared, token: u32, body_size: usize, trailers: usize) -> bool {
    let refill = match shared.refills.try_borrow_mut() {
        Ok(mut refills) => {
            let at = refills.in_flight.iter().position(|r| r.token == token);
            at.map(|i| refills.in_flight.swap_remove(i).refill)
        }
        Err(_) => None,
    };
    if let Some(mut refill) = refill {
        let answer = Answer::read(body_size, trailers);
        let step = refill.on_reply(&mut SharedDataCounter, &answer.reply(), body_size, now_ms());
        refill_step(shared, refill, step);
        return true;
    }
    let waiter = match shared.usage.try_borrow_mut() {
        Ok(mut waits) => match waits.iter().position(|w| w.token == token) {
            Some(i) => waits.swap_remove(i).waiter,
            None => return false,
        },
        Err(_) => return false,
    };
    let answer = Answer::read(body_size, trailers);
    wake(shared, &waiter, |flow, engine, env| flow.on_reply(engine, env, &answer.reply(), body_size, now_ms()));
    true
}

/// The answer of the call being answered, as the host shows it.
struct Answer {
    status: Option<String>,
    grpc_status: Option<String>,
    grpc_message: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    /// `:status`, the gRPC status (in the trailers, or in the headers of a
    /// trailers-only answer) and the body (an answer over the limit is not
    /// read: the flow or the refill refuses it by its size). The trailers' map
    /// is read only when there are some: without, Envoy answers BadArgument,
    /// on which the SDK panics.
    fn read(body_size: usize, trailers: usize) -> Answer {
        let header = |map: MapType, name: &str| hostcalls::get_map_value(map, name).ok().flatten();
        let grpc = |name: &str| {
            (trailers > 0)
                .then(|| header(MapType::HttpCallResponseTrailers, name))
                .flatten()
                .or_else(|| header(MapType::HttpCallResponseHeaders, name))
        };
        let body = if body_size > StoreCall::MAX_ANSWER_BYTES {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default()
        };
        Answer {
            status: header(MapType::HttpCallResponseHeaders, ":status"),
            grpc_status: grpc("grpc-status"),
            grpc_message: grpc("grpc-message"),
            body,
        }
    }

    fn reply(&self) -> EtcdReply<'_> {
        EtcdReply {
            status: self.status.as_deref(),
            grpc_status: self.grpc_status.as_deref(),
            grpc_message: self.grpc_message.as_deref(),
            body: &self.body,
        }
    }
}

/// The root's tick: sends the refills queued, settles the waits and refills
/// whose answer is more than a second overdue (it will not come).
pub fn on_tick(shared: &Shared) {
    let now = now_ms();
    let (queued, late): (Vec<Refill>, Vec<RefillWait>) = match shared.refills.try_borrow_mut() {
        Ok(mut refills) => {
            let (late, kept) = std::mem::take(&mut refills.in_flight).into_iter().partition(|r| r.refill.overdue(now));
            refills.in_flight = kept;
            (std::mem::take(&mut refills.queued), late)
        }
        Err(_) => (Vec::new(), Vec::new()),
    };
    for refill in queued {
        let call = refill.first();
        send_refill(shared, refill, &call);
    }
    for mut wait in late {
        let step = wait.refill.on_failure("no answer (the call was lost)");
        refill_step(shared, wait.refill, step);
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
