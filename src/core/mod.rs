//! The host-independent core: no `proxy_wasm` import anywhere below this module.
//! It builds and tests natively; the adapter in `crate::filter` maps hostcalls
//! onto [`host::Host`] and [`host::UsageCounter`].

pub mod algorithm;
pub mod b64;
pub mod cache;
pub mod config;
pub mod constraints;
pub mod credential;
pub mod decide;
pub mod forward;
pub mod host;
pub mod hostsig;
pub mod ip;
pub mod json;
pub mod jws;
pub mod keys;
pub mod keystore;
pub mod pattern;
pub mod query;
pub mod reason;
pub mod response;
pub mod rsa_verify;
pub mod tz;
#[rustfmt::skip]
pub mod tzdb;
pub mod usage;
pub mod usage_etcd;
pub mod verify;
pub mod window;
