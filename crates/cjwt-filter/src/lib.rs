//! The proxy-wasm adapter (`cjwt.wasm`): maps Envoy's callbacks and hostcalls onto
//! [`cjwt_core`]. Nothing here decides; it reads, calls
//! [`cjwt_core::Engine`], and acts. Built only for `wasm32`: natively this
//! crate is empty (its integration tests drive the built `.wasm` in a real Envoy).

#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod remote;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(target_arch = "wasm32")]
mod state;
#[cfg(target_arch = "wasm32")]
mod usage;
#[cfg(all(target_arch = "wasm32", feature = "vm-bench"))]
mod vm_bench;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::CjwtRoot::new(context_id))
    });
}}
