//! The Envoy integration suites live in `tests/`: each starts a real Envoy 1.40
//! (from the project virtualenv, or in Docker with `CJWT_ENVOY_DOCKER`) with cjwt
//! loaded as the build named by `CJWT_BUILD` (`wasm`, the default, or `native`),
//! and checks what clients get and what the upstream sees. This crate has no code
//! of its own; `crates/cjwt-harness` drives Envoy.
