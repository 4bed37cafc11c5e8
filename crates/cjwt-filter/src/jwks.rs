//! Remote JWKS: fetched through an Envoy cluster with `dispatch_http_call`, on
//! start, every `refresh_seconds`, and (rate-limited) when a token names a key
//! the provider does not have yet — that request waits, paused, for the answer.
//!
//! Each worker VM fetches for itself: no cross-VM coordination on the request
//! path, at the cost of one fetch per worker per refresh (see docs/spec-deviations.md, decision 14).
//!
//! Every call is dispatched from the root context, whichever callback starts it:
//! a call made from a stream's context answers that stream only, and is lost
//! when the client resets it. A call that never answers expires on the tick.

use super::host::host_now;
use super::http::{process, Waiter};
use super::root::Shared;
use cjwt_core::config::{Config, JwksSource};
use cjwt_core::jwks::store::{jwks_path_from_discovery, parse_remote_jwks};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, MapType};
use std::time::Duration;

/// What a call in flight fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Keys,
    Discovery,
}

/// Fetch state of one provider.
#[derive(Debug, Default, Clone)]
pub struct FetchState {
    /// The token of the call in flight, when it started (Unix s), and what it fetches.
    pub in_flight: Option<(u32, i64, Kind)>,
    /// With OIDC discovery: the JWKS path found in the discovery document.
    pub jwks_path: Option<String>,
    pub last_started: Option<i64>,
    /// When the next periodic fetch is due (Unix s).
    pub next_due: i64,
    /// HTTP streams paused until this provider's fetch answers.
    pub waiters: Vec<Waiter>,
}

/// Seconds before a failed fetch is retried by the periodic timer.
const RETRY_SECONDS: i64 = 5;

/// Starts a fetch for `provider` now; false if it could not be dispatched.
/// `stream`: the stream context current now, if any; the call is made as the
/// root context and the stream is made current again afterwards.
pub fn start_fetch(shared: &Shared, config: &Config, provider: usize, stream: Option<u32>) -> bool {
    let Some(remote) = config.providers.get(provider).and_then(|p| p.remote.as_ref()) else {
        return false;
    };
    let Some(now) = host_now() else {
        return false;
    };
    let Ok(mut fetches) = shared.fetches.try_borrow_mut() else {
        return false;
    };
    let Some(state) = fetches.get_mut(provider) else {
        return false;
    };
    let (path, kind) = match (&remote.source, &state.jwks_path) {
        (JwksSource::Path(p), _) | (JwksSource::Discovery(_), Some(p)) => (p.clone(), Kind::Keys),
        (JwksSource::Discovery(d), None) => (d.clone(), Kind::Discovery),
    };
    let headers = vec![(":method", "GET"), (":path", path.as_str()), (":authority", remote.authority.as_str())];
    if stream.is_some() && hostcalls::set_effective_context(shared.root_context).is_err() {
        // Never dispatch from the stream: its answer would die with it. The tick starts it.
        state.next_due = now;
        return false;
    }
    state.last_started = Some(now);
    let timeout = Duration::from_millis(remote.timeout_ms);
    let dispatched = hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout);
    if let Some(stream) = stream {
        let _ = hostcalls::set_effective_context(stream);
    }
    match dispatched {
        Ok(token) => {
            state.in_flight = Some((token, now, kind));
            true
        }
        Err(e) => {
            log::warn!(
                "cjwt: JWKS fetch for provider {} not dispatched ({e:?}); is cluster {:?} defined?",
                provider,
                remote.cluster
            );
            state.next_due = now + RETRY_SECONDS;
            shared.metrics.jwks_fetch(false);
            false
        }
    }
}

/// Seconds after which a call in flight is given up: its own timeout plus a margin.
fn stale_after(config: &Config, provider: usize) -> i64 {
    let timeout_ms = config.providers.get(provider).and_then(|p| p.remote.as_ref()).map_or(60_000, |r| r.timeout_ms);
    i64::try_from(timeout_ms / 1000).unwrap_or(60) + 2
}

