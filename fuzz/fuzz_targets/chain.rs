//! Delegation chains (SPEC §16) with fuzzed links: a validly signed root token
//! bound to holder 1 (`cnf.jkt`) with `methods: [GET]` and `paths: [/a/**]`,
//! presented with a `cjwt-chain` header and a DPoP proof by holder 2. The
//! input's first byte picks the case, the rest is split on 0xff:
//!
//! - 0: the raw `cjwt-chain` header (any bytes) — never allowed (no link
//!   signed by holder 1 can come of random bytes);
//! - 1: one link signed by holder 1 whose protected header and claims are
//!   fuzzed JSON laid over a valid link's, with a fuzzed method and path —
//!   allowed only when the link is holder 1's, names the root, binds holder 2,
//!   lives within the root, and the request keeps the root's constraints (an
//!   input of the case byte alone is the valid request, which must be allowed);
//! - 2: any text through `chain::inspect` (the CLI's reader): never a panic.
//!
//! No case may panic.
#![no_main]

mod common;

use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{dpop_proof, jkt, mint, mint_raw, SigningKey};
use cjwt_core::reason::Reason;
use cjwt_core::request::static_host::StaticHost;
use cjwt_core::sender::replay::ProcessReplay;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sha2::Digest;
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;

struct Fixture {
    holder: SigningKey,
    leaf: SigningKey,
    root: String,
    config: Config,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let holder = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]));
        let leaf = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]));
        let claims = json!({"iss": "https://i", "aud": "a", "sub": "s", "jti": "r", "exp": NOW + 600,
            "cnf": {"jkt": jkt(&holder).expect("jkt")}, "cnst": {"methods": ["GET"], "paths": ["/a/**"]}});
        let root = mint(&common::hs256_key(), Some("k"), &claims);
        let cfg = json!({
            "providers": [{"name": "p", "issuer": "https://i", "audiences": ["a"],
                "jwks": {"keys": [{"kty": "oct", "alg": "HS256", "kid": "k", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}]}}],
            "sender_constraints": {"dpop": {}},
        });
        let config = Config::from_json(cfg.to_string().as_bytes()).expect("fuzz config compiles");
        Fixture { holder, leaf, root, config }
    })
}

fn decide(config: &Config, host: &StaticHost) -> Result<(), Reason> {
    let mut engine = Engine::new(config.clone());
    let replay = ProcessReplay::new();
    match engine.decide_with(host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay).decision {
        Decision::Allow { .. } => Ok(()),
        Decision::Deny(d) | Decision::DryRunDeny(d) => Err(d.reason),
    }
}

fn request(f: &Fixture, method: &[u8], path: &[u8], chain: &[u8]) -> StaticHost {
    let m = String::from_utf8_lossy(method);
    let p = String::from_utf8_lossy(path);
    let url = format!("https://api.example.com{p}");
    let proof = dpop_proof(&f.leaf, &m, &url, Some(&f.root), NOW, "p", None).expect("proof");
    common::host(method, path, b"api.example.com", b"127.0.0.1:1", NOW)
        .header(":scheme", "https")
        .header("authorization", &format!("DPoP {}", f.root))
        .header("dpop", &proof)
        .header_bytes("cjwt-chain", chain.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((case, rest)) = data.split_first() else { return };
    let mut parts = common::fields(rest);
    let mut field = |default: &[u8]| parts.next().map(<[u8]>::to_vec).unwrap_or_else(|| default.to_vec());
    match case % 3 {
        0 => {
            let host = request(f, b"GET", b"/a/b", rest);
            assert!(decide(&f.config, &host).is_err(), "a random chain was accepted");
        }
        1 => {
            let holder_jkt = jkt(&f.holder).expect("jkt");
            let leaf_jkt = jkt(&f.leaf).expect("jkt");
            let signing_input = &f.root[..f.root.rfind('.').expect("root is a JWS")];
            let par_hash = b64::encode(&sha2::Sha256::digest(signing_input.as_bytes()));
            let base_header = json!({"typ": "cjwt-link+jwt", "alg": "EdDSA", "jwk": f.holder.public_jwk(None)});
            let base_claims = json!({"iss": holder_jkt, "jti": "l", "iat": NOW, "exp": NOW + 300,
                "par_hash": par_hash, "del_depth": 1, "cnf": {"jkt": leaf_jkt}, "cnst": {"paths": ["/a/b"]}});
            let header = common::overlay(base_header, &field(b"{}"));
            let claims = common::overlay(base_claims, &field(b"{}"));
            let method = field(b"GET");
            let path = field(b"/a/b");
            let link = mint_raw(&f.holder, &header, &claims);
            let verdict = decide(&f.config, &request(f, &method, &path, link.as_bytes()));
            assert!(verdict.is_ok() || !rest.is_empty(), "the valid chain was refused: {verdict:?}");
            if verdict.is_ok() {
                let c: Value = serde_json::from_str(&claims).expect("an allowed link's claims are JSON");
                assert_eq!(c["iss"].as_str(), Some(holder_jkt.as_str()), "iss {c}");
                assert_eq!(c["par_hash"].as_str(), Some(par_hash.as_str()), "par_hash {c}");
                assert_eq!(c["cnf"]["jkt"].as_str(), Some(leaf_jkt.as_str()), "cnf {c}");
                assert!(c["exp"].as_f64().is_some_and(|e| e <= (NOW + 600) as f64), "exp {c}");
                // The root's constraints still hold, whatever the link says.
                assert_eq!(method.as_slice(), b"GET", "method {c}");
                assert!(path.starts_with(b"/a/"), "path {:?} {c}", String::from_utf8_lossy(&path));
            }
        }
        _ => {
            let _ = cjwt_core::chain::inspect(&String::from_utf8_lossy(rest));
        }
    }
});
