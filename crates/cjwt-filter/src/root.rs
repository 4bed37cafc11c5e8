//! The root context: compiles the plugin configuration once per VM, hands
//! each HTTP stream a handle to the shared state, and drives the fetches (the
//! tick and fetch answers, remote.rs); the requests a fetch releases are decided
//! again by the stream side (`http::answer_waiters`).

use super::host::EnvoyCrypto;
use super::http::{self, CjwtHttp};
use super::metrics::Metrics;
use super::remote::{self, Root};
use super::state::Shared;
use super::usage;
use cjwt_core::{BackgroundHost, Capabilities, Config, Engine, Fetched, Remote};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// The root context of one VM.
pub struct CjwtRoot {
    id: u32,
    shared: Option<Rc<Shared>>,
}

impl CjwtRoot {
    /// The root context `id`, not configured yet.
    pub fn new(id: u32) -> CjwtRoot {
        CjwtRoot { id, shared: None }
    }
}

impl Context for CjwtRoot {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, trailers: usize) {
        if let Some(shared) = &self.shared {
            http::on_call_response(shared, token_id, body_size, trailers, None);
        }
    }
}

impl RootContext for CjwtRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes =
            proxy_wasm::hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default();
        match Config::from_plugin_bytes_for(&bytes, Capabilities::WASM) {
            Ok(config) => {
                let crypto = EnvoyCrypto::probe();
                let verifier = if crypto.available { "the host (BoringSSL)" } else { "pure Rust in wasm" };
                log::info!("{}", config.accepted_line(&format!("RS*/ES* verified by {verifier}")));
                let keys = Fetched::new(config.provider_count());
                let remote = Remote::new(&config, lease_tag(self.id));
                let fetching = remote.is_active();
                let meshed = config.usage_store().is_some();
                let shared = Rc::new(Shared {
                    engine: RefCell::new(Engine::new(config)),
                    metrics: Metrics::define(),
                    crypto,
                    keys: RefCell::new(keys),
                    remote: RefCell::new(remote),
                    root_context: self.id,
                    woken: std::cell::Cell::new(false),
                    usage: RefCell::default(),
                    refills: RefCell::default(),
                });
                if fetching || meshed {
                    // Shared sets and lists, refreshes, usage waits whose answer was lost.
                    let _ = proxy_wasm::hostcalls::set_tick_period(remote::TICK_PERIOD);
                }
                // Start with the sets and lists another VM loaded, if any (SPEC §12). Its
                // own first fetches are the first tick's, 200 ms on: the VM Envoy configures
                // first on the main thread never receives answers and must not take a lease.
                Root::new(&shared, None).configure();
                self.shared = Some(shared);
                true
            }
            Err(e) => {
                log::error!("cjwt: configuration refused: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CjwtHttp::new(context_id, self.shared.clone())))
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            usage::on_tick(shared);
            let released = remote::on_tick(shared);
            http::answer_waiters(shared, released);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A tag for this VM's fetch leases: the host clock's nanoseconds at
/// configuration and the root context id (VMs of one Envoy configure at
/// different instants).
fn lease_tag(root: u32) -> u64 {
    let nanos = proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
    (nanos ^ (u64::from(root) << 48)).max(1)
}
