//! One filter configuration: compiled once on the main thread (a configuration
//! error refuses to load, naming the field), then shared by every worker:
//! counters, the per-process `max_uses` count, and the key store. Each worker
//! thread keeps its own [`Engine`] (the verified-token cache is per worker, as in
//! the wasm build, and needs no lock).

use crate::ffi::{log, CalloutAnswer, ConfigHandle, Level};
use cjwt_core::config::{Config, RegionSource};
use cjwt_core::engine::Engine;
use cjwt_core::jwks::store::KeyStore;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::usage::process::ProcessCounter;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

/// What every worker of one configuration shares.
pub struct Shared {
    /// This configuration's number (per-thread engines are keyed by it).
    pub id: u64,
    /// The plugin configuration as given (each worker compiles its own engine).
    pub bytes: Vec<u8>,
    /// Counter ids by [`Counter::index`]; `None` where the host refused one.
    pub counters: Vec<Option<usize>>,
    /// Remote key sets, one store for the whole process.
    pub keys: RwLock<KeyStore>,
    /// `max_uses`, counted once for every worker of this Envoy.
    pub usage: ProcessCounter,
    /// Signature verification beyond the core's own (none yet: the core verifies).
    pub crypto: PureRust,
}

/// The object Envoy holds for one filter configuration.
pub struct ModuleConfig {
    /// Shared with every stream of the configuration.
    pub shared: Arc<Shared>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This worker's engines, one per live configuration.
    static ENGINES: RefCell<Vec<(Weak<Shared>, Engine)>> = const { RefCell::new(Vec::new()) };
}

impl ModuleConfig {
    /// Compiles the configuration and defines the counters (Envoy allows that only
    /// here). `None` refuses the configuration; the reason is logged first.
    pub fn new(handle: ConfigHandle<'_>, bytes: &[u8]) -> Option<ModuleConfig> {
        let config = match Config::from_plugin_bytes(bytes) {
            Ok(c) => c,
            Err(e) => {
                log(Level::Error, &format!("cjwt: configuration refused: {e}"));
                return None;
            }
        };
        if let Some(RegionSource::NodeMetadata(_)) = config.region {
            log(
                Level::Error,
                "cjwt: configuration refused: region.node_metadata: the native module cannot read node metadata \
                 (Envoy 1.40's dynamic-module ABI has no such call); use region.header or region.static",
            );
            return None;
        }
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
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            bytes: bytes.to_vec(),
            counters,
            keys: RwLock::new(KeyStore::new(config.providers.len())),
            usage: ProcessCounter::new(),
            crypto: PureRust,
        });
        Some(ModuleConfig { shared })
    }

    /// A config-level scheduled event (main thread).
    pub fn on_scheduled(&self, _handle: ConfigHandle<'_>, _event: u64) {}

    /// A config-level HTTP call answered (main thread).
    pub fn on_callout_done(&self, _handle: ConfigHandle<'_>, _callout: u64, _answer: CalloutAnswer<'_>) {}
}

impl Shared {
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
