//! One filter configuration: compiled once on the main thread (a configuration
//! error refuses to load, naming the field), then shared by every worker:
//! counters, the per-process `max_uses` count, and the key store. Each worker
//! thread keeps its own [`cjwt_core::Engine`] ([`WorkerEngines`]: the
//! verified-token cache is per worker, as in the wasm build, and needs no lock).

use crate::background::{Main, RemoteState, EVENT_TICK};
use crate::ffi::{log, CalloutAnswer, ConfigHandle, Level, Scheduler};
use crate::stream::reply;
use cjwt_core::{
    BackgroundHost, Capabilities, Config, CounterIds, Fetched, NativeCrypto, ProcessCounter, ProcessReplay, Refills,
    Remote, WorkerEngines,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// What every worker of one configuration shares.
pub struct Shared {
    /// Each worker's engine, compiled from the plugin configuration as given.
    pub engines: WorkerEngines,
    /// Envoy's counter ids.
    pub counters: CounterIds<usize>,
    /// Remote key sets and status lists, one store for the whole process.
    pub keys: RwLock<Fetched>,
    /// `max_uses`, counted once for every worker of this Envoy: the process's one
    /// counter ([`ProcessCounter::global`]), so a configuration pushed at run time keeps the counts.
    pub usage: &'static ProcessCounter,
    /// DPoP proof ids, remembered once for every worker of this Envoy ([`ProcessReplay::global`]).
    pub replay: &'static ProcessReplay,
    /// RS*, PS* and ES* verified by `ring` (counted as `cjwt.verify.host`).
    pub crypto: NativeCrypto,
    /// Remote key sets and status lists, when any is configured.
    pub remote: Option<Mutex<RemoteState>>,
    /// Runs this configuration's scheduled hook on the main thread (fetches, refills).
    pub scheduler: Mutex<Option<Scheduler>>,
    /// Leased allowances' background refills (queued by workers, sent from the main thread).
    pub refills: Mutex<Refills>,
}

/// The object Envoy holds for one filter configuration.
pub struct ModuleConfig {
    /// Shared with every stream of the configuration.
    pub shared: Arc<Shared>,
    /// The tick thread (with remote key sets), stopped when Envoy drops the
    /// configuration (its sender dropped).
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Drop for ModuleConfig {
    /// Stops the tick thread, then deletes the scheduler it committed to (main thread).
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.ticker.take() {
            drop(stop);
            let _ = thread.join();
        }
        if let Ok(mut scheduler) = self.shared.scheduler.lock() {
            drop(scheduler.take());
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ModuleConfig {
    /// Compiles the configuration and defines the counters (Envoy allows that only
    /// here). `None` refuses the configuration; the reason is logged first.
    pub fn new(handle: ConfigHandle<'_>, bytes: &[u8]) -> Option<ModuleConfig> {
        let config = match Config::from_plugin_bytes_for(bytes, Capabilities::NATIVE) {
            Ok(c) => c,
            Err(e) => {
                log(Level::Error, &format!("cjwt: configuration refused: {e}"));
                return None;
            }
        };
        let counters = CounterIds::define(|name| handle.define_counter(name.strip_prefix("cjwt.").unwrap_or(name)));
        log(Level::Info, &config.accepted_line("native module"));
        let crypto = NativeCrypto::new();
        // Leased allowances refill in the background from the main thread.
        let refills = config.usage_store().is_some_and(|s| s.allowance.is_some_and(|a| a.refill_below > 0));
        let keys = RwLock::new(Fetched::new(config.provider_count()));
        // Key sets and status lists are fetched on the main thread, once per Envoy
        // (the configuration's id tags its leases among the process's configurations).
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let remote = Remote::new(&config, id);
        let remote = remote.is_active().then(|| Mutex::new(RemoteState { remote, config }));
        let scheduler = (remote.is_some() || refills).then(|| handle.scheduler());
        if let Some(None) = scheduler {
            log(
                Level::Error,
                "cjwt: configuration refused: Envoy gave no scheduler for remote key sets, status lists or refills",
            );
            return None;
        }
        let shared = Arc::new(Shared {
            engines: WorkerEngines::new(bytes),
            counters,
            keys,
            usage: ProcessCounter::global(),
            replay: ProcessReplay::global(),
            crypto,
            remote,
            scheduler: Mutex::new(scheduler.flatten()),
            refills: Mutex::default(),
        });
        // A configuration pushed at run time keeps the key sets and lists already
        // fetched; they serve until its own fetches.
        Main::Config(&shared, handle).configure();
        let ticker = shared.remote.is_some().then(|| {
            // The first fetches now, then a tick every second until the sender is dropped.
            shared.commit(EVENT_TICK);
            let (stop, stopped) = mpsc::channel::<()>();
            let weak = Arc::downgrade(&shared);
            let thread = std::thread::spawn(move || {
                while let (Err(RecvTimeoutError::Timeout), Some(s)) =
                    (stopped.recv_timeout(Duration::from_secs(1)), weak.upgrade())
                {
                    s.commit(EVENT_TICK);
                }
            });
            (stop, thread)
        });
        Some(ModuleConfig { shared, ticker })
    }

    /// A config-level scheduled event (main thread): the tick, or the fetches
    /// and refills workers queued.
    pub fn on_scheduled(&self, handle: ConfigHandle<'_>, event: u64) {
        let mut main = Main::Config(&self.shared, handle);
        if event == EVENT_TICK {
            main.tick();
        } else {
            main.wanted();
            main.send_refills();
        }
    }

    /// A config-level HTTP call answered (main thread): a refill, or a fetch.
    pub fn on_callout_done(&self, handle: ConfigHandle<'_>, callout: u64, answer: CalloutAnswer<'_>) {
        let mut main = Main::Config(&self.shared, handle);
        let reply = reply(&answer);
        if !main.refill_answered(callout, &mut { self.shared.usage }, &reply, answer.body_len) {
            main.fetch_answered(callout, reply.status, reply.body, true);
        }
    }
}

impl Shared {
    /// Runs the configuration's scheduled hook with `event` on the main thread.
    pub fn commit(&self, event: u64) {
        if let Ok(scheduler) = self.scheduler.lock() {
            if let Some(s) = scheduler.as_ref() {
                s.commit(event);
            }
        }
    }
}
