//! The root context: compiles the plugin configuration once per VM and hands
//! each HTTP stream a handle to the shared engine.

use super::host::EnvoyCrypto;
use super::http::CjwtHttp;
use super::jwks::{self, FetchState};
use super::metrics::Metrics;
use cjwt_core::config::Config;
use cjwt_core::engine::Engine;
use cjwt_core::jwks::store::KeyStore;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// Per-VM state shared by every stream of the VM (a VM is single-threaded).
pub struct Shared {
    pub engine: RefCell<Engine>,
    pub metrics: Metrics,
    pub crypto: EnvoyCrypto,
    /// Keys fetched from remote JWKS, per provider.
    pub keys: RefCell<KeyStore>,
    pub fetches: RefCell<Vec<FetchState>>,
    /// The root context's id: key fetches are dispatched from it, so that their
    /// answers arrive even when the stream that needed them is gone (SEC-12.3).
    pub root_context: u32,
}

pub struct CjwtRoot {
    id: u32,
    shared: Option<Rc<Shared>>,
}

impl CjwtRoot {
    pub fn new(id: u32) -> CjwtRoot {
        CjwtRoot { id, shared: None }
    }
}

impl Context for CjwtRoot {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Some(shared) = &self.shared {
            jwks::on_response(shared, token_id, body_size);
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
        match Config::from_plugin_bytes(&bytes) {
            Ok(config) => {
                let crypto = EnvoyCrypto::probe();
                let verifier = if crypto.available { "the host (BoringSSL)" } else { "pure Rust in wasm" };
                log::info!(
                    "cjwt: configuration accepted ({} provider(s), {} rule(s), mode {:?}; RS*/ES* verified by {verifier})",
                    config.providers.len(),
                    config.rules.len(),
                    config.mode
                );
                let providers = config.providers.len();
                let remote: Vec<usize> =
                    config.providers.iter().enumerate().filter(|(_, p)| p.remote.is_some()).map(|(i, _)| i).collect();
                let shared = Rc::new(Shared {
                    engine: RefCell::new(Engine::new(config)),
                    metrics: Metrics::define(),
                    crypto,
                    keys: RefCell::new(KeyStore::new(providers)),
                    fetches: RefCell::new(vec![FetchState::default(); providers]),
                    root_context: self.id,
                });
                if !remote.is_empty() {
                    // Fetch now (worker VMs answer within ~100 ms), then refresh from the tick.
                    let _ = proxy_wasm::hostcalls::set_tick_period(std::time::Duration::from_secs(1));
                    if let Ok(engine) = shared.engine.try_borrow() {
                        for p in remote {
                            jwks::start_fetch(&shared, &engine.config, p, None);
                        }
                    }
                }
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
            jwks::on_tick(shared);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
