//! Remote key sets in the native build: one fetch per Envoy, not per worker.
//!
//! The core's [`Fetcher`] decides what to fetch and when; this module only runs
//! it. Calls are configuration-level HTTP callouts, which Envoy allows only on
//! the main thread, so everything that dispatches runs in the configuration's
//! scheduled hook: a tick thread commits [`EVENT_TICK`] every second, and a
//! worker that starts a fetch for a paused request queues it and commits
//! [`EVENT_DISPATCH`]. Fetched keys go into the one key store all workers read.
//!
//! A paused request is a [`Waiter`]: the stream's scheduler behind a lock. When
//! its fetch ends, the main thread commits the stream's scheduler and the stream
//! decides again on its own worker. The stream takes its scheduler out of the
//! waiter (under the same lock) before Envoy destroys it, so a late answer never
//! commits a deleted scheduler.

use crate::config::Shared;
use crate::ffi::{log, CalloutAnswer, ConfigHandle, Level, Scheduler};
use cjwt_core::jwks::fetcher::{Command, FetchOutcome, FetchRequest, Fetcher, Released};
use cjwt_core::jwks::store::{shared_name, KeyStore};
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::request::host::clock;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};

/// Config scheduler event: run the fetcher's tick.
pub const EVENT_TICK: u64 = 1;
/// Config scheduler event: dispatch the calls workers queued.
pub const EVENT_DISPATCH: u64 = 2;
/// Stream scheduler event: the keys the stream waited for arrived (or not).
pub const EVENT_KEYS: u64 = 1;

/// A paused stream, woken on its own worker when its fetch ends.
#[derive(Debug, Default)]
pub struct Waiter {
    scheduler: Mutex<Option<Scheduler>>,
}

impl Waiter {
    /// A waiter that wakes through `scheduler`.
    pub fn new(scheduler: Scheduler) -> Arc<Waiter> {
        Arc::new(Waiter { scheduler: Mutex::new(Some(scheduler)) })
    }

    /// Runs the stream's scheduled hook with [`EVENT_KEYS`], unless it ended.
    fn wake(&self) {
        if let Ok(guard) = self.scheduler.lock() {
            if let Some(s) = guard.as_ref() {
                s.commit(EVENT_KEYS);
            }
        }
    }

    /// The stream ends: its scheduler is deleted now, and never committed again.
    pub fn close(&self) {
        if let Ok(mut guard) = self.scheduler.lock() {
            drop(guard.take());
        }
    }
}

/// The fetch state shared by every worker of one configuration.
pub struct Remote {
    /// The core's state machine, and the calls workers asked for.
    pub state: Mutex<RemoteState>,
}

/// Behind [`Remote::state`]'s lock.
pub struct RemoteState {
    /// What to fetch, when, and who waits.
    pub fetcher: Fetcher<Arc<Waiter>>,
    /// Calls started by workers, dispatched on the main thread.
    pub queued: Vec<FetchRequest>,
    /// The compiled configuration the fetcher parses answers with (main thread).
    pub config: cjwt_core::config::Config,
}

fn now() -> Option<i64> {
    clock::unix_seconds(std::time::SystemTime::now())
}

/// A key set as last loaded: the body, when it was fetched, and its version.
type LastGood = (Vec<u8>, i64, u64);

/// The last good key set of every remote source this process fetched, by
/// [`shared_name`] (what identifies the source): a configuration pushed at run
/// time, or a second listener, starts with it instead of no keys (SPEC §12; the
/// wasm build keeps the same in proxy-wasm shared data).
fn last_good() -> &'static Mutex<HashMap<String, LastGood>> {
    static LAST_GOOD: OnceLock<Mutex<HashMap<String, LastGood>>> = OnceLock::new();
    LAST_GOOD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Starts a new configuration's key store with the sets this process already
/// fetched for the same sources; their refresh is due `refresh_seconds` after
/// that fetch.
pub fn adopt_last_good(state: &mut RemoteState, keys: &mut KeyStore) {
    let Some(now) = now() else { return };
    let Ok(sets) = last_good().lock() else { return };
    for provider in 0..state.config.providers.len() {
        let Some((body, fetched_at, version)) = shared_name(&state.config, provider).and_then(|n| sets.get(&n)) else {
            continue;
        };
        let RemoteState { fetcher, config, .. } = state;
        if let Some(Ok(_)) = fetcher.adopt(provider, body, *version, *fetched_at, now, config, keys) {
            log(Level::Info, &format!("cjwt: JWKS for provider {provider}: the last good set of this process"));
        }
    }
}

