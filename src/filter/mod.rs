//! The proxy-wasm adapter: maps Envoy's callbacks and hostcalls onto the core.
//! Nothing here decides; it reads, calls [`crate::core::decide::Engine`], and acts.

mod host;
mod http;
mod jwks;
mod metrics;
mod root;
#[cfg(feature = "vm-bench")]
mod vm_bench;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::CjwtRoot::new(context_id))
    });
}}
