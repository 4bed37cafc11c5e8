//! Remote key sets and status lists, the host's side: the core's
//! [`Remote`](cjwt_core::Remote) decides what to fetch,
//! when, by whom, and which requests wait; this module gives it the VM's
//! shared data ([`ProxySharing`]) and executes the effects it returns.
//!
//! One fetch per Envoy (SPEC §12): the worker VMs share each source's last
//! good copy in proxy-wasm shared data and take turns fetching through a lease.
//!
//! Every call is dispatched from a root-context callback (the tick, or a fetch
//! answer): the proxy-wasm SDK (0.2) files a call under the context whose
//! callback is running, whatever the effective context, and delivers its answer
//! there only, so a call dispatched in a stream's callback dies with the stream
//! when the client resets it (SEC-12.3, issue 24). A request whose unknown
//! `kid` starts a fetch gets [`Effect::WakeMain`]: the root's next tick is
//! brought forward to [`WAKE_PERIOD`], dispatches it, and sets [`TICK_PERIOD`]
//! again.

use super::host::host_now;
use super::state::{Shared, Waiter};
use cjwt_core::{Config, Effect, Fetched, KeyWait, NextValue, Remote, Sharing};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::collections::VecDeque;
use std::time::Duration;

/// The root context's tick: shared sets and lists, refreshes, calls given up.
pub const TICK_PERIOD: Duration = Duration::from_millis(200);

/// The tick while a fetch a request started waits for the root (the next tick
/// comes this soon; the root then sets [`TICK_PERIOD`] again).
pub const WAKE_PERIOD: Duration = Duration::from_millis(1);

/// Proxy-wasm shared data: every VM of this Envoy with the same `vm_id`.
pub struct ProxySharing;

impl Sharing for ProxySharing {
    fn get(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(name).ok().and_then(|(value, _)| value)
    }

    fn set(&mut self, name: &str, value: &[u8]) {
        let _ = hostcalls::set_shared_data(name, Some(value), None);
    }

    fn update(&mut self, name: &str, next: &mut NextValue<'_>) -> bool {
        let Ok((current, cas)) = hostcalls::get_shared_data(name) else { return false };
        let Some(value) = next(current.as_deref()) else { return false };
        hostcalls::set_shared_data(name, Some(&value), cas).is_ok()
    }
}

/// Runs `f` with the VM's remote, its configuration, the key store and the
/// host clock; `None` without a clock or when one is borrowed (never: one thread).
fn with_remote<R>(shared: &Shared, f: impl FnOnce(&mut Remote<Waiter>, &Config, &mut Fetched, i64) -> R) -> Option<R> {
    let now = host_now()?;
    let (Ok(engine), Ok(mut keys), Ok(mut remote)) =
        (shared.engine.try_borrow(), shared.keys.try_borrow_mut(), shared.remote.try_borrow_mut())
    else {
        return None;
    };
    Some(f(&mut remote, engine.config(), &mut keys, now))
}

/// On configuration: the key sets and lists other VMs loaded (SPEC §12). Its
/// own first fetches are the first tick's, 200 ms on: the VM Envoy configures
/// first on the main thread never receives answers and must not take a lease.
pub fn on_configure(shared: &Shared) {
    let effects = with_remote(shared, |remote, config, keys, now| {
        remote.on_configure(now, config, keys, &shared.crypto, &mut ProxySharing)
    });
    // Nobody waits yet: nothing is released.
    let _ = execute(shared, effects.unwrap_or_default(), None);
}

/// The root's tick: sets the period back if a request brought it forward,
/// then the remote's periodic work. Returns the requests released.
pub fn on_tick(shared: &Shared) -> Vec<Waiter> {
    if shared.woken.replace(false) {
        let _ = hostcalls::set_tick_period(TICK_PERIOD);
    }
    let effects = with_remote(shared, |remote, config, keys, now| {
        remote.on_tick(now, config, keys, &shared.crypto, &mut ProxySharing)
    });
    execute(shared, effects.unwrap_or_default(), None)
}

/// A request (the stream `waiter`, current now) lacks `provider`'s keys:
/// whether it waits, and the requests a set taken over released.
pub fn wait_for_keys(shared: &Shared, provider: usize, waiter: &Waiter) -> (KeyWait, Vec<Waiter>) {
    let asked = with_remote(shared, |remote, config, keys, now| {
        remote.wait_for_keys(provider, waiter.clone(), now, config, keys, &mut ProxySharing)
    });
    let Some((wait, effects)) = asked else { return (KeyWait::DoNotWait, Vec::new()) };
    (wait, execute(shared, effects, Some(waiter.context)))
}

/// An HTTP call answered (`stream`: the stream context it was delivered to,
/// `None` for the root). `None` when it was not a fetch; else the requests
/// it released.
pub fn on_response(shared: &Shared, token: u32, body_size: usize, stream: Option<u32>) -> Option<Vec<Waiter>> {
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    let effects = with_remote(shared, |remote, config, keys, now| {
        let (status, sharing) = (status.as_deref(), &mut ProxySharing);
        remote.on_answer(token, status, &body, now, config, keys, &shared.crypto, sharing, stream.is_none())
    })??;
    Some(execute(shared, effects, stream))
}

/// Brings the root's next tick forward to [`WAKE_PERIOD`] (once until it
/// runs): the tick period is the root context's, so it is set as the root,
/// then `stream` (the stream current now, if any) is made current again.
pub fn wake_root(shared: &Shared, stream: Option<u32>) {
    if !shared.woken.replace(true) {
        let _ = hostcalls::set_effective_context(shared.root_context);
        let _ = hostcalls::set_tick_period(WAKE_PERIOD);
        if let Some(stream) = stream {
            let _ = hostcalls::set_effective_context(stream);
        }
    }
}

/// Executes the remote's effects (`stream`: the stream context current now,
/// `None` in a root callback): dispatches calls and reports them back, logs,
/// counts, brings the root's tick forward. Returns the requests to wake.
fn execute(shared: &Shared, effects: Vec<Effect<Waiter>>, stream: Option<u32>) -> Vec<Waiter> {
    let mut woken = Vec::new();
    let mut queue: VecDeque<Effect<Waiter>> = effects.into();
    while let Some(effect) = queue.pop_front() {
        match effect {
            Effect::Log(level, line) => super::http::log_line(level, &line),
            Effect::Count(counter) => shared.metrics.bump(counter),
            Effect::Wake(waiter) => woken.push(waiter),
            Effect::WakeMain => wake_root(shared, stream),
            Effect::Dispatch(call) => {
                // Only a root callback dispatches (see the module's documentation); the root
                // is the running context, make it the effective one too.
                let _ = hostcalls::set_effective_context(shared.root_context);
                let sent = hostcalls::dispatch_http_call(call.cluster(), call.headers(), None, vec![], call.timeout());
                let Ok(mut remote) = shared.remote.try_borrow_mut() else { continue };
                let (sent, now) = (sent.map_err(|e| format!("{e:?}")), host_now().unwrap_or(0));
                queue.extend(remote.dispatched(&call, sent, now, &mut ProxySharing));
            }
        }
    }
    woken
}
