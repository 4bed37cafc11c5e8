//! The root context: compiles the plugin configuration once per VM and hands
//! each HTTP stream a handle to the shared engine.

use super::host::EnvoyCrypto;
use super::http::CjwtHttp;
use super::metrics::Metrics;
use crate::core::config::Config;
use crate::core::decide::Engine;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// Per-VM state shared by every stream of the VM (a VM is single-threaded).
pub struct Shared {
    pub engine: RefCell<Engine>,
    pub metrics: Metrics,
    pub crypto: EnvoyCrypto,
}

#[derive(Default)]
pub struct CjwtRoot {
    shared: Option<Rc<Shared>>,
}

impl Context for CjwtRoot {}

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
                let engine = RefCell::new(Engine::new(config));
                self.shared = Some(Rc::new(Shared { engine, metrics: Metrics::define(), crypto }));
                true
            }
            Err(e) => {
                log::error!("cjwt: configuration refused: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CjwtHttp::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
