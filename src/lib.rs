//! cjwt: constraint JWTs enforced inside Envoy and Istio.
//!
//! [`core`] decides (configuration, token verification, constraints, rules) with
//! no dependency on the proxy; [`filter`] is the thin proxy-wasm adapter, built
//! only for `wasm32`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod core;

#[cfg(feature = "cli")]
pub mod mint;
#[cfg(feature = "cli")]
pub mod reference;

#[cfg(target_arch = "wasm32")]
mod filter;
