//! Remote key sets and status lists (SPEC §11) in the native build: one fetch
//! per Envoy, not per worker.
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
use cjwt_core::config::Config;
use cjwt_core::jwks::fetcher::{Command, FetchOutcome, FetchRequest, Fetcher, Released};
use cjwt_core::jwks::store::{shared_name as key_set_name, KeyStore};
use cjwt_core::keys::host_crypto::HostCrypto;
use cjwt_core::lifecycle::remote::{key_fetch_ended, list_fetch_ended, not_dispatched, Effect};
use cjwt_core::outcome::Level as CoreLevel;
use cjwt_core::request::host::clock;
use cjwt_core::revocation::fetcher::{install_last_good, ListCommand, ListFetcher, ListOutcome, ListRequest};
use cjwt_core::revocation::status_list::{shared_name, LastGood};
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
    /// When to fetch the status lists (SPEC §11; nobody waits for them).
    pub lists: ListFetcher,
    /// Calls started by workers, dispatched on the main thread.
    pub queued: Vec<FetchRequest>,
    /// The compiled configuration the fetcher parses answers with (main thread).
    pub config: cjwt_core::config::Config,
}

fn now() -> Option<i64> {
    clock::unix_seconds(std::time::SystemTime::now())
}

/// A key set as last loaded: the body, when it was fetched, and its version.
type KeySetCopy = (Vec<u8>, i64, u64);

/// The last good key set of every remote source this process fetched, by
/// [`key_set_name`] (what identifies the source): a configuration pushed at run
/// time, or a second listener, starts with it instead of no keys (SPEC §12; the
/// wasm build keeps the same in proxy-wasm shared data).
fn last_good() -> &'static Mutex<HashMap<String, KeySetCopy>> {
    static LAST_GOOD: OnceLock<Mutex<HashMap<String, KeySetCopy>>> = OnceLock::new();
    LAST_GOOD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Starts a new configuration's key store with the sets this process already
