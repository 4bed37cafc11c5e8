//! The compiled plugin configuration: parsed and validated once, immutable after.
//!
//! [`Config::from_json`] is the only way to build one. Every error names the
//! field it is about (`providers[0].jwks.keys[1]: …`), so an operator can fix it
//! from the single log line Envoy shows when it refuses the configuration.
//!
//! The code is split by what a reader looks for (the types are re-exported here,
//! so `cjwt_core::config::Config` is the one path to them):
//!
//! - `model.rs`: the compiled types the request path reads ([`Config`], [`Provider`], [`Rule`], …);
//! - `compile.rs`: [`raw`] → model, defaults and limits, field-named errors;
//! - `denylist.rs`: the compiled `revocation` entries ([`DenyList`]);
//! - `load.rs`: the plugin bytes (JSON or a protobuf `Struct`, [`pb_struct`]) → [`Config`];
//! - [`raw`]: the configuration exactly as written (strict serde shapes).

mod compile;
mod denylist;
mod load;
mod model;
pub mod pb_struct;
pub mod raw;

pub use compile::{
    normalize_typ, parse_jwks, DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES, DEFAULT_CLOCK_SKEW, DEFAULT_MAX_TOKEN_BYTES,
    DPOP_SCHEME, MAX_CACHE_BYTES, MAX_CACHE_ENTRIES, MAX_CLOCK_SKEW, MAX_MAX_TOKEN_BYTES, MAX_STATUS_LIST_BYTES,
    MAX_USAGE_TIMEOUT_MS, NOT_ACCESS_TOKEN_TYPES,
};
pub use denylist::{DenyList, Duplicate};
pub use load::Capabilities;
pub use model::{
    Allowance, Attribute, Auth, ClaimCheck, ClientIpSource, Config, ConfigError, Dpop, EtcdStore, Forward, JwksSource,
    Mode, MtlsSource, NonceKey, Provider, RegionSource, RemoteJwks, Require, Rule, RuleMatch, SenderConstraints,
    SpanField, StatusListSource, TokenSource,
};
pub use model::{Attenuation, Caller, ProviderKind, TxnDomain, TxnExchange, TxnIssue};

#[cfg(test)]
mod tests;
