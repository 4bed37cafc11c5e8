//! Remote JWKS, the host's side: dispatches the calls that the core's
//! [`Fetcher`](cjwt_core::jwks::fetcher::Fetcher) hands out, passes their answers
//! back to it, and counts and logs how each fetch ended. When to fetch, refetch,
//! retry or give up, and which requests wait, is the fetcher's decision.
//!
//! Every entry point returns the requests that a fetch released. The caller
//! (root.rs, or http.rs for an answer delivered to a stream) decides them again
//! with `http::answer_waiters`; nothing here decides a request.
//!
//! Each worker VM fetches for itself: no cross-VM coordination on the request
//! path, at the cost of one fetch per worker per refresh (see docs/spec-deviations.md, decision 14).
//!
//! Every call is dispatched from the root context, whichever callback starts it:
//! a call made from a stream's context answers that stream only, and is lost
//! when the client resets it (SEC-12.3). A call that never answers expires on the tick.

use super::host::host_now;
use super::state::{Shared, Waiter};
use cjwt_core::jwks::fetcher::{Command, FetchOutcome, FetchRequest, Released, WaitDecision};
use cjwt_core::jwks::store::shared_name;
use cjwt_core::outcome::metrics::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

/// Periodic work (from the root context's tick, and once on configuration):
/// gives up calls that never answered, and dispatches every fetch that is due.
/// Returns the requests that waited for the calls given up.
pub fn on_tick(shared: &Shared) -> Vec<Waiter> {
    let Some(now) = host_now() else {
        return Vec::new();
    };
    let commands = match shared.fetcher.try_borrow_mut() {
        Ok(mut fetcher) => fetcher.on_tick(now),
        Err(_) => return Vec::new(),
    };
    let mut released = Vec::new();
    for command in commands {
        match command {
            Command::Dispatch(request) => released.extend(dispatch(shared, request, None, now)),
            Command::Release(ended) => released.extend(finish(shared, ended, None, now)),
        }
    }
    released
}

/// Whether the current request (`waiter`, the stream current now), refused
/// only because `provider` lacks its key, waits (paused) for a key fetch. May
/// start that fetch; if it cannot be dispatched, the request does not wait.
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
        // (no call was in flight), so a failed dispatch releases this request
        // alone, and it is decided now, without waiting.
        WaitDecision::Start(request) => dispatch(shared, request, Some(waiter.context), now).is_empty(),
    }
}

/// Handles a fetch answer (delivered to whichever context dispatched it;
/// `stream`: the stream context current now, if any). Returns the requests it
/// released.
pub fn on_response(shared: &Shared, token: u32, body_size: usize, stream: Option<u32>) -> Vec<Waiter> {
    let Some(now) = host_now() else {
        return Vec::new();
    };
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    let ended = match (shared.engine.try_borrow(), shared.keys.try_borrow_mut(), shared.fetcher.try_borrow_mut()) {
        (Ok(engine), Ok(mut keys), Ok(mut fetcher)) => {
            let ended = fetcher.on_response(token, status.as_deref(), &body, now, &engine.config, &mut keys);
            if let Some(Released { provider, outcome: FetchOutcome::KeysLoaded { .. }, .. }) = &ended {
                // The last good set, for a VM reloaded after a fault or started later (SPEC §12).
                if let Some(name) = shared_name(&engine.config, *provider) {
                    let _ = hostcalls::set_shared_data(&name, Some(&body), None);
                }
            }
            ended
        }
        _ => return Vec::new(),
    };
    ended.map(|ended| finish(shared, ended, stream, now)).unwrap_or_default()
}