/// fetched for the same sources; their refresh is due `refresh_seconds` after
/// that fetch.
pub fn adopt_last_good(state: &mut RemoteState, keys: &mut KeyStore) {
    let Some(now) = now() else { return };
    let Ok(sets) = last_good().lock() else { return };
    for provider in 0..state.config.providers.len() {
        let Some((body, fetched_at, version)) = key_set_name(&state.config, provider).and_then(|n| sets.get(&n)) else {
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
    if event == EVENT_TICK {
        let lists = match remote.state.lock() {
            Ok(mut state) => state.lists.on_tick(now),
            Err(_) => Vec::new(),
        };
        for command in lists {
            match command {
                ListCommand::Dispatch(request) => dispatch_list(shared, remote, handle, &request, now),
                ListCommand::GaveUp(list, outcome) => list_ended(shared, handle, list, &outcome),
            }
        }
    }
    for command in commands {
        match command {
            Command::Dispatch(request) => dispatch(shared, remote, handle, request, now),
            Command::Release(released) => release(shared, remote, handle, released, now),
        }
    }
}

/// Starts a configuration-level callout for `what` (in the log when Envoy will
/// not start it): the call's id as the fetchers know calls.
fn start_fetch(
    shared: &Shared,
    handle: ConfigHandle<'_>,
    what: &str,
    cluster: &str,
    headers: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Option<u32> {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let id = handle.callout(cluster, headers, timeout_ms).and_then(|id| u32::try_from(id).ok());
    if id.is_none() {
        apply(shared, handle, [not_dispatched(what, cluster, "callout not started")]);
    }
    id
}

/// Sends one call as a configuration-level callout and reports it to the fetcher.
fn dispatch(shared: &Shared, remote: &Remote, handle: ConfigHandle<'_>, request: FetchRequest, now: i64) {
    let what = format!("JWKS for provider {}", request.provider);
    let id = start_fetch(shared, handle, &what, &request.cluster, &request.headers(), request.timeout);
    let failed = {
        let Ok(mut state) = remote.state.lock() else {
            return;
        };
        match id {
            Some(id) => {
                state.fetcher.on_dispatched(request.provider, id);
                None
            }
            None => Some(state.fetcher.on_dispatch_failed(request.provider, now)),
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
    // A status list's answer: verified with the keys in the same store.
    let list = {
        let Ok(mut state) = remote.state.lock() else {
            return;
        };
        if state.lists.owns(id) {
            let Ok(mut keys) = shared.keys.write() else {
                return;
            };
            let RemoteState { lists, config, .. } = &mut *state;
            let ended = lists.on_response(id, status, &answer.body, now, config, &shared.crypto, &mut keys);
            if let Some((list, ListOutcome::Loaded { .. })) = &ended {
                keep_last_good(config, *list, now, &answer.body);
            }
            Some(ended)
        } else {
            None
        }
    };
    if let Some(ended) = list {
        if let Some((list, outcome)) = ended {
            list_ended(shared, handle, list, &outcome);
        }
        return;
    }
    let released = {
        let (Ok(mut state), Ok(mut keys)) = (remote.state.lock(), shared.keys.write()) else {
            return;
        };
        let RemoteState { fetcher, config, .. } = &mut *state;
        let released = fetcher.on_response(id, status, &answer.body, now, config, &mut keys);
        if let Some(Released { provider, outcome: FetchOutcome::KeysLoaded { .. }, .. }) = &released {
            if let (Some(name), Ok(mut sets)) = (key_set_name(config, *provider), last_good().lock()) {
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
    apply(shared, handle, key_fetch_ended(released.provider, &released.outcome));
    for waiter in &released.waiters {
        waiter.wake();
    }
    if let Some(next) = released.start {
        dispatch(shared, remote, handle, next, now);
    }
}

/// Sends one status-list fetch as a configuration-level callout.
fn dispatch_list(shared: &Shared, remote: &Remote, handle: ConfigHandle<'_>, request: &ListRequest, now: i64) {
    let what = format!("status list {}", request.list);
    let id = start_fetch(shared, handle, &what, &request.cluster, &request.headers(), request.timeout);
    let failed = {
        let Ok(mut state) = remote.state.lock() else {
            return;
        };
        match id {
            Some(id) => {
                state.lists.on_dispatched(request.list, id);
                None
            }
            None => Some(state.lists.on_dispatch_failed(request.list, now)),
        }
    };
    if let Some(outcome) = failed {
        list_ended(shared, handle, request.list, &outcome);
    }
}

/// Logs and counts how a status-list fetch ended.
fn list_ended(shared: &Shared, handle: ConfigHandle<'_>, list: usize, outcome: &ListOutcome) {
    apply(shared, handle, list_fetch_ended(list, outcome));
}

/// Executes what the core asks of the host: log lines and counters.
fn apply(shared: &Shared, handle: ConfigHandle<'_>, effects: impl IntoIterator<Item = Effect>) {
    for effect in effects {
        match effect {
            Effect::Log(CoreLevel::Info, line) => log(Level::Info, &line),
            Effect::Log(CoreLevel::Warn, line) => log(Level::Warn, &line),
            Effect::Count(counter) => {
                if let Some(Some(id)) = shared.counters.get(counter.index()) {
                    handle.increment(*id, 1);
                }
            }
        }
    }
}

/// The last good copy of each status list, by [`shared_name`], for the next
/// configuration of this process (SPEC §12): the stored form of [`LastGood`].
fn last_good_lists() -> &'static Mutex<HashMap<String, Vec<u8>>> {
    static LISTS: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    LISTS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn keep_last_good(config: &Config, list: usize, now: i64, body: &[u8]) {
    if let (Some(name), Ok(mut lists)) = (shared_name(config, list), last_good_lists().lock()) {
        lists.insert(name, LastGood { fetched_at: now, body }.encode());
    }
}

/// Loads the last good copy of each configured list that an earlier
/// configuration of this process fetched, verified again with this one and its
/// `ttl` counted from the original fetch: a configuration pushed at run time
/// serves with it while its own first fetch runs.
pub fn load_last_good(config: &Config, keys: &mut KeyStore, crypto: &dyn HostCrypto) {
    let Some(now) = now() else {
        return;
    };
    let Ok(stored) = last_good_lists().lock() else {
        return;
    };
    for list in 0..config.status_lists.len() {
        let Some(last) = shared_name(config, list).and_then(|n| stored.get(&n)).and_then(|b| LastGood::decode(b))
        else {
            continue;
        };
        match install_last_good(config, list, keys, crypto, last, now) {
            Ok(entries) => {
                log(Level::Info, &format!("cjwt: status list {list}: {entries} entries from the last good copy"))
            }
            Err(e) => log(Level::Info, &format!("cjwt: the last good copy of status list {list} is not usable: {e}")),
        }
    }
}
