//! Leased allowances' background refills in the native build: the core's
//! [`Refill`] sent as a configuration-level callout, so that no stream's end
//! cancels it (a stream's callout is cancelled with its stream) and its answer
//! joins the process's allowance whatever became of the request that started
//! it. Envoy allows configuration callouts only on the main thread: a worker
//! queues the refill and commits [`EVENT_REFILL`]; the main thread sends it,
//! receives its answer (or Envoy's failure at its timeout) and hands it to the
//! refill, which deposits the batch in [`cjwt_core::ProcessCounter`]. Nothing
//! here decides.

use crate::config::Shared;
use crate::ffi::{log, CalloutAnswer, ConfigHandle, Level};
use cjwt_core::{Refill, RefillStep, StoreCall};
use std::sync::Mutex;

/// Config scheduler event: send the refills workers queued.
pub const EVENT_REFILL: u64 = 3;

/// The refills of one configuration: queued by workers, in flight on the main thread.
#[derive(Default)]
pub struct Refills {
    queued: Vec<Refill>,
    in_flight: Vec<(u64, Refill)>,
}

/// A worker's request started `refill`: queue it and wake the main thread.
pub fn queue(shared: &Shared, refill: Refill) {
    if let Ok(mut refills) = shared.refills.lock() {
        refills.queued.push(refill);
    }
    shared.commit(EVENT_REFILL);
}

/// [`EVENT_REFILL`] on the main thread: sends every refill queued.
pub fn on_scheduled(shared: &Shared, handle: ConfigHandle<'_>) {
    let queued = match shared.refills.lock() {
        Ok(mut refills) => std::mem::take(&mut refills.queued),
        Err(_) => return,
    };
    for refill in queued {
        let call = refill.first();
        send(shared, handle, refill, &call);
    }
}

/// A configuration callout answered (main thread): `true` when it was a refill's.
pub fn on_callout_done(shared: &Shared, handle: ConfigHandle<'_>, callout: u64, answer: &CalloutAnswer<'_>) -> bool {
    let found = match shared.refills.lock() {
        Ok(mut refills) => {
            refills.in_flight.iter().position(|(id, _)| *id == callout).map(|i| refills.in_flight.swap_remove(i).1)
        }
        Err(_) => None,
    };
    let Some(mut refill) = found else {
        return false;
    };
    let step = refill.on_reply(&mut { shared.usage }, &crate::stream::reply(answer), answer.body_len, now_ms());
    next(shared, handle, refill, step);
    true
}

fn send(shared: &Shared, handle: ConfigHandle<'_>, mut refill: Refill, call: &StoreCall) {
    match handle.callout(&call.cluster, &call.headers(), &call.body, call.timeout_ms) {
        Some(id) => {
            if let Ok(mut refills) = shared.refills.lock() {
                refills.in_flight.push((id, refill));
            }
        }
        None => {
            let step = refill.on_failure(&format!("cluster {:?}: callout not started", call.cluster));
            next(shared, handle, refill, step);
        }
    }
}

/// Executes a refill's next step: its next call, or its counter and log line.
fn next(shared: &Shared, handle: ConfigHandle<'_>, refill: Refill, step: RefillStep) {
    match step {
        RefillStep::Send(call) => send(shared, handle, refill, &call),
        RefillStep::Done(counter, line) => {
            if let Some(Some(id)) = shared.counters.get(counter.index()) {
                handle.increment(*id, 1);
            }
            if let Some(line) = line {
                log(Level::Warn, &line);
            }
        }
    }
}

fn now_ms() -> u64 {
    cjwt_core::clock::unix_millis(std::time::SystemTime::now())
}

/// The refills of a configuration, behind their lock.
pub type Lock = Mutex<Refills>;
