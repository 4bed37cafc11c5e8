//! Remote key sets and status lists and leased allowances' background
//! refills, the host's side: the core's [`Remote`](cjwt_core::Remote) decides
//! what to fetch, when, by whom, and which requests wait, and its
//! [`BackgroundHost`] driver runs the fetches and the refills; this module
//! gives it the VM's shared data ([`ProxySharing`]) and its host calls ([`Root`]).
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
use super::http::log_line;
use super::state::{Shared, Waiter};
use super::usage::now_ms;
use cjwt_core::{BackgroundHost, Counter, Level, NextValue, Refills, RemoteEnv, Sharing};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
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

/// The VM's background work as the core's driver runs it, in a root callback
/// (`stream`: `None`) or a stream's (the stream context current now). The
/// requests a fetch released are collected in `woken`, for the caller to decide
/// again (`http::answer_waiters`).
pub struct Root<'a> {
    shared: &'a Shared,
    stream: Option<u32>,
    /// The requests to wake.
    pub woken: Vec<Waiter>,
}

impl<'a> Root<'a> {
    /// The VM's background work in the current callback (`stream`, if a stream's).
    pub fn new(shared: &'a Shared, stream: Option<u32>) -> Root<'a> {
        Root { shared, stream, woken: Vec::new() }
    }
}

impl BackgroundHost for Root<'_> {
    type Waiter = Waiter;

    /// The remote, its configuration (the engine's), the key store and the host
    /// clock; `None` without a clock or when one is borrowed (never: one thread).
    fn with_remote<R>(&mut self, step: impl FnOnce(RemoteEnv<'_, Waiter>) -> R) -> Option<R> {
        let (shared, now) = (self.shared, host_now()?);
        let (Ok(engine), Ok(mut keys), Ok(mut remote)) =
            (shared.engine.try_borrow(), shared.keys.try_borrow_mut(), shared.remote.try_borrow_mut())
        else {
            return None;
        };
        let (config, crypto, sharing) = (engine.config(), &shared.crypto, &mut ProxySharing);
        Some(step(RemoteEnv { remote: &mut remote, config, keys: &mut keys, crypto, sharing, now }))
    }

    fn with_refills<R>(&mut self, step: impl FnOnce(&mut Refills) -> R) -> Option<R> {
        self.shared.refills.try_borrow_mut().ok().map(|mut refills| step(&mut refills))
    }

    /// Always as the root context (see the module's documentation; the core
    /// hands a call out in a root callback only), which stays the effective one.
    fn callout(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        ms: u64,
    ) -> Option<Result<u64, String>> {
        if hostcalls::set_effective_context(self.shared.root_context).is_err() {
            return Some(Err("the root context cannot be made current".into()));
        }
        let (body, timeout) = ((!body.is_empty()).then_some(body), Duration::from_millis(ms));
        let sent = hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout);
        Some(sent.map(u64::from).map_err(|e| format!("{e:?}")))
    }

    fn log(&mut self, level: Level, line: &str) {
        log_line(level, line);
    }

    fn count(&mut self, counter: Counter) {
        self.shared.metrics.bump(counter);
    }

    fn wake(&mut self, waiter: Waiter) {
        self.woken.push(waiter);
    }

    fn wake_main(&mut self) {
        wake_root(self.shared, self.stream);
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// The root's tick: sets the period back if a request brought it forward,
/// then the remote's periodic work. Returns the requests released.
pub fn on_tick(shared: &Shared) -> Vec<Waiter> {
    if shared.woken.replace(false) {
        let _ = hostcalls::set_tick_period(TICK_PERIOD);
    }
    let mut root = Root::new(shared, None);
    root.tick();
    root.woken
}

/// An HTTP call answered that was no usage call nor refill (`stream`: the
/// stream context it was delivered to, `None` for the root): a fetch's, if
/// any. Returns the requests it released.
pub fn on_response(shared: &Shared, token: u32, body_size: usize, stream: Option<u32>) -> Vec<Waiter> {
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    let mut root = Root::new(shared, stream);
    root.fetch_answered(u64::from(token), status.as_deref(), &body, stream.is_none());
    root.woken
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
