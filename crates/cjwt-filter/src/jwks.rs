//! Remote JWKS, the host's side: dispatches the calls that the core's
//! [`Fetcher`](cjwt_core::jwks::fetcher::Fetcher) hands out, passes their answers
//! back to it, and counts and logs how each fetch ended. When to fetch, refetch,
//! retry or give up, and which requests wait, is the fetcher's decision.
//!
//! Every entry point returns the requests that a fetch released. The caller
//! (root.rs, or http.rs for an answer delivered to a stream) decides them again
//! with `http::answer_waiters`; nothing here decides a request.
//!
//! One fetch per Envoy (SPEC §12): the worker VMs share each provider's key set
//! in proxy-wasm shared data — the body under [`shared_name`], its version and
//! fetch time under `<name>.v` — and take turns fetching through a lease under
//! `<name>.lease` (a deadline and the holder's tag, taken with compare-and-swap).
//! A VM whose fetch is due but finds the lease held waits for the holder's set;
//! a VM takes over a newer set on its tick (every 200 ms) and before it makes a
//! request wait for keys, so no worker refuses a token another worker accepts
//! for longer than that. Nothing is read from shared data on the request path of
//! a request that has its keys.
//!
//! Every call is dispatched from a root-context callback (the tick, or a fetch
//! answer): the proxy-wasm SDK (0.2) files a call under the context whose
//! callback is running, whatever the effective context, and delivers its answer
//! there only, so a call dispatched in a stream's callback dies with the stream
//! when the client resets it (SEC-12.3, issue 24). A request whose unknown `kid`
//! starts a fetch records the call in [`Shared::wanted`] and brings the root's
//! next tick forward ([`WAKE_PERIOD`]); that tick dispatches it and sets the
//! period back to [`TICK_PERIOD`]. A call that never answers expires on the tick.

use super::host::host_now;
use super::lease::{lease_held_by_other, release_lease, take_lease};
use super::state::{Shared, Waiter};
use cjwt_core::jwks::fetcher::{Command, FetchOutcome, FetchRequest, Released, WaitDecision, STALE_MARGIN_SECONDS};
use cjwt_core::jwks::store::shared_name;
use cjwt_core::lifecycle::remote::{key_fetch_ended, not_dispatched};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

/// The root context's tick: key sets other VMs shared, refreshes, calls given up.
pub const TICK_PERIOD: Duration = Duration::from_millis(200);

/// The tick while a stream waits for the root to dispatch the fetch it started
/// (the next tick comes this soon; the root then sets [`TICK_PERIOD`] again).
pub const WAKE_PERIOD: Duration = Duration::from_millis(1);

/// The root's tick: dispatches the fetches streams started ([`Shared::wanted`])
/// and, if a stream brought this tick forward, sets the tick period back. A
/// set another VM shared meanwhile is taken over first, which ends the fetch it
/// makes needless (one fetch per Envoy: the other VM may have given its lease
/// back in between). Returns the requests released.
pub fn dispatch_wanted(shared: &Shared) -> Vec<Waiter> {
    if shared.woken.replace(false) {
        let _ = hostcalls::set_tick_period(TICK_PERIOD);
    }
    let wanted = match shared.wanted.try_borrow_mut() {
        Ok(mut wanted) => std::mem::take(&mut *wanted),
        Err(_) => return Vec::new(),
    };
    let Some(now) = host_now() else {
        // Never dispatched: given up on a later tick (timeout + margin), waiters released then.
        return Vec::new();
    };
    let mut released = adopt_all(shared, now);
    for request in wanted {
        if shared.fetcher.try_borrow().is_ok_and(|f| f.awaits_dispatch(request.provider)) {
            released.extend(dispatch(shared, request, now));
        }
    }
    released
}

/// From a stream (`stream`, current now): records `request` for the root
/// context to dispatch, and brings the root's next tick forward. When it
/// cannot be recorded, the fetcher is told it was not dispatched: returns the
/// requests that released.
fn ask_root(shared: &Shared, request: FetchRequest, stream: u32, now: i64) -> Vec<Waiter> {
    let provider = request.provider;
    let recorded = match shared.wanted.try_borrow_mut() {
        Ok(mut wanted) => {
            wanted.push(request);
            true
        }
        Err(_) => false,
    };
    if !recorded {
        let ended = match shared.fetcher.try_borrow_mut() {
            Ok(mut fetcher) => fetcher.on_dispatch_failed(provider, now),
            Err(_) => return Vec::new(),
        };
        return finish(shared, ended, Some(stream), now);
    }
    if !shared.woken.replace(true) {
        // The tick period is the root context's: set it as the root, then the stream again.
        let _ = hostcalls::set_effective_context(shared.root_context);
        let _ = hostcalls::set_tick_period(WAKE_PERIOD);
        let _ = hostcalls::set_effective_context(stream);
    }
    Vec::new()
}