/// Whether the current request should wait for `provider`'s keys: yes when a
/// fetch is in flight, or when one may start now (at most one per
/// `min_refetch_seconds`). Registers the waiter and starts the fetch if needed.
pub fn wait_for_keys(shared: &Shared, config: &Config, provider: usize, waiter: Option<&Waiter>) -> bool {
    let (Some(waiter), Some(remote)) = (waiter, config.providers.get(provider).and_then(|p| p.remote.as_ref())) else {
        return false;
    };
    let Some(now) = host_now() else {
        return false;
    };
    let stale = stale_after(config, provider);
    let (in_flight, may_start) = {
        let Ok(mut fetches) = shared.fetches.try_borrow_mut() else {
            return false;
        };
        let Some(state) = fetches.get_mut(provider) else {
            return false;
        };
        // A call that never answered: forget it after its timeout (the tick does too).
        if state.in_flight.is_some_and(|(_, started, _)| now - started > stale) {
            state.in_flight = None;
        }
        let min = i64::try_from(remote.min_refetch_seconds).unwrap_or(i64::MAX);
        let may_start = state.last_started.is_none_or(|t| now.saturating_sub(t) >= min);
        (state.in_flight.is_some(), may_start)
    };
    let fetching = in_flight || (may_start && start_fetch(shared, config, provider, Some(waiter.context)));
    if !fetching {
        return false;
    }
    if let Ok(mut fetches) = shared.fetches.try_borrow_mut() {
        if let Some(state) = fetches.get_mut(provider) {
            state.waiters.push(waiter.clone());
            return true;
        }
    }
    false
}

/// Periodic refresh (from the root context's tick): expires calls that never
/// answered (their waiters are decided again, without the keys), then starts
/// every fetch that is due.
pub fn on_tick(shared: &Shared) {
    let Some(now) = host_now() else {
        return;
    };
    let expired: Vec<usize> = match (shared.engine.try_borrow(), shared.fetches.try_borrow_mut()) {
        (Ok(engine), Ok(mut fetches)) => fetches
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| {
                let started = s.in_flight.map(|(_, started, _)| started)?;
                if now - started <= stale_after(&engine.config, i) {
                    return None;
                }
                log::warn!("cjwt: JWKS fetch for provider {i} never answered; given up");
                s.in_flight = None;
                s.next_due = now;
                Some(i)
            })
            .collect(),
        _ => return,
    };
    for provider in expired {
        shared.metrics.jwks_fetch(false);
        answer_waiters(shared, provider);
    }
    let Ok(engine) = shared.engine.try_borrow() else {
        return;
    };
    let due: Vec<usize> = match shared.fetches.try_borrow() {
        Ok(fetches) => fetches
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.in_flight.is_none()
                    && now >= s.next_due
                    && engine.config.providers.get(*i).is_some_and(|p| p.remote.is_some())
            })
            .map(|(i, _)| i)
            .collect(),
        Err(_) => return,
    };
    for provider in due {
        start_fetch(shared, &engine.config, provider, None);
    }
}

