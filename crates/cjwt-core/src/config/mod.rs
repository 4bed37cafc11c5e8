//! The compiled plugin configuration: parsed and validated once, immutable after.
//!
//! [`Config::from_json`] is the only way to build one. Every error names the
//! field it is about (`providers[0].jwks.keys[1]: …`), so an operator can fix it
//! from the single log line Envoy shows when it refuses the configuration.

mod compile;
pub mod pb_struct;
pub mod raw;

pub use compile::*;
