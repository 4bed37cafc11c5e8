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

use super::http::wake;
use super::state::{Shared, Waiter};
use cjwt_core::usage::etcd::EtcdReply;
use cjwt_core::StoreCall;
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

/// An HTTP call answer (`trailers`: how many trailers it has): `true` when it
/// was a usage call (handled here).
pub fn on_response(shared: &Shared, token: u32, body_size: usize, trailers: usize) -> bool {
    let waiter = match shared.usage.try_borrow_mut() {
        Ok(mut waits) => match waits.iter().position(|w| w.token == token) {
            Some(i) => waits.swap_remove(i).waiter,
            None => return false,
        },
        Err(_) => return false,
    };
    let header = |map: MapType, name: &str| hostcalls::get_map_value(map, name).ok().flatten();
    let status = header(MapType::HttpCallResponseHeaders, ":status");
    // gRPC: the status is in the trailers, or in the headers of a trailers-only answer.
    // The trailers' map is read only when there are some: without, Envoy answers
    // BadArgument, on which the SDK panics.
    let grpc = |name: &str| {
        (trailers > 0)
            .then(|| header(MapType::HttpCallResponseTrailers, name))
            .flatten()
            .or_else(|| header(MapType::HttpCallResponseHeaders, name))
    };
    let (grpc_status, grpc_message) = (grpc("grpc-status"), grpc("grpc-message"));
    // An answer over the limit is not read: the flow refuses it by its size.
    let body = if body_size > StoreCall::MAX_ANSWER_BYTES {
        Vec::new()
    } else {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default()
    };
    wake(shared, &waiter, |flow, engine, env| {
        let reply = EtcdReply {
            status: status.as_deref(),
            grpc_status: grpc_status.as_deref(),
            grpc_message: grpc_message.as_deref(),
            body: &body,
        };
        flow.on_reply(engine, env, &reply, body_size, now_ms())
    });
    true
}

/// Settles the waits whose answer is more than a second overdue (it will not come).
pub fn on_tick(shared: &Shared) {
    let now = now_ms();
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
