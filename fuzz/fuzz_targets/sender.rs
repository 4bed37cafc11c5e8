//! Sender-constrained tokens (SPEC §10) with fuzzed proofs and certificates: a
//! validly signed token bound to a DPoP key (`cnf.jkt`) or to a certificate
//! (`cnf.x5t#S256`), presented with fuzzed request parts. The input's first byte
//! picks the case, the rest is split on 0xff:
//!
//! - 0: the raw `DPoP` header (any bytes) — never allowed;
//! - 1: a proof signed with the bound key whose protected header and claims
//!   are fuzzed JSON, with a fuzzed method, URL and clock — allowed only when the
//!   proof names this method, this URL and this token (`ath`) and is fresh;
//! - 2: an `x-forwarded-client-cert` header (any bytes) for the certificate-bound
//!   token behind one trusted hop — never allowed unless it holds the bound
//!   certificate's digest;
//!
//! (in cases 1 and 2 an input of the case byte alone is the valid request,
//! which must be allowed);
//! - 3: any bytes as a stored replay-cache slot or ledger: never a panic.
//!
//! No case may panic.
#![no_main]

mod common;

use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{jkt, mint, mint_raw, SigningKey};
use cjwt_core::reason::Reason;
use cjwt_core::request::static_host::StaticHost;
use cjwt_core::sender::dpop::split_htu;
use cjwt_core::sender::replay::{record, ProcessReplay, ProofId};
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sha2::Digest;
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;
const URL: &str = "https://api.example.com/orders";
const DIGEST_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Fixture {
    holder: SigningKey,
    dpop_token: String,
    cert_token: String,
    /// The two configurations, compiled once; each input gets a fresh engine
    /// with a copy (no cache or replay state carried from one input to the next).
    dpop: Config,
    xfcc: Config,
}

fn config(sender: Value) -> Config {
    let cfg = json!({
        "providers": [{"name": "p", "issuer": "https://i", "audiences": ["a"],
            "jwks": {"keys": [{"kty": "oct", "alg": "HS256", "kid": "k", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}]}}],
        "sender_constraints": sender,
    });
    Config::from_json(cfg.to_string().as_bytes()).expect("fuzz config compiles")
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let seed = [7u8; 32];
        let holder = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed));
        let claims = |cnf: Value| json!({"iss": "https://i", "aud": "a", "sub": "s", "exp": NOW + 600, "cnf": cnf});
        let dpop_token = mint(&common::hs256_key(), Some("k"), &claims(json!({"jkt": jkt(&holder).expect("jkt")})));
        let x5t = cjwt_core::sender::mtls::x5t_from_hex(DIGEST_HEX).expect("x5t");
        let cert_token = mint(&common::hs256_key(), Some("k"), &claims(json!({"x5t#S256": x5t})));
        Fixture {
            holder,
            dpop_token,
            cert_token,
            dpop: config(json!({"dpop": {}})),
            xfcc: config(json!({"mtls": {"from": "xfcc", "trusted_hops": 1}})),
        }
    })
}

/// The decision: `Ok` allowed, or the refusal's reason.
fn decide(config: &Config, host: &StaticHost) -> Result<(), Reason> {
    let mut engine = Engine::new(config.clone());
    let replay = ProcessReplay::new();
    match engine.decide_with(host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay).decision {
        Decision::Allow { .. } => Ok(()),
        Decision::Deny(d) | Decision::DryRunDeny(d) => Err(d.reason),
    }
}

