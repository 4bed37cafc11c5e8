//! The configuration's own work in the native build: remote key sets and
//! status lists (SPEC §11), one fetch per Envoy, not per worker, and leased
//! allowances' background refills. The core's [`BackgroundHost`] driver
//! decides and runs it; this module maps its host calls onto Envoy's.
//!
//! Its calls are configuration-level HTTP callouts: no stream's end cancels
//! them, and Envoy allows them only on the main thread, so everything that
//! sends runs in the configuration's scheduled hook: a tick thread commits
//! [`EVENT_TICK`] every second, and a worker whose request starts a fetch or a
//! refill commits [`EVENT_MAIN`]. Fetched keys go into the one key store all
//! workers read; a refill's batch joins [`cjwt_core::ProcessCounter`]. Envoy
//! answers every callout (its failure at the timeout), so none is lost.
//!
//! Locks: the remote, then the key store; the refills alone. None is held while
//! Envoy starts a callout (it may answer inline).
//!
//! A paused request is a [`Waiter`]: the stream's scheduler behind a lock. When
//! its fetch ends, the main thread commits the stream's scheduler and the stream
//! decides again on its own worker. The stream takes its scheduler out of the
//! waiter (under the same lock) before Envoy destroys it, so a late answer never
//! commits a deleted scheduler.

use crate::config::Shared;
use crate::ffi::{log, ConfigHandle, Filter, Scheduler};
use crate::stream::now_ms;
use cjwt_core::{clock, BackgroundHost, Config, Counter, KeyWait, Level, ProcessSharing, Refills, Remote, RemoteEnv};
use std::sync::{Arc, Mutex};

/// Config scheduler event: run the fetcher's tick.
pub const EVENT_TICK: u64 = 1;
/// Config scheduler event: dispatch the fetches and send the refills workers queued.
pub const EVENT_MAIN: u64 = 2;
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

/// The configuration's host calls, in a configuration hook (the main thread:
/// it sends) or a stream's (a worker: it asks for keys and queues refills).
pub enum Main<'a> {
    /// A configuration hook.
    Config(&'a Shared, ConfigHandle<'a>),
    /// A stream hook.
    Stream(&'a Shared, Filter<'a>),
}

impl Main<'_> {
    fn shared(&self) -> &Shared {
        match self {
            Main::Config(shared, _) | Main::Stream(shared, _) => shared,
        }
    }
}

impl BackgroundHost for Main<'_> {
    type Waiter = Arc<Waiter>;

    fn with_remote<R>(&mut self, step: impl FnOnce(RemoteEnv<'_, Arc<Waiter>>) -> R) -> Option<R> {
        let shared = self.shared();
        let (Some(remote), Some(now)) = (&shared.remote, clock::unix_seconds(std::time::SystemTime::now())) else {
            return None;
        };
        let (Ok(mut state), Ok(mut keys)) = (remote.lock(), shared.keys.write()) else {
            return None;
        };
        let RemoteState { remote, config } = &mut *state;
        let (crypto, sharing) = (&shared.crypto, &mut ProcessSharing);
        Some(step(RemoteEnv { remote, config, keys: &mut keys, crypto, sharing, now }))
    }

    fn with_refills<R>(&mut self, step: impl FnOnce(&mut Refills) -> R) -> Option<R> {
        self.shared().refills.lock().ok().map(|mut refills| step(&mut refills))
    }

    /// Only on the main thread.
    fn callout(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        ms: u64,
    ) -> Option<Result<u64, String>> {
        let Main::Config(_, handle) = self else { return None };
        Some(handle.callout(cluster, headers, body, ms).ok_or_else(|| "callout not started".to_string()))
    }

    fn log(&mut self, level: Level, line: &str) {
        log(level.into(), line);
    }

    fn count(&mut self, counter: Counter) {
        match self {
            Main::Config(shared, handle) => shared.counters.id(counter).map(|id| handle.increment(id, 1)),
            Main::Stream(shared, f) => shared.counters.id(counter).map(|id| f.increment(id, 1)),
        };
    }

    /// Runs the stream's scheduled hook with [`EVENT_KEYS`], unless it ended.
    fn wake(&mut self, waiter: Arc<Waiter>) {
        if let Ok(Some(scheduler)) = waiter.scheduler.lock().as_deref() {
            scheduler.commit(EVENT_KEYS);
        }
    }

    fn wake_main(&mut self) {
        self.shared().commit(EVENT_MAIN);
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// A request (a stream on a worker) lacks `provider`'s keys: whether it waits,
/// its [`Waiter`] (the stream's scheduler) then kept in `waiter`.
pub fn wait_for_keys(shared: &Shared, f: Filter<'_>, provider: usize, waiter: &mut Option<Arc<Waiter>>) -> KeyWait {
    let Some(this) = waiter.clone().or_else(|| f.scheduler().map(Waiter::new)) else {
        return KeyWait::DoNotWait;
    };
    let wait = Main::Stream(shared, f).wait_for_keys(provider, Arc::clone(&this));
    if wait == KeyWait::Wait {
        *waiter = Some(this);
    }
    wait
}
