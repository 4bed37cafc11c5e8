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
//! request's flow after each step) is a call of the VM's own, run by the core's
//! background driver over [`Root`]: the stream queues it and brings the root's
//! tick forward ([`super::remote::wake_root`]); the root sends it in its tick (the SDK
//! answers a call to the context whose callback made it, so a call made in a
//! stream's callback is lost with the stream), hands its answer to the driver
//! (which deposits the batch in shared data), and has it settled on the tick if
//! the answer never comes. A stream that ends meanwhile changes nothing.

use super::host::SharedData;
use super::http::wake;
use super::remote::Root;
use super::state::{Shared, Waiter};
use cjwt_core::shared_slots::Slots;
use cjwt_core::{Answer, BackgroundHost, Event, StoreCall};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

/// The host clock in milliseconds (0 when it cannot be read: every deadline has passed).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time().map_or(0, cjwt_core::clock::unix_millis)
}

/// Sends `call` with `dispatch_http_call` as the root context, then makes
/// `current` the effective context again: the call's token, or why it was not sent.
fn send(shared: &Shared, call: &StoreCall, current: u32) -> Result<u64, String> {
    if hostcalls::set_effective_context(shared.root_context).is_err() {
        return Err("the root context cannot be made current".into());
    }
    let timeout = Duration::from_millis(call.timeout_ms);
    let sent =
        hostcalls::dispatch_http_call(&call.cluster, call.headers(), Some(call.body.as_slice()), vec![], timeout);
    let _ = hostcalls::set_effective_context(current);
    sent.map(u64::from).map_err(|e| format!("cluster {:?}: dispatch failed ({e:?})", call.cluster))
}

/// Sends `call` for the paused request `waiter` and remembers the wait.
pub fn dispatch(shared: &Shared, call: &StoreCall, waiter: &Waiter) -> Result<(), String> {
    let token = send(shared, call, waiter.context)?;
    let mut waits = shared.usage.try_borrow_mut().map_err(|_| "internal".to_string())?;
    waits.sent(token, now_ms(), call.timeout_ms, waiter.clone());
    Ok(())
}

/// An HTTP call answer (`trailers`: how many trailers it has): `true` when it
/// was a usage call or a refill (handled here).
pub fn on_response(shared: &Shared, token: u32, body_size: usize, trailers: usize) -> bool {
    let token = u64::from(token);
    if shared.refills.try_borrow().is_ok_and(|r| r.awaits(token)) {
        let answer = read_answer(body_size, trailers);
        Root::new(shared, None).refill_answered(token, &mut Slots(SharedData), &answer.reply(), answer.body_len);
        return true;
    }
    let Some(waiter) = shared.usage.try_borrow_mut().ok().and_then(|mut w| w.answered(token)) else {
        return false;
    };
    let answer = read_answer(body_size, trailers);
    wake(shared, &waiter, Event::Reply(&answer.reply(), answer.body_len));
    true
}

/// The answer of the call being answered, as the host shows it (the core's
/// [`Answer::read`]: gRPC status from the trailers, else the headers; a body
/// over the limit not read). The trailers' map is read only when there are
/// some: without, Envoy answers BadArgument, on which the SDK panics.
fn read_answer(body_size: usize, trailers: usize) -> Answer {
    let header = |map: MapType, name: &str| hostcalls::get_map_value(map, name).ok().flatten();
    Answer::read(
        |name| header(MapType::HttpCallResponseHeaders, name),
        |name| (trailers > 0).then(|| header(MapType::HttpCallResponseTrailers, name)).flatten(),
        body_size,
        |len| hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len).ok().flatten().unwrap_or_default(),
    )
}

/// The root's tick: settles the refills and waits whose answer is more than a
/// second overdue (it will not come), and sends the refills due.
pub fn on_tick(shared: &Shared) {
    Root::new(shared, None).refills_tick();
    for waiter in shared.usage.try_borrow_mut().map(|mut w| w.overdue(now_ms())).unwrap_or_default() {
        wake(shared, &waiter, Event::Lost("no answer (the call was lost)"));
    }
    let _ = hostcalls::set_effective_context(shared.root_context);
}

/// Forgets the waits of a stream that ended.
pub fn forget(shared: &Shared, context: u32) {
    if let Ok(mut waits) = shared.usage.try_borrow_mut() {
        waits.forget(|w| w.context == context);
    }
}