/// The configuration's scheduled hook (main thread): a tick, or queued calls.
pub fn on_scheduled(shared: &Shared, handle: ConfigHandle<'_>, event: u64) {
    let (Some(remote), Some(now)) = (&shared.remote, now()) else {
        return;
    };
    let commands: Vec<Command<Arc<Waiter>>> = {
        let Ok(mut state) = remote.state.lock() else {
            return;
        };
        let mut commands: Vec<Command<Arc<Waiter>>> =
            std::mem::take(&mut state.queued).into_iter().map(Command::Dispatch).collect();
        if event == EVENT_TICK {
            commands.extend(state.fetcher.on_tick(now));
        }
        commands
    };
    for command in commands {
        match command {
            Command::Dispatch(request) => dispatch(shared, remote, handle, request, now),
            Command::Release(released) => release(shared, remote, handle, released, now),
        }
    }
}

/// Sends one call as a configuration-level callout and reports it to the fetcher.
fn dispatch(shared: &Shared, remote: &Remote, handle: ConfigHandle<'_>, request: FetchRequest, now: i64) {
    let timeout_ms = u64::try_from(request.timeout.as_millis()).unwrap_or(u64::MAX);
    let id = handle.callout(&request.cluster, &request.headers(), timeout_ms).and_then(|id| u32::try_from(id).ok());
    let failed = {
        let Ok(mut state) = remote.state.lock() else {
            return;
        };
        match id {
            Some(id) => {
                state.fetcher.on_dispatched(request.provider, id);
                None
            }
            None => {
                log(
                    Level::Warn,
                    &format!(
                        "cjwt: JWKS fetch for provider {} not dispatched; is cluster {:?} defined?",
                        request.provider, request.cluster
                    ),
                );
                Some(state.fetcher.on_dispatch_failed(request.provider, now))
            }
        }
    };
    if let Some(released) = failed {
        release(shared, remote, handle, released, now);
    }
}

/// A configuration-level callout answered (main thread).
pub fn on_callout_done(shared: &Shared, handle: ConfigHandle<'_>, id: u64, answer: CalloutAnswer<'_>) {
    let (Some(remote), Some(now), Ok(id)) = (&shared.remote, now(), u32::try_from(id)) else {
        return;
    };
    let status = answer.status.and_then(|s| std::str::from_utf8(s).ok());
    let released = {
        let (Ok(mut state), Ok(mut keys)) = (remote.state.lock(), shared.keys.write()) else {
            return;
        };
        let RemoteState { fetcher, config, .. } = &mut *state;
        let released = fetcher.on_response(id, status, &answer.body, now, config, &mut keys);
        if let Some(Released { provider, outcome: FetchOutcome::KeysLoaded { .. }, .. }) = &released {
            if let (Some(name), Ok(mut sets)) = (shared_name(config, *provider), last_good().lock()) {
                let version = sets.get(&name).map_or(1, |(_, _, v)| v.wrapping_add(1));
                fetcher.set_version(*provider, version);
                sets.insert(name, (answer.body.clone(), now, version));
            }
        }
        released
    };
    if let Some(released) = released {
        release(shared, remote, handle, released, now);
    }
}

/// A call ended: count and log it, wake the requests that waited, and dispatch
/// the call that follows (the key fetch after discovery).
fn release(shared: &Shared, remote: &Remote, handle: ConfigHandle<'_>, released: Released<Arc<Waiter>>, now: i64) {
    let provider = released.provider;
    match &released.outcome {
        FetchOutcome::KeysLoaded { keys, skipped } => {
            log(Level::Info, &format!("cjwt: JWKS for provider {provider}: {keys} key(s) loaded, {skipped} skipped"))
        }
        FetchOutcome::Discovered { jwks_path } => {
            log(Level::Info, &format!("cjwt: OIDC discovery for provider {provider}: JWKS at {jwks_path}"))
        }
        FetchOutcome::KeysRefused { reason } => {
            log(Level::Warn, &format!("cjwt: JWKS for provider {provider} refused, previous keys kept: {reason}"))
        }
        FetchOutcome::DiscoveryRefused { reason } => {
            log(Level::Warn, &format!("cjwt: OIDC discovery for provider {provider} failed: {reason}"))
        }
        FetchOutcome::NeverAnswered => {
            log(Level::Warn, &format!("cjwt: JWKS fetch for provider {provider} never answered; given up"))
        }
        // One fetcher per configuration: nothing is fetched elsewhere or taken over.
        FetchOutcome::NotDispatched
        | FetchOutcome::KeysAdopted { .. }
        | FetchOutcome::ElsewhereTimedOut
        | FetchOutcome::ElsewhereFailed => {}
    }
    if let Some(ok) = released.outcome.fetch_ok() {
        let counter = if ok { Counter::JwksFetchOk } else { Counter::JwksFetchFailed };
        if let Some(Some(id)) = shared.counters.get(counter.index()) {
            handle.increment(*id, 1);
        }
    }
    for waiter in &released.waiters {
        waiter.wake();
    }
    if let Some(next) = released.start {
        dispatch(shared, remote, handle, next, now);
    }
}
