//! Any bytes as what an identity provider answers (SPEC §3): a fetched key set
//! and an OIDC discovery document. Never a panic; an accepted key set holds at
//! least one key, no shared secret (`oct` is never taken from the network), no
//! key outside the provider's algorithms and no two keys with one `kid`; a
//! discovery document gives a path on the configured authority only. The first
//! byte picks the case (even: key set, odd: discovery document).
#![no_main]

use cjwt_core::config::Config;
use cjwt_core::jwks::parse::{jwks_path_from_discovery, parse_remote_jwks};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::key::KeyMaterial;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::OnceLock;

const ISSUER: &str = "https://idp.example";
const AUTHORITY: &str = "idp.example";

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let cfg = serde_json::json!({"providers": [{"name": "idp", "issuer": ISSUER,
            "algorithms": ["EdDSA", "ES256", "RS256", "PS256"],
            "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]});
        Config::from_json(cfg.to_string().as_bytes()).expect("fuzz config compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((case, body)) = data.split_first() else { return };
    if case % 2 == 0 {
        let Ok(fetched) = parse_remote_jwks(config(), 0, body) else { return };
        assert!(!fetched.keys.is_empty(), "an empty key set was accepted");
        let allowed = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256, Algorithm::PS256];
        let mut kids = HashSet::new();
        for key in &fetched.keys {
            assert!(!matches!(key.material, KeyMaterial::Hmac(_)), "a shared secret from the network");
            assert!(key.algs.iter().next().is_some(), "a key for no algorithm");
            assert!(key.algs.iter().all(|a| allowed.contains(&a)), "a key for an unconfigured algorithm");
            if let Some(kid) = &key.kid {
                assert!(kids.insert(kid.clone()), "two keys with kid {kid:?}");
            }
        }
    } else if let Ok(path) = jwks_path_from_discovery(body, ISSUER, AUTHORITY) {
        assert!(path.starts_with('/'), "path {path:?}");
        assert!(!path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'#'), "path {path:?}");
        let doc: serde_json::Value = serde_json::from_slice(body).expect("an accepted document is JSON");
        let uri = doc["jwks_uri"].as_str().expect("jwks_uri").to_ascii_lowercase();
        let on_authority = [format!("https://{AUTHORITY}"), format!("http://{AUTHORITY}")]
            .iter()
            .any(|o| uri.strip_prefix(o.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
        assert!(on_authority, "jwks_uri {uri:?} is not on {AUTHORITY}");
    }
});
