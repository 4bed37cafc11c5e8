//! Test support (feature `testing`, never in the filter): the fixtures every test
//! level shares (keys, claims, configurations, a verdict on a static host), the one
//! table of request cases ([`cases`]) that the core and both Envoy builds run, and
//! reference implementations that cjwt's own code is checked against.
//!
//! The Envoy/etcd/Docker harness (crate `cjwt-harness`) re-exports everything
//! here; the core's own tests use this module alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test fixtures: a failed setup stops loudly

pub mod cases;
pub mod reference;

use crate::keys::algorithm::Algorithm;
use crate::mint::SigningKey;
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A request as the core sees it, with a fixed clock: the core's one static host.
pub use crate::request::static_host::StaticHost;

/// 2026-11-30T10:00:00Z, a Monday: the clock a [`StaticHost`] starts with.
pub const NOW: i64 = crate::request::static_host::NOW;

/// One key per algorithm, generated once per test process.
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

/// Standard claims valid at `now`, merged with `extra` (a `null` removes a claim).
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
pub fn engine(extra: Value) -> crate::engine::Engine {
    engine_for(&config_json(extra))
}

/// `config` as a configuration built by hand with its usage store missing
/// (compiling refuses what this leaves; the engine must still fail closed).
pub fn without_usage_store(mut config: crate::config::Config) -> crate::config::Config {
    config.usage_store = None;
    config
}

/// `config` as built by hand with its Txn-Token issuing left without a default
/// scope (compiling refuses a rule that would then issue none).
pub fn without_txn_scope(mut config: crate::config::Config) -> crate::config::Config {
    if let Some(issue) = config.txn_issue.as_mut() {
        issue.scope = None;
    }
    config
}

/// An engine for the plugin configuration `config`.
pub fn engine_for(config: &Value) -> crate::engine::Engine {
    crate::engine::Engine::new(crate::config::Config::from_json(config.to_string().as_bytes()).unwrap())
}

/// An EdDSA token signed with `k1` (the key of [`config_json`]) carrying [`claims`]`(extra)`.
pub fn eddsa(extra: Value) -> String {
    crate::mint::mint(key(Algorithm::EdDSA), Some("k1"), &claims(extra))
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `Bearer <token>` for a token `key` signs as `kid`, carrying `claims` as they are.
pub fn bearer_signed(key: &SigningKey, kid: &str, claims: &Value) -> String {
    bearer(&crate::mint::mint(key, Some(kid), claims))
}

/// `Bearer <token>` for an EdDSA token (`k1`, the key of [`config_json`]) carrying
/// [`claims_at`]`(now(), extra)`: valid by the real clock (a real Envoy's).
pub fn bearer_now(extra: Value) -> String {
    bearer_signed(key(Algorithm::EdDSA), "k1", &claims_at(now(), extra))
}

/// A JWKS document (as text) holding the public keys of `keys`, each with its `kid`.
pub fn jwks(keys: &[(&SigningKey, &str)]) -> String {
    json!({"keys": keys.iter().map(|(k, kid)| k.public_jwk(Some(kid))).collect::<Vec<_>>()}).to_string()
}

/// The trust domain of the Txn-Token tests (SPEC §14).
pub const TRUST_DOMAIN: &str = "mesh.example";

/// A Txn-Token (`typ: txntoken+jwt`) that `key` signs as `kid`, carrying `claims` as they are.
pub fn txn_token(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": key.alg().name(), "typ": "txntoken+jwt", "kid": kid});
    crate::mint::mint_raw(key, &header.to_string(), &claims.to_string())
}

/// Txn-Token claims valid at `now` in [`TRUST_DOMAIN`], merged with `extra`
/// (a `null` removes a claim).
pub fn txn_claims(now: i64, extra: Value) -> Value {
    let mut base = json!({
        "aud": TRUST_DOMAIN, "txn": "txn-1", "sub": "alice", "scope": "orders.read",
        "req_wl": "gateway.mesh.example", "iat": now - 5, "exp": now + 55,
        "rctx": {"req_ip": "192.0.2.10", "authn": "bearer"},
        "tctx": {"iss": "https://idp.example.com"}
    });
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

/// `engine`'s outcome for `host` with inline keys, pure-Rust crypto, a fresh
/// per-call counter and no replay cache (a DPoP-bound token is refused).
pub fn decide_inline(engine: &mut crate::engine::Engine, host: &StaticHost) -> crate::engine::Outcome {
    engine.decide_with(
        host,
        &crate::token::verify::InlineOnly,
        &crate::keys::host_crypto::PureRust,
        &mut crate::usage::MemoryCounter::default(),
        &mut crate::sender::replay::NoReplayCache,
    )
}

/// The reason `engine` refuses `host` (inline keys, pure-Rust crypto, a fresh
/// per-call counter), or `None` when it allows it.
pub fn verdict(engine: &mut crate::engine::Engine, host: &StaticHost) -> Option<crate::reason::Reason> {
    verdict_with(engine, host, &mut crate::usage::MemoryCounter::default())
}

/// [`verdict`] with the caller's usage counter (`max_uses` across calls); in
/// `dry_run`, the reason the request would be refused for.
pub fn verdict_with(
    engine: &mut crate::engine::Engine,
    host: &StaticHost,
    counter: &mut crate::usage::MemoryCounter,
) -> Option<crate::reason::Reason> {
    use crate::engine::Decision;
    let out = engine.decide_with(
        host,
        &crate::token::verify::InlineOnly,
        &crate::keys::host_crypto::PureRust,
        counter,
        &mut crate::sender::replay::NoReplayCache,
    );
    match out.decision {
        Decision::Allow { .. } => None,
        Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
    }
}

/// [`verdict`] when the mesh-wide usage store (`usage_store`) does not answer: a
/// use the engine asks the store to count is settled as unavailable.
pub fn verdict_store_silent(engine: &mut crate::engine::Engine, host: &StaticHost) -> Option<crate::reason::Reason> {
    use crate::engine::Decision;
    let mut counter = crate::usage::MemoryCounter::default();
    let mut out = engine.decide_with(
        host,
        &crate::token::verify::InlineOnly,
        &crate::keys::host_crypto::PureRust,
        &mut counter,
        &mut crate::sender::replay::NoReplayCache,
    );
    if out.pending_use.is_some() {
        let answer = crate::usage::etcd::UseAnswer::Unavailable("the store did not answer".into());
        out = crate::engine::settle(engine.config().mode, out, &answer);
    }
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
    bearer_signed(key(Algorithm::EdDSA), "k1", &claims)
}

/// Polls `f` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