/// Loads the last good key set that any VM of this Envoy fetched for each remote
/// provider (SPEC §12): a VM reloaded after a fault, or started after the others,
/// serves with it while its own first fetch runs.
pub fn load_last_good(config: &cjwt_core::config::Config, keys: &mut cjwt_core::jwks::store::KeyStore) {
    for provider in 0..config.providers.len() {
        let Some(name) = shared_name(config, provider) else { continue };
        let Ok((Some(body), _)) = hostcalls::get_shared_data(&name) else { continue };
        match cjwt_core::jwks::parse::parse_remote_jwks(config, provider, &body) {
            Ok(fetched) => {
                log::info!("cjwt: JWKS for provider {provider}: {} key(s) from the last good set", fetched.keys.len());
                keys.set(provider, fetched.keys);
            }
            Err(e) => log::warn!("cjwt: the last good JWKS for provider {provider} is not usable: {e}"),
        }
    }
}

/// Dispatches `request` as the root context and reports it to the fetcher.
/// Returns the requests released when it cannot be dispatched.
fn dispatch(shared: &Shared, request: FetchRequest, stream: Option<u32>, now: i64) -> Vec<Waiter> {
    match send_as_root(shared, &request, stream) {
        Ok(token) => {
            if let Ok(mut fetcher) = shared.fetcher.try_borrow_mut() {
                fetcher.on_dispatched(request.provider, token);
            }
            Vec::new()
        }
        Err(e) => {
            log::warn!(
                "cjwt: JWKS fetch for provider {} not dispatched ({e}); is cluster {:?} defined?",
                request.provider,
                request.cluster
            );
            let ended = match shared.fetcher.try_borrow_mut() {
                Ok(mut fetcher) => fetcher.on_dispatch_failed(request.provider, now),
                Err(_) => return Vec::new(),
            };
            finish(shared, ended, stream, now)
        }
    }
}

/// `dispatch_http_call` as the root context: from a stream (`stream`), the
/// root is made current for the call and the stream again afterwards; from a
/// root callback, the root is current already.
fn send_as_root(shared: &Shared, request: &FetchRequest, stream: Option<u32>) -> Result<u32, String> {
    if stream.is_some() && hostcalls::set_effective_context(shared.root_context).is_err() {
        // Never dispatch from the stream: its answer would die with it.
        return Err("the root context cannot be made current".into());
    }
    let sent = hostcalls::dispatch_http_call(&request.cluster, request.headers(), None, vec![], request.timeout);
    if let Some(stream) = stream {
        let _ = hostcalls::set_effective_context(stream);
    }
    sent.map_err(|e| format!("{e:?}"))
}

/// Logs and counts how a call ended, and dispatches the call that follows it
/// (the key fetch after discovery). Returns the requests released.
fn finish(shared: &Shared, ended: Released<Waiter>, stream: Option<u32>, now: i64) -> Vec<Waiter> {
    let Released { provider, outcome, mut waiters, start } = ended;
    match &outcome {
        FetchOutcome::KeysLoaded { keys, skipped } => {
            log::info!("cjwt: JWKS for provider {provider}: {keys} key(s) loaded, {skipped} skipped");
        }
        FetchOutcome::Discovered { jwks_path } => {
            log::info!("cjwt: OIDC discovery for provider {provider}: JWKS at {jwks_path}");
        }
        FetchOutcome::KeysRefused { reason } => {
            log::warn!("cjwt: JWKS for provider {provider} refused, previous keys kept: {reason}");
        }
        FetchOutcome::DiscoveryRefused { reason } => {
            log::warn!("cjwt: OIDC discovery for provider {provider} failed, previous keys kept: {reason}");
        }
        FetchOutcome::NeverAnswered => log::warn!("cjwt: JWKS fetch for provider {provider} never answered; given up"),
        // Logged where the host refused it, with the host's error.
        FetchOutcome::NotDispatched => {}
    }
    if let Some(ok) = outcome.fetch_ok() {
        shared.metrics.bump(if ok { Counter::JwksFetchOk } else { Counter::JwksFetchFailed });
    }
    if let Some(request) = start {
        waiters.extend(dispatch(shared, request, stream, now));
    }
    waiters
}