/// Periodic work (from the root context's tick, and once on configuration):
/// gives up calls that never answered, and dispatches every fetch that is due.
/// Returns the requests that waited for the calls given up.
pub fn on_tick(shared: &Shared) -> Vec<Waiter> {
    let Some(now) = host_now() else {
        return Vec::new();
    };
    let mut adopted = adopt_all(shared, now);
    // A fetch another VM held and gave back without a set: released here too.
    let providers = shared.engine.try_borrow().map_or(0, |e| e.config.providers.len());
    for provider in 0..providers {
        let Some(name) = shared.engine.try_borrow().ok().and_then(|e| shared_name(&e.config, provider)) else {
            continue;
        };
        let elsewhere = shared.fetcher.try_borrow().is_ok_and(|f| f.is_elsewhere(provider));
        if elsewhere && !lease_held_by_other(&name, shared.lease_tag, now) {
            let ended = shared.fetcher.try_borrow_mut().ok().and_then(|mut f| f.on_elsewhere_ended(provider, now));
            if let Some(ended) = ended {
                adopted.extend(finish(shared, ended, None, now));
            }
        }
    }
    let commands = match shared.fetcher.try_borrow_mut() {
        Ok(mut fetcher) => fetcher.on_tick(now),
        Err(_) => return Vec::new(),
    };
    let mut released = adopted;
    for command in commands {
        match command {
            Command::Dispatch(request) => released.extend(dispatch(shared, request, now)),
            Command::Release(ended) => released.extend(finish(shared, ended, None, now)),
        }
    }
    released
}

/// Whether the current request (`waiter`, the stream current now), refused
/// only because `provider` lacks its key, waits (paused) for a key fetch. May
/// start that fetch (the root context dispatches it); if it cannot, the
/// request does not wait.
pub fn wait_for_keys(shared: &Shared, provider: usize, waiter: Option<&Waiter>) -> bool {
    let (Some(waiter), Some(now)) = (waiter, host_now()) else {
        return false;
    };
    let decision = match shared.fetcher.try_borrow_mut() {
        Ok(mut fetcher) => fetcher.wait_for_keys(provider, waiter.clone(), now),
        Err(_) => return false,
    };
    match decision {
        WaitDecision::Wait => true,
        WaitDecision::DoNotWait => false,
        // The fetcher registered the request with this call. Nobody else waits
        // (no call was in flight), so a call that cannot be handed to the root
        // releases this request alone, and it is decided now, without waiting.
        WaitDecision::Start(request) => ask_root(shared, request, waiter.context, now).is_empty(),
    }
}

/// Handles a fetch answer (delivered to the root context, which dispatched
/// it; `stream`: the stream context current now, were one delivered to a
/// stream). Returns the requests it released.
pub fn on_response(shared: &Shared, token: u32, body_size: usize, stream: Option<u32>) -> Vec<Waiter> {
    let Some(now) = host_now() else {
        return Vec::new();
    };
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    let ended = match (shared.engine.try_borrow(), shared.keys.try_borrow_mut(), shared.fetcher.try_borrow_mut()) {
        (Ok(engine), Ok(mut keys), Ok(mut fetcher)) => {
            let ended = fetcher.on_response(token, status.as_deref(), &body, now, &engine.config, &mut keys);
            if let Some(Released { provider, outcome, .. }) = &ended {
                if let Some(name) = shared_name(&engine.config, *provider) {
                    if let FetchOutcome::KeysLoaded { .. } = outcome {
                        // The set for every VM of this Envoy, and for a VM reloaded after a fault (SPEC §12).
                        let version = publish(&name, &body, now);
                        fetcher.set_version(*provider, version);
                    }
                    if outcome.fetch_ok().is_some() {
                        release_lease(&name, shared.lease_tag);
                    }
                }
            }
            ended
        }
        _ => return Vec::new(),
    };
    ended.map(|ended| finish(shared, ended, stream, now)).unwrap_or_default()
}

/// Takes over every key set another VM shared that is newer than the one in use
/// (on configuration: a VM reloaded after a fault, or started after the others,
/// begins with the last good set). Returns the requests released.
pub fn adopt_all(shared: &Shared, now: i64) -> Vec<Waiter> {
    let providers = shared.engine.try_borrow().map_or(0, |e| e.config.providers.len());
    (0..providers).flat_map(|provider| adopt_shared(shared, provider, now).unwrap_or_default()).collect()
}

