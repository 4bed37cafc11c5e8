//! Shared by the fuzz targets: a request host, a configuration, and the
//! splitting and overlaying of fuzzed bytes.
#![allow(dead_code)]

use cjwt_core::config::Config;
use cjwt_core::request::static_host::StaticHost;
use std::sync::OnceLock;

/// A request with the given pseudo-headers, peer and clock; the node metadata
/// answers `eu-west-1` for the configured region key.
pub fn host(method: &[u8], path: &[u8], authority: &[u8], peer: &[u8], now: i64) -> StaticHost {
    StaticHost::new()
        .header_bytes(":method", method)
        .header_bytes(":path", path)
        .header_bytes(":authority", authority)
        .property_bytes(&["source", "address"], peer)
        .property(&["xds", "node", "metadata", "REGION"], "eu-west-1")
        .at(now)
}

/// An HS256 provider (cheap to sign in the fuzzer) with rules, custom constraints
/// and forwarding, so that every part of the decision is reachable. Compiled
/// once per process and cloned for each input (compiling it for every input
/// was most of an execution).
pub fn config() -> Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(compile).clone()
}

fn compile() -> Config {
    let cfg = serde_json::json!({
        "providers": [{"name": "p", "issuer": "https://i", "audiences": ["a"],
            "jwks": {"keys": [{"kty": "oct", "alg": "HS256", "kid": "k", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}]}}],
        "region": {"node_metadata": "REGION"},
        "client_ip": {"from": "peer"},
        "custom_constraints": {"tenant": {"header": "x-tenant"}, "seg": {"path_segment": 1}, "q": {"query": "q"}},
        "token_from": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}, {"cookie": "jwt"}],
        "rules": [
            {"match": {"path": "/health"}, "auth": "none"},
            {"match": {"path": "/opt/**"}, "auth": "optional"},
            {"match": {"path": "/admin/**", "methods": ["GET"], "hosts": ["*.example.com"]},
             "require": {"roles_any": ["admin"], "scopes_all": ["s"], "claims": [{"claim": "t", "equals_header": "x-tenant"}, {"claim": "a.b", "present": true}]}}
        ],
        "forward": {"claims_to_headers": [{"claim": "sub", "header": "x-sub"}], "payload_header": "x-payload", "remove_token": true},
        "max_lifetime_seconds": 86400,
        "cache": {"max_entries": 8}
    });
    Config::from_json(cfg.to_string().as_bytes()).expect("fuzz config compiles")
}

pub fn hs256_key() -> cjwt_core::mint::SigningKey {
    let secret = cjwt_core::encoding::b64::decode(b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").expect("secret");
    cjwt_core::mint::SigningKey::Hmac(secret, cjwt_core::keys::algorithm::Algorithm::HS256)
}

/// The fields of `rest`, separated by `0xff` bytes; none at all when `rest`
/// is empty (splitting an empty input would give one empty field).
pub fn fields(rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    rest.split(|b| *b == 0xff).take(if rest.is_empty() { 0 } else { usize::MAX })
}

/// `base` with the members of `fuzzed` (a JSON object) laid over it, or
/// `fuzzed` as it is when it is not an object.
pub fn overlay(mut base: serde_json::Value, fuzzed: &[u8]) -> String {
    match (serde_json::from_slice::<serde_json::Value>(fuzzed), base.as_object_mut()) {
        (Ok(serde_json::Value::Object(over)), Some(map)) => {
            map.extend(over);
            base.to_string()
        }
        _ if fuzzed == b"{}" => base.to_string(),
        _ => String::from_utf8_lossy(fuzzed).into_owned(),
    }
}
