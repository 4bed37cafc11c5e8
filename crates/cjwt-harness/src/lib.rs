//! Shared test helpers: a fake host for the native core tests, and keys.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test and bench tooling: a failed setup stops loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::SigningKey;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub mod claim;
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

/// An engine for [`config_json`]`(extra)`.
pub fn engine(extra: Value) -> cjwt_core::engine::Engine {
    cjwt_core::engine::Engine::new(
        cjwt_core::config::Config::from_json(config_json(extra).to_string().as_bytes()).unwrap(),
    )
}

/// An EdDSA token signed with `k1` (the key of [`config_json`]) carrying [`claims`]`(extra)`.
pub fn eddsa(extra: Value) -> String {
    cjwt_core::mint::mint(key(Algorithm::EdDSA), Some("k1"), &claims(extra))
}

/// The reason `engine` refuses `host` (inline keys, pure-Rust crypto, a fresh
/// per-call counter), or `None` when it allows it.
pub fn verdict(engine: &mut cjwt_core::engine::Engine, host: &StaticHost) -> Option<cjwt_core::reason::Reason> {
    verdict_with(engine, host, &mut cjwt_core::request::host::MemoryCounter::default())
}

/// [`verdict`] with the caller's usage counter (`max_uses` across calls); in
/// `dry_run`, the reason the request would be refused for.
pub fn verdict_with(
    engine: &mut cjwt_core::engine::Engine,
    host: &StaticHost,
    counter: &mut cjwt_core::request::host::MemoryCounter,
) -> Option<cjwt_core::reason::Reason> {
    use cjwt_core::engine::Decision;
    let out =
        engine.decide(host, &cjwt_core::token::verify::InlineOnly, &cjwt_core::keys::host_crypto::PureRust, counter);
    match out.decision {
        Decision::Allow { .. } => None,
        Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
    }
}

/// A `jti` unique to this call in this process (and across runs: the pid and the clock).
pub fn unique_jti(tag: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!("{tag}-{}-{}-{}", std::process::id(), now(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

/// `Bearer <token>` for an EdDSA token (`k1`) with `jti`, `max_uses` (if any),
/// valid for `ttl` seconds from now.
pub fn use_token(jti: &str, max_uses: Option<u64>, ttl: i64) -> String {
    let t0 = now();
    let cnst = max_uses.map_or(json!({}), |n| json!({"max_uses": n}));
    let claims = claims_at(t0, json!({"jti": jti, "exp": t0 + ttl, "cnst": cnst}));
    format!("Bearer {}", cjwt_core::mint::mint(key(Algorithm::EdDSA), Some("k1"), &claims))
}
