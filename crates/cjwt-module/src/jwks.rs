//! Remote key sets and status lists (SPEC §11) in the native build: one fetch
//! per Envoy, not per worker.
//!
//! The core's [`Remote`] decides what to fetch, when, and which requests wait;
//! this module executes its effects. Calls are configuration-level HTTP
//! callouts, which Envoy allows only on the main thread, so everything that
//! dispatches runs in the configuration's scheduled hook: a tick thread commits
//! [`EVENT_TICK`] every second, and a worker whose request starts a fetch gets
//! [`Effect::WakeMain`] and commits [`EVENT_DISPATCH`]. Fetched keys go into the one key store all workers read.
//!
//! A paused request is a [`Waiter`]: the stream's scheduler behind a lock. When
//! its fetch ends, the main thread commits the stream's scheduler and the stream
//! decides again on its own worker. The stream takes its scheduler out of the
//! waiter (under the same lock) before Envoy destroys it, so a late answer never
//! commits a deleted scheduler.

use crate::config::Shared;
use crate::ffi::{log, CalloutAnswer, ConfigHandle, Filter, Scheduler};
use cjwt_core::{clock, Config, Effect, Fetched, HostCrypto, KeyWait, ProcessSharing, Remote};
use std::collections::VecDeque;
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

/// The fetch state shared by every worker of one configuration (behind a lock).
pub struct RemoteState {
    /// The core's remote state machine.
    pub remote: Remote<Arc<Waiter>>,
    /// The compiled configuration the remote parses answers with.
    pub config: Config,
}

fn now() -> Option<i64> {
    clock::unix_seconds(std::time::SystemTime::now())
}

/// On configuration (main thread): the key sets and lists an earlier
/// configuration of this process loaded serve until this one's own fetches.
pub fn on_configure(state: &mut RemoteState, keys: &mut Fetched, crypto: &dyn HostCrypto) {
    let Some(now) = now() else { return };
    let RemoteState { remote, config } = state;
    for effect in remote.on_configure(now, config, keys, crypto, &mut ProcessSharing) {
        if let Effect::Log(level, line) = effect {
            log(level.into(), &line);
        }
    }
}

/// Runs `f` with the configuration's remote, its compiled configuration and the
/// key store (locked in this order, everywhere), and the clock. `None` without
/// a remote source, a clock, or a lock.
fn with_remote<R>(
    shared: &Shared,
    f: impl FnOnce(&mut Remote<Arc<Waiter>>, &Config, &mut Fetched, i64) -> R,
) -> Option<R> {
    let (Some(remote), Some(now)) = (&shared.remote, now()) else {
        return None;
    };
    let (Ok(mut state), Ok(mut keys)) = (remote.lock(), shared.keys.write()) else {
        return None;
    };
    let RemoteState { remote, config } = &mut *state;
    Some(f(remote, config, &mut keys, now))
}

/// The configuration's scheduled hook (main thread): the tick, or fetches
/// workers asked for.
pub fn on_scheduled(shared: &Shared, handle: ConfigHandle<'_>, event: u64) {
    let effects = with_remote(shared, |remote, config, keys, now| match event {
        EVENT_TICK => remote.on_tick(now, config, keys, &shared.crypto, &mut ProcessSharing),
        _ => remote.on_wanted(now, config, keys, &mut ProcessSharing),
    });
    execute(shared, Host::Config(handle), effects.unwrap_or_default());
}

/// A configuration-level callout answered (main thread).
pub fn on_callout_done(shared: &Shared, handle: ConfigHandle<'_>, id: u64, answer: CalloutAnswer<'_>) {
    let (Ok(id), status) = (u32::try_from(id), answer.status.and_then(|s| std::str::from_utf8(s).ok())) else {
        return;
    };
    let effects = with_remote(shared, |remote, config, keys, now| {
        remote.on_answer(id, status, &answer.body, now, config, keys, &shared.crypto, &mut ProcessSharing, true)
    });
    execute(shared, Host::Config(handle), effects.flatten().unwrap_or_default());
}

/// A request (a stream on a worker) lacks `provider`'s keys: whether it waits,
/// its [`Waiter`] (the stream's scheduler) then kept in `waiter`.
pub fn wait_for_keys(shared: &Shared, f: Filter<'_>, provider: usize, waiter: &mut Option<Arc<Waiter>>) -> KeyWait {
    let Some(this) = waiter.clone().or_else(|| f.scheduler().map(Waiter::new)) else {
        return KeyWait::DoNotWait;
    };
    let asked = with_remote(shared, |remote, config, keys, now| {
        remote.wait_for_keys(provider, Arc::clone(&this), now, config, keys, &mut ProcessSharing)
    });
    let Some((wait, effects)) = asked else {
        return KeyWait::DoNotWait;
    };
    execute(shared, Host::Stream(f), effects);
    if wait == KeyWait::Wait {
        *waiter = Some(this);
    }
    wait
}

/// Where effects are executed: a configuration hook (main thread) or a stream's (a worker).
enum Host<'a> {
    Config(ConfigHandle<'a>),
    Stream(Filter<'a>),
}

/// Executes the remote's effects: dispatches calls (main thread only) and
/// reports them back, logs, counts, wakes paused streams on their workers,
/// and runs the main thread's step for fetches workers asked for.
fn execute(shared: &Shared, host: Host<'_>, effects: Vec<Effect<Arc<Waiter>>>) {
    let mut queue: VecDeque<Effect<Arc<Waiter>>> = effects.into();
    while let Some(effect) = queue.pop_front() {
        match effect {
            Effect::Log(level, line) => log(level.into(), &line),
            Effect::Count(counter) => {
                if let Some(Some(id)) = shared.counters.get(counter.index()) {
                    match &host {
                        Host::Config(handle) => handle.increment(*id, 1),
                        Host::Stream(f) => f.increment(*id, 1),
                    }
                }
            }
            Effect::Wake(waiter) => waiter.wake(),
            Effect::WakeMain => shared.commit(EVENT_DISPATCH),
            Effect::Dispatch(call) => {
                let Host::Config(handle) = &host else {
                    // The core hands calls out on the main thread only.
                    continue;
                };
                let timeout_ms = u64::try_from(call.timeout().as_millis()).unwrap_or(u64::MAX);
                let sent = handle
                    .callout(call.cluster(), &call.headers(), &[], timeout_ms)
                    .and_then(|id| u32::try_from(id).ok());
                let (Some(remote), Some(now)) = (&shared.remote, now()) else { continue };
                let Ok(mut state) = remote.lock() else { continue };
                let sent = sent.ok_or_else(|| "callout not started".to_string());
                queue.extend(state.remote.dispatched(&call, sent, now, &mut ProcessSharing));
            }
        }
    }
}
