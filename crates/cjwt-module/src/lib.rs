//! The Envoy dynamic-module adapter (`libcjwt.so`, SPEC §13): the same core as
//! `cjwt.wasm`, loaded natively by `envoy.filters.http.dynamic_modules`.
//!
//! Nothing here decides. [`ffi`] is the only `unsafe` code (the C ABI and the
//! hooks, each catching panics); [`config`] compiles the plugin configuration once
//! and keeps what all workers share (keys, the `max_uses` count, counters);
//! [`stream`] reads one request, asks the core, and executes the core's plan;
//! [`host`] is the request as the core sees it; [`jwks`] runs the core's key
//! fetcher on Envoy's main thread, one fetch per Envoy.

pub mod config;
pub mod ffi;
pub mod host;
pub mod jwks;
pub mod stream;
