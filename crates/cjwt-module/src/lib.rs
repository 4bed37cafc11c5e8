//! The Envoy dynamic-module adapter (`libcjwt.so`, SPEC §13): the same core as
//! `cjwt.wasm`, loaded natively by `envoy.filters.http.dynamic_modules`.
//!
//! Nothing here decides. [`ffi`] is the ABI floor (the C types, Envoy's
//! callbacks, safe handles over its pointers; it imports nothing of this crate)
//! and [`hooks`] the `envoy_dynamic_module_on_*` functions Envoy calls (each
//! catching panics): the only two modules that allow `unsafe_code`, `hooks`
//! only for `#[no_mangle]` and its calls into the floor. [`config`] compiles the
//! plugin configuration once and keeps what all workers share (keys, the
//! `max_uses` count, counters); [`stream`] reads one request, asks the core, and
//! executes the core's plan; [`host`] is the request as the core sees it;
//! [`background`] is the host of the core's background driver on Envoy's main
//! thread: key sets and status lists fetched once per Envoy, leased
//! allowances' refills.

pub mod background;
pub mod config;
pub mod ffi;
pub mod hooks;
pub mod host;
pub mod stream;
