//! One filter configuration: compiled once on the main thread (a configuration
//! error refuses to load, naming the field), then shared by every worker:
//! counters, the per-process `max_uses` count, and the key store. Each worker
//! thread keeps its own [`Engine`] (the verified-token cache is per worker, as in
//! the wasm build, and needs no lock).

use crate::ffi::{log, CalloutAnswer, ConfigHandle, Level, Scheduler};
use crate::jwks::{self, Fetches, RemoteState, EVENT_TICK};
use cjwt_core::{Capabilities, Config, Counter, Engine, Fetched, NativeCrypto, ProcessCounter, ProcessReplay, Remote};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// What every worker of one configuration shares.
pub struct Shared {
    /// This configuration's number (per-thread engines are keyed by it).
    pub id: u64,
    /// The plugin configuration as given (each worker compiles its own engine).
    pub bytes: Vec<u8>,
    /// Counter ids by [`Counter::index`]; `None` where the host refused one.
    pub counters: Vec<Option<usize>>,
    /// Remote key sets and status lists, one store for the whole process.
    pub keys: RwLock<Fetched>,
    /// `max_uses`, counted once for every worker of this Envoy: the process's one
    /// counter ([`usage`]), so a configuration pushed at run time keeps the counts.
    pub usage: &'static ProcessCounter,
    /// DPoP proof ids, remembered once for every worker of this Envoy ([`replay`]).
    pub replay: &'static ProcessReplay,
    /// RS*, PS* and ES* verified by `ring` (counted as `cjwt.verify.host`).
    pub crypto: NativeCrypto,
    /// Remote key sets and status lists, when any is configured.
    pub remote: Option<Fetches>,
    /// Runs this configuration's scheduled hook on the main thread (fetches).
    pub scheduler: Mutex<Option<Scheduler>>,
}

/// The object Envoy holds for one filter configuration.
pub struct ModuleConfig {
    /// Shared with every stream of the configuration.
    pub shared: Arc<Shared>,
    /// The tick thread (with remote key sets), stopped when Envoy drops the configuration.
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Drop for ModuleConfig {
    /// Stops the tick thread, then deletes the scheduler it committed to (main thread).
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        if let Ok(mut scheduler) = self.shared.scheduler.lock() {
            drop(scheduler.take());
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The process's `max_uses` counter, shared by every configuration and worker (as
/// proxy-wasm shared data is by every VM of a `vm_id`): a configuration update or
/// a second listener never hands out fresh uses of a one-time token.
pub fn usage() -> &'static ProcessCounter {
    static USAGE: OnceLock<ProcessCounter> = OnceLock::new();
    USAGE.get_or_init(ProcessCounter::new)
}

/// The process's DPoP replay cache (SPEC §10), shared by every configuration and
/// worker, as the `max_uses` counter is: a proof accepted by one worker is a
/// replay on every other.
pub fn replay() -> &'static ProcessReplay {
    static REPLAY: OnceLock<ProcessReplay> = OnceLock::new();
    REPLAY.get_or_init(ProcessReplay::new)
}

thread_local! {
    /// This worker's engines, one per live configuration.
    static ENGINES: RefCell<Vec<(Weak<Shared>, Engine)>> = const { RefCell::new(Vec::new()) };
}

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
        let counters = Counter::all()
            .into_iter()
            .map(|c| {
                let name = c.name();
                handle.define_counter(name.strip_prefix("cjwt.").unwrap_or(&name))
            })
            .collect();
        log(
            Level::Info,
            &format!(
                "cjwt: configuration accepted ({} provider(s), {} rule(s), mode {:?}; native module)",
                config.providers.len(),
                config.rules.len(),
                config.mode
            ),
        );
        let crypto = NativeCrypto::new();
        let mut store = Fetched::new(config.providers.len());
        // Key sets and status lists are fetched on the main thread, once per Envoy.
        let remote = Remote::new(&config, 0);
        let remote = remote.is_active().then(|| {
            let mut state = RemoteState { remote, config };
            // A configuration pushed at run time keeps the key sets and lists already
            // fetched; they serve until its own fetches.
            jwks::on_configure(&mut state, &mut store, &crypto);
            Fetches { state: Mutex::new(state) }
        });
        let keys = RwLock::new(store);
        let scheduler = match &remote {
            Some(_) => match handle.scheduler() {
                Some(s) => Some(s),
                None => {
                    log(
                        Level::Error,
                        "cjwt: configuration refused: Envoy gave no scheduler for remote key sets or status lists",
                    );
                    return None;
                }
            },
            None => None,
        };
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            bytes: bytes.to_vec(),
            counters,
            keys,
            usage: usage(),
            replay: replay(),
            crypto,
            remote,
            scheduler: Mutex::new(scheduler),
        });
        let ticker = shared.remote.is_some().then(|| {
            // The first fetches now, then a tick every second.
            shared.commit(EVENT_TICK);
            let stop = Arc::new(AtomicBool::new(false));
            let (weak, flag) = (Arc::downgrade(&shared), Arc::clone(&stop));
            let thread = std::thread::spawn(move || tick(&weak, &flag));
            (stop, thread)
        });
        Some(ModuleConfig { shared, ticker })
    }

    /// A config-level scheduled event (main thread): fetches.
    pub fn on_scheduled(&self, handle: ConfigHandle<'_>, event: u64) {
        jwks::on_scheduled(&self.shared, handle, event);
    }

    /// A config-level HTTP call answered (main thread): a key fetch.
    pub fn on_callout_done(&self, handle: ConfigHandle<'_>, callout: u64, answer: CalloutAnswer<'_>) {
        jwks::on_callout_done(&self.shared, handle, callout, answer);
    }
}

/// The tick thread: commits [`EVENT_TICK`] every second until stopped.
fn tick(shared: &Weak<Shared>, stop: &AtomicBool) {
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
        if waited >= Duration::from_secs(1) {
            waited = Duration::ZERO;
            match shared.upgrade() {
                Some(s) => s.commit(EVENT_TICK),
                None => return,
            }
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

    /// Runs `f` with this worker's engine for this configuration, compiling it on
    /// the worker's first request. `None` if it cannot be compiled (it compiled
    /// at load, so only an internal error gets here; the caller answers 503).
    pub fn with_engine<R>(self: &Arc<Self>, f: impl FnOnce(&mut Engine) -> R) -> Option<R> {
        ENGINES.with(|engines| {
            let mut engines = engines.try_borrow_mut().ok()?;
            engines.retain(|(w, _)| w.strong_count() > 0);
            let position = engines.iter().position(|(w, _)| w.upgrade().is_some_and(|s| s.id == self.id));
            let index = match position {
                Some(i) => i,
                None => {
                    let config = Config::from_plugin_bytes(&self.bytes).ok()?;
                    engines.push((Arc::downgrade(self), Engine::new(config)));
                    engines.len() - 1
                }
            };
            let (_, engine) = engines.get_mut(index)?;
            Some(f(engine))
        })
    }
}
