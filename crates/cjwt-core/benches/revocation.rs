//! SPEC §11, per-request cost and fetch-time cost (`cargo bench -p cjwt-core
//! --bench revocation`, reported in docs/performance.md): a token's status
//! checked against a one-million-entry list, a deny-list of 100,000 entries, the
//! whole cached decision with and without a `status` claim, and verifying and
//! inflating the list when it is fetched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // bench code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::Engine;
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{mint, mint_raw, SigningKey};
use cjwt_core::request::static_host::StaticHost;
use cjwt_core::revocation::status_list::{encode_status_list, verify_status_list};
use cjwt_core::token::verify::{verify, TokenText};
use cjwt_core::usage::MemoryCounter;
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

fn time<F: FnMut()>(what: &str, iterations: u32, mut f: F) {
    f();
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per = start.elapsed().as_secs_f64() * 1e9 / f64::from(iterations);
    println!("  {what:<60} {per:>12.0} ns");
}

fn main() {
    let now = 1_800_000_000;
    let iss = "https://idp.example.com";
    let uri = "https://idp.example.com/statuslists/1";
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let jti: Vec<serde_json::Value> =
        (0..100_000).map(|i| json!({"iss": iss, "jti": format!("revoked-{i}")})).collect();
    let cfg = |revocation: bool| {
        let mut c = json!({"providers": [{"name": "corp", "issuer": iss, "jwks": {"keys": [key.public_jwk(Some("k1"))]}}],
            "status_lists": [{"uri": uri, "provider": "corp", "cluster": "idp", "path": "/s", "max_bytes": 1 << 20}]});
        if revocation {
            c["revocation"] = json!({"jti": jti});
        }
        Config::from_json(c.to_string().as_bytes()).unwrap()
    };
    // 1 % revoked at pseudo-random places (xorshift), as a real list would be: a
    // regular pattern would compress far better than a real list does.
    let mut statuses = vec![0u8; 1_000_000];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        statuses[(x % 1_000_000) as usize] = 1;
    }
    statuses[999_999] = 0;
    let list_claims = json!({"sub": uri, "iat": now, "exp": now + 3600, "ttl": 300,
        "status_list": encode_status_list(1, &statuses).unwrap()});
    let list = mint_raw(
        &key,
        &json!({"alg": "EdDSA", "kid": "k1", "typ": "statuslist+jwt"}).to_string(),
        &list_claims.to_string(),
    );
    println!(
        "cjwt revocation, native (release): a 1,000,000-entry list (1 bit, ~1 % revoked at random), its JWT {} bytes",
        list.len()
    );
    let config = cfg(true);
    let mut store = Fetched::new(1);
    time("verify + inflate the list (once per fetch)", 50, || {
        black_box(verify_status_list(&config, 0, &store, &PureRust, list.as_bytes(), now).unwrap());
    });
    store.set_status_list(0, verify_status_list(&config, 0, &store, &PureRust, list.as_bytes(), now).unwrap()).unwrap();
    println!("  the list holds {} bytes of heap per copy", store.status_list_bytes());

    let claims = |extra: serde_json::Value| {
        let mut c = json!({"iss": iss, "sub": "s", "iat": now, "exp": now + 600, "jti": "fine"});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        mint(&key, Some("k1"), &c)
    };
    let plain = claims(json!({}));
    let listed = claims(json!({"status": {"status_list": {"idx": 999_999, "uri": uri}}}));
    let token = verify(&config, &store, &PureRust, TokenText::admit(&config, listed.as_bytes()).unwrap()).unwrap();
    time("revocation::check: 100,000-entry deny-list + status bit", 2_000_000, || {
        black_box(cjwt_core::revocation::check(&config, black_box(&token), &store, now).ok());
    });
    let plain_token = verify(&config, &store, &PureRust, TokenText::admit(&config, plain.as_bytes()).unwrap()).unwrap();
    time("revocation::check: 100,000-entry deny-list, no status claim", 2_000_000, || {
        black_box(cjwt_core::revocation::check(&config, black_box(&plain_token), &store, now).ok());
    });
    for (what, revocation, t) in [
        ("decide, cache warm, no revocation configured, no status", false, &plain),
        ("decide, cache warm, deny-list, token without status", true, &plain),
        ("decide, cache warm, deny-list + status in the 1M list", true, &listed),
    ] {
        let mut engine = Engine::new(cfg(revocation));
        let host = StaticHost::new()
            .at(now)
            .header(":method", "GET")
            .header(":path", "/x")
            .header(":authority", "a")
            .peer("127.0.0.1:5000")
            .bearer(t);
        time(what, 200_000, || {
            black_box(engine.decide_with(
                &host,
                &store,
                &PureRust,
                &mut MemoryCounter::default(),
                &mut cjwt_core::sender::replay::NoReplayCache,
            ));
        });
    }
}