fn request(method: &[u8], path: &[u8], token: &str) -> StaticHost {
    common::host(method, path, b"api.example.com", b"127.0.0.1:1", NOW)
        .header(":scheme", "https")
        .header("authorization", &format!("DPoP {token}"))
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((case, rest)) = data.split_first() else { return };
    let mut parts = common::fields(rest);
    let mut field = |default: &[u8]| parts.next().map(<[u8]>::to_vec).unwrap_or_else(|| default.to_vec());
    match case % 4 {
        0 => {
            let host = request(b"GET", b"/orders", &f.dpop_token).header_bytes("dpop", rest);
            assert!(decide(&f.dpop, &host).is_err(), "a random DPoP proof was accepted");
        }
        1 => {
            // A valid proof's header and claims, with the fuzzed JSON object laid
            // over each (other bytes replace it whole), so the fuzzer starts from
            // an accepted proof and changes one member at a time.
            let ath = b64::encode(&sha2::Sha256::digest(f.dpop_token.as_bytes()));
            let base_header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": f.holder.public_jwk(None)});
            let base_claims = json!({"htm": "GET", "htu": URL, "iat": NOW, "jti": "j", "ath": ath});
            let header = common::overlay(base_header, &field(b"{}"));
            let claims = common::overlay(base_claims, &field(b"{}"));
            let method = field(b"GET");
            let path = field(b"/orders");
            let clock = field(b"");
            let now = clock.iter().fold(NOW, |acc, b| acc.wrapping_mul(31).wrapping_add(i64::from(*b)));
            let proof = mint_raw(&f.holder, &header, &claims);
            let host = request(&method, &path, &f.dpop_token).header("dpop", &proof).at(now);
            let verdict = decide(&f.dpop, &host);
            // Nothing fuzzed: the valid proof itself, which must pass (so the
            // checks below are reached, not refused wholesale).
            assert!(verdict.is_ok() || !rest.is_empty(), "the valid proof was refused: {verdict:?}");
            if verdict.is_ok() {
                // Allowed: the proof is this holder's, for this request and token, and fresh.
                let c: Value = serde_json::from_str(&claims).expect("an allowed proof's claims are JSON");
                assert_eq!(c["htm"].as_str().map(str::as_bytes), Some(method.as_slice()), "htm {c}");
                let htu = c["htu"].as_str().expect("htu");
                let (origin, htu_path) = split_htu(htu).expect("an allowed htu parses");
                assert_eq!(origin, "https://api.example.com", "htu {c}");
                assert!(path.starts_with(htu_path.as_bytes()), "htu {c} for path {:?}", String::from_utf8_lossy(&path));
                assert_eq!(c["ath"].as_str(), Some(ath.as_str()), "ath {c}");
                let iat = c["iat"].as_f64().expect("iat");
                assert!((iat - now as f64).abs() <= 61.0, "iat {iat} at {now}");
            }
        }
        2 => {
            let xfcc = field(format!("By=spiffe://a;Hash={DIGEST_HEX}").as_bytes());
            let host = common::host(b"GET", b"/", b"a", b"127.0.0.1:1", NOW)
                .header("authorization", &format!("Bearer {}", f.cert_token))
                .header_bytes("x-forwarded-client-cert", xfcc.clone());
            let verdict = decide(&f.xfcc, &host);
            assert!(verdict.is_ok() || !rest.is_empty(), "the bound certificate's digest was refused: {verdict:?}");
            if verdict.is_ok() {
                let text = String::from_utf8_lossy(&xfcc).to_ascii_lowercase();
                assert!(text.contains(DIGEST_HEX), "allowed without the bound digest: {text:?}");
                // Issue 24 item 1: an allowed header never ends inside a quote or an
                // escape (what a client writes cannot swallow the trusted element).
                let (mut quoted, mut escaped) = (false, false);
                for b in &xfcc {
                    match *b {
                        _ if escaped => escaped = false,
                        b'\\' if quoted => escaped = true,
                        b'"' => quoted = !quoted,
                        _ => {}
                    }
                }
                assert!(!quoted && !escaped, "allowed with unbalanced quoting: {text:?}");
            }
        }
        _ => {
            let id = ProofId::new("jkt", &String::from_utf8_lossy(&field(b"jti")));
            let _ = record(Some(rest), &id, NOW + 60, NOW);
            let _ = cjwt_core::sender::replay::admit(Some(rest), NOW + 60, NOW, 1024, 1);
            let _ = cjwt_core::sender::replay::drop_expired(Some(rest), NOW);
        }
    }
});
