//! Shared test helpers: a fake host for the native core tests, and keys.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test and bench tooling: a failed setup stops loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::SigningKey;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub mod docker;
pub mod envoy;
pub mod etcd;
pub mod h2;
pub mod said;

/// A request as the core sees it, with a fixed clock: the core's one static host.
pub use cjwt_core::request::static_host::StaticHost;

/// 2026-11-30T10:00:00Z, a Monday: the clock a [`StaticHost`] starts with.
pub const NOW: i64 = cjwt_core::request::static_host::NOW;

/// One key per algorithm, generated once per test binary.
pub fn key(alg: Algorithm) -> &'static SigningKey {
    static KEYS: OnceLock<Vec<(Algorithm, SigningKey)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let rsa = SigningKey::generate(Algorithm::RS256).unwrap();
        let rsa_pem = rsa.to_pem().unwrap();
        Algorithm::ALL
            .iter()
            .map(|a| {
                // One RSA key serves every RSA algorithm: RSA key generation is slow.
                let k = if a.is_rsa() {
                    SigningKey::from_pem(*a, &rsa_pem).unwrap()
                } else {
                    SigningKey::generate(*a).unwrap()
                };
                (*a, k)
            })
            .collect()
    });
    &keys.iter().find(|(a, _)| *a == alg).unwrap().1
}

/// Standard claims valid at [`NOW`].
pub fn claims(extra: Value) -> Value {
    claims_at(NOW, extra)
}

/// The real current time, Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Standard claims valid at `now`.
pub fn claims_at(now: i64, extra: Value) -> Value {
    let mut base = json!({"iss": "https://idp.example.com", "sub": "alice", "aud": "orders-api", "iat": now - 60, "exp": now + 600});
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

/// A plugin configuration with one provider holding the EdDSA key as `k1`,
/// merged with `extra` top-level fields.
pub fn config_json(extra: Value) -> Value {
    let mut base = json!({
        "providers": [{
            "name": "corp",
            "issuer": "https://idp.example.com",
            "audiences": ["orders-api"],
            "jwks": {"keys": [key(Algorithm::EdDSA).public_jwk(Some("k1"))]}
        }]
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    base
}