/// Takes over the key set another VM of this Envoy shared for `provider`, if it
/// is newer than the one in use (a VM reloaded after a fault, or started after
/// the others, begins with it: SPEC §12). Returns the requests it released, or
/// `None` when nothing was taken over.
pub fn adopt_shared(shared: &Shared, provider: usize, now: i64) -> Option<Vec<Waiter>> {
    let (Ok(engine), Ok(mut keys), Ok(mut fetcher)) =
        (shared.engine.try_borrow(), shared.keys.try_borrow_mut(), shared.fetcher.try_borrow_mut())
    else {
        return None;
    };
    let name = shared_name(&engine.config, provider)?;
    let (version, fetched_at) = read_version(&name)?;
    if version == fetcher.version(provider) {
        return None;
    }
    let Ok((Some(body), _)) = hostcalls::get_shared_data(&name) else { return None };
    match fetcher.adopt(provider, &body, version, fetched_at, now, &engine.config, &mut keys)? {
        Ok(released) => {
            shared.apply(key_fetch_ended(provider, &released.outcome));
            Some(released.waiters)
        }
        Err(e) => {
            log::warn!("cjwt: the shared JWKS for provider {provider} is not usable: {e}");
            None
        }
    }
}

/// Shares a key set this VM fetched: the body, then its version (the time of
/// the fetch in ms, and that time in seconds). Returns the version.
fn publish(name: &str, body: &[u8], now: i64) -> u64 {
    let version = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(1).max(1));
    let _ = hostcalls::set_shared_data(name, Some(body), None);
    let mut v = version.to_le_bytes().to_vec();
    v.extend_from_slice(&now.to_le_bytes());
    let _ = hostcalls::set_shared_data(&format!("{name}.v"), Some(&v), None);
    version
}

/// The version and fetch time (Unix s) of the set shared under `name`.
fn read_version(name: &str) -> Option<(u64, i64)> {
    let Ok((Some(v), _)) = hostcalls::get_shared_data(&format!("{name}.v")) else { return None };
    let version = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let fetched_at = i64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    Some((version, fetched_at))
}

/// Dispatches `request` and reports it to the fetcher; called in root-context
/// callbacks only (see the module's documentation). Returns the requests
/// released when it cannot be dispatched.
fn dispatch(shared: &Shared, request: FetchRequest, now: i64) -> Vec<Waiter> {
    // One fetch per Envoy: the VM that holds the provider's lease fetches; the
    // others wait for its set (taken over on their tick).
    let name = shared.engine.try_borrow().ok().and_then(|e| shared_name(&e.config, request.provider));
    let deadline =
        now.saturating_add(i64::try_from(request.timeout.as_secs()).unwrap_or(60)).saturating_add(STALE_MARGIN_SECONDS);
    if let Some(name) = &name {
        if !take_lease(name, shared.lease_tag, now, deadline) {
            if let Ok(mut fetcher) = shared.fetcher.try_borrow_mut() {
                fetcher.on_fetching_elsewhere(request.provider, deadline);
            }
            return Vec::new();
        }
    }
    // The root is the running context; make it the effective one too (a waiter
    // decided on this tick may have been made current).
    let _ = hostcalls::set_effective_context(shared.root_context);
    let sent = hostcalls::dispatch_http_call(&request.cluster, request.headers(), None, vec![], request.timeout);
    match sent.map_err(|e| format!("{e:?}")) {
        Ok(token) => {
            if let Ok(mut fetcher) = shared.fetcher.try_borrow_mut() {
                fetcher.on_dispatched(request.provider, token);
            }
            Vec::new()
        }
        Err(e) => {
            let what = format!("JWKS for provider {}", request.provider);
            shared.apply([not_dispatched(&what, &request.cluster, &e)]);
            if let Some(name) = &name {
                release_lease(name, shared.lease_tag);
            }
            let ended = match shared.fetcher.try_borrow_mut() {
                Ok(mut fetcher) => fetcher.on_dispatch_failed(request.provider, now),
                Err(_) => return Vec::new(),
            };
            finish(shared, ended, None, now)
        }
    }
}

/// Logs and counts how a call ended, and dispatches the call that follows it
/// (the key fetch after discovery; from a stream, `stream`, it is handed to the
/// root). Returns the requests released.
fn finish(shared: &Shared, ended: Released<Waiter>, stream: Option<u32>, now: i64) -> Vec<Waiter> {
    let Released { provider, outcome, mut waiters, start } = ended;
    shared.apply(key_fetch_ended(provider, &outcome));
    if let Some(request) = start {
        waiters.extend(match stream {
            Some(stream) => ask_root(shared, request, stream, now),
            None => dispatch(shared, request, now),
        });
    }
    waiters
}
