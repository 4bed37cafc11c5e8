//! Leased allowances' background refills in the native build: the core's
//! [`Refills`](cjwt_core::Refills) registry, its calls sent as
//! configuration-level callouts, so that no stream's end cancels them (a
//! stream's callout is cancelled with its stream) and an answer joins the
//! process's allowance whatever became of the request that started it. Envoy
//! allows configuration callouts only on the main thread: a worker queues the
//! refill and commits [`EVENT_REFILL`]; the main thread sends the calls due,
//! receives their answers (or Envoy's failure at the timeout: none is lost) and
//! hands them to the registry, which deposits the batch in
//! [`cjwt_core::ProcessCounter`]. Nothing here decides.

use crate::config::Shared;
use crate::ffi::{log, CalloutAnswer, ConfigHandle, Level};
use crate::stream::{now_ms, reply};
use cjwt_core::Refill;

/// Config scheduler event: send the refills workers queued.
pub const EVENT_REFILL: u64 = 3;

/// A worker's request started `refill`: queue it and wake the main thread.
pub fn queue(shared: &Shared, refill: Refill) {
    if let Ok(mut refills) = shared.refills.lock() {
        refills.queue(refill);
    }
    shared.commit(EVENT_REFILL);
}

/// [`EVENT_REFILL`] on the main thread: sends every refill call due, then
/// counts and logs the refills that ended. The lock is not held while Envoy
/// starts a callout (it may answer inline).
pub fn on_scheduled(shared: &Shared, handle: ConfigHandle<'_>) {
    for due in shared.refills.lock().map(|mut r| r.take_due()).unwrap_or_default() {
        let call = due.call();
        let sent = handle
            .callout(&call.cluster, &call.headers(), &call.body, call.timeout_ms)
            .ok_or_else(|| format!("cluster {:?}: callout not started", call.cluster));
        if let Ok(mut refills) = shared.refills.lock() {
            refills.sent(due, sent, now_ms());
        }
    }
    for (counter, line) in shared.refills.lock().map(|mut r| r.take_ended()).unwrap_or_default() {
        if let Some(Some(id)) = shared.counters.get(counter.index()) {
            handle.increment(*id, 1);
        }
        if let Some(line) = line {
            log(Level::Warn, &line);
        }
    }
}

/// A configuration callout answered (main thread): `true` when it was a
/// refill's (then its next call, if any, is sent at once).
pub fn on_callout_done(shared: &Shared, handle: ConfigHandle<'_>, callout: u64, answer: &CalloutAnswer<'_>) -> bool {
    let answered = shared.refills.lock().is_ok_and(|mut refills| {
        refills.on_reply(callout, &mut { shared.usage }, &reply(answer), answer.body_len, now_ms())
    });
    if answered {
        on_scheduled(shared, handle);
    }
    answered
}