/// Decides again every request that waited for `provider`, and resumes the
/// ones now allowed (the others get their refusal).
fn answer_waiters(shared: &Shared, provider: usize) {
    let waiters = match shared.fetches.try_borrow_mut() {
        Ok(mut fetches) => fetches.get_mut(provider).map(|s| std::mem::take(&mut s.waiters)).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    for waiter in waiters {
        // A stream that ended while it waited cannot be made current: skip it.
        if hostcalls::set_effective_context(waiter.context).is_err() {
            continue;
        }
        let allowed = process(shared, None) == Action::Continue;
        waiter.allowed.set(allowed);
        if allowed {
            let _ = hostcalls::resume_http_request();
        }
    }
    // Back to the root context (the caller's): a fetch started after this must not
    // be dispatched as the last waiter's stream.
    let _ = hostcalls::set_effective_context(shared.root_context);
}

/// Handles an OIDC discovery answer: on success remembers the JWKS path and
/// starts the key fetch (true); on failure returns false so the caller counts
/// the failure and answers the waiters.
fn on_discovery(shared: &Shared, provider: usize, status: Option<&str>, body: &[u8]) -> bool {
    let Ok(engine) = shared.engine.try_borrow() else {
        return false;
    };
    let Some(p) = engine.config.providers.get(provider) else {
        return false;
    };
    let authority = p.remote.as_ref().map_or("", |r| r.authority.as_str());
    let found = match status {
        Some("200") => jwks_path_from_discovery(body, &p.issuer, authority),
        other => Err(format!("HTTP status {}", other.unwrap_or("none"))),
    };
    match found {
        Ok(path) => {
            log::info!("cjwt: OIDC discovery for provider {provider}: JWKS at {path}");
            if let Ok(mut fetches) = shared.fetches.try_borrow_mut() {
                if let Some(s) = fetches.get_mut(provider) {
                    s.jwks_path = Some(path);
                }
            }
            start_fetch(shared, &engine.config, provider, None)
        }
        Err(e) => {
            log::warn!("cjwt: OIDC discovery for provider {provider} failed: {e}");
            false
        }
    }
}

/// Handles a fetch answer (delivered to whichever context dispatched it), then
/// decides every request that waited for it, and resumes the ones allowed.
pub fn on_response(shared: &Shared, token: u32, body_size: usize) {
    let (provider, kind) = match shared.fetches.try_borrow_mut() {
        Ok(mut fetches) => {
            match fetches.iter_mut().enumerate().find(|(_, s)| s.in_flight.is_some_and(|(t, _, _)| t == token)) {
                Some((i, s)) => {
                    let kind = s.in_flight.map_or(Kind::Keys, |(_, _, k)| k);
                    s.in_flight = None;
                    (i, kind)
                }
                None => return,
            }
        }
        Err(_) => return,
    };
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    let parsed = match (kind, status.as_deref(), shared.engine.try_borrow()) {
        (Kind::Discovery, _, _) if on_discovery(shared, provider, status.as_deref(), &body) => {
            return; // the key fetch it started answers the waiters
        }
        // A refused discovery document is a failed fetch, never a key set (SEC-12.7).
        (Kind::Discovery, _, _) => Err("OIDC discovery failed".to_string()),
        (Kind::Keys, Some("200"), Ok(engine)) => parse_remote_jwks(&engine.config, provider, &body),
        (Kind::Keys, status, _) => Err(format!("HTTP status {}", status.unwrap_or("none"))),
    };
    let (ok, refresh) = match (&parsed, shared.engine.try_borrow()) {
        (r, Ok(engine)) => {
            let refresh = engine
                .config
                .providers
                .get(provider)
                .and_then(|p| p.remote.as_ref())
                .map_or(600, |r| r.refresh_seconds);
            (r.is_ok(), i64::try_from(refresh).unwrap_or(600))
        }
        (r, Err(_)) => (r.is_ok(), 600),
    };
    match parsed {
        Ok(fetched) => {
            log::info!(
                "cjwt: JWKS for provider {provider}: {} key(s) loaded, {} skipped",
                fetched.keys.len(),
                fetched.skipped
            );
            if let Ok(mut keys) = shared.keys.try_borrow_mut() {
                keys.set(provider, fetched.keys);
            }
        }
        Err(e) => {
            log::warn!("cjwt: JWKS for provider {provider} refused, previous keys kept: {e}");
            // With discovery, look the JWKS location up again next time.
            if let Ok(mut fetches) = shared.fetches.try_borrow_mut() {
                if let Some(s) = fetches.get_mut(provider) {
                    s.jwks_path = None;
                }
            }
        }
    }
    shared.metrics.jwks_fetch(ok);
    if let (Ok(mut fetches), Some(now)) = (shared.fetches.try_borrow_mut(), host_now()) {
        if let Some(s) = fetches.get_mut(provider) {
            s.next_due = now + if ok { refresh } else { RETRY_SECONDS.min(refresh) };
        }
    }
    answer_waiters(shared, provider);
}
