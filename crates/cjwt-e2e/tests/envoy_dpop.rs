//! Sender-constrained tokens (SPEC §10) through a real Envoy, for the build
//! under test (`CJWT_BUILD=wasm|native`): DPoP proofs made here with the p256
//! and ed25519-dalek crates directly (never cjwt's own signing code), a TLS
//! listener with client certificates made here by the `openssl` command (a
//! test CA, a bound and another client certificate), and XFCC from a trusted
//! and an untrusted hop.
//! Requires `make build` and the project virtualenv (`make envoy`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::encoding::b64;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint;
use cjwt_harness::envoy::{Envoy, Options};
use cjwt_harness::pki::{https, Pki};
use cjwt_harness::*;
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A proof key, as a client holds it, signed with the crates directly.
enum Holder {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

impl Holder {
    fn es256(seed: u8) -> Holder {
        Holder::Es256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    fn eddsa(seed: u8) -> Holder {
        Holder::EdDsa(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    fn alg(&self) -> &'static str {
        match self {
            Holder::Es256(_) => "ES256",
            Holder::EdDsa(_) => "EdDSA",
        }
    }

    /// The public JWK; `private` adds the private scalar `d` (a client bug).
    fn jwk(&self, private: bool) -> Value {
        let mut jwk = match self {
            Holder::Es256(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "x": b64::encode(p.x().unwrap()), "y": b64::encode(p.y().unwrap())})
            }
            Holder::EdDsa(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.verifying_key().as_bytes())}),
        };
        if private {
            jwk["d"] = json!(match self {
                Holder::Es256(k) => b64::encode(&k.to_bytes()),
                Holder::EdDsa(k) => b64::encode(k.as_bytes()),
            });
        }
        jwk
    }

    /// RFC 7638 thumbprint, computed here (members in order, no whitespace).
    fn jkt(&self) -> String {
        let jwk = self.jwk(false);
        let canonical = match self {
            Holder::Es256(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap()
            ),
            Holder::EdDsa(_) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, jwk["x"].as_str().unwrap()),
        };
        b64::encode(&Sha256::digest(canonical.as_bytes()))
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Holder::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            Holder::EdDsa(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(input).to_bytes().to_vec()
            }
        }
    }

    fn proof_with(&self, private_jwk: bool, claims: Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk(private_jwk)});
        let input =
            format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
        format!("{input}.{}", b64::encode(&self.sign(input.as_bytes())))
    }

    /// A proof for `method` `url` and `token`, issued at `iat`.
    fn proof(&self, method: &str, url: &str, token: &str, iat: i64) -> String {
        self.proof_with(false, proof_claims(method, url, token, iat, None))
    }
}

fn proof_claims(method: &str, url: &str, token: &str, iat: i64, nonce: Option<&str>) -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let jti = format!("{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let ath = b64::encode(&Sha256::digest(token.as_bytes()));
    let mut c = json!({"htm": method, "htu": url, "iat": iat, "jti": jti, "ath": ath});
    if let Some(n) = nonce {
        c["nonce"] = json!(n);
    }
    c
}

fn token(extra: Value) -> String {
    mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra))
}

fn bound(holder: &Holder) -> String {
    token(json!({"cnf": {"jkt": holder.jkt()}}))
}

fn with_sender(sender: Value, extra: Value) -> Value {
    let mut cfg = config_json(extra);
    cfg["sender_constraints"] = sender;
    cfg
}

const URL: &str = "http://api.example.com/v1/orders";

#[test]
fn dpop_proofs_end_to_end() {
    let envoy = Envoy::start(
        &with_sender(
            json!({"dpop": {"algorithms": ["ES256", "EdDSA"]}}),
            json!({"forward": {"claims_to_headers": [{"claim": "cnf.jkt", "header": "x-cjwt-jkt"}]}}),
        ),
        Options::default(),
    );
    let es = Holder::es256(11);
    let t = bound(&es);
    let auth = format!("DPoP {t}");
    let get = |proof: &str, auth: &str| envoy.get("/v1/orders", &[("authorization", auth), ("dpop", proof)]);

    // A good proof: forwarded without the proof, with the binding.
    let good = es.proof("GET", URL, &t, now());
    let r = get(&good, &auth);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.header("dpop"), None, "the proof never goes upstream");
    assert_eq!(seen.header("x-cjwt-jkt"), Some(es.jkt().as_str()));

    // The same proof again: a replay.
    let r = get(&good, &auth);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("dpop_replay")));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"DPoP realm="cjwt", error="invalid_dpop_proof", error_description="dpop_replay", algs="ES256 EdDSA""#)
    );
    assert_eq!(r.json()["error"], "invalid_dpop_proof");

    // EdDSA proofs.
    let ed = Holder::eddsa(12);
    let te = bound(&ed);
    let r = get(&ed.proof("GET", URL, &te, now()), &format!("DPoP {te}"));
    assert_eq!(r.status, 200, "{}", r.body);

    let other = Holder::es256(13);
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("another method", es.proof("POST", URL, &t, now()), auth.clone(), "invalid_dpop_proof"),
        (
            "another URL",
            es.proof("GET", "http://api.example.com/v1/other", &t, now()),
            auth.clone(),
            "invalid_dpop_proof",
        ),
        (
            "another origin",
            es.proof("GET", "https://api.example.com/v1/orders", &t, now()),
            auth.clone(),
            "invalid_dpop_proof",
        ),
        ("stale", es.proof("GET", URL, &t, now() - 120), auth.clone(), "invalid_dpop_proof"),
        ("from the future", es.proof("GET", URL, &t, now() + 120), auth.clone(), "invalid_dpop_proof"),
        ("another token", es.proof("GET", URL, "other", now()), auth.clone(), "invalid_dpop_proof"),
        (
            "private jwk",
            es.proof_with(true, proof_claims("GET", URL, &t, now(), None)),
            auth.clone(),
            "invalid_dpop_proof",
        ),
        ("another key", other.proof("GET", URL, &t, now()), auth.clone(), "dpop_key_mismatch"),
        ("bound token under Bearer", es.proof("GET", URL, &t, now()), format!("Bearer {t}"), "dpop_required"),
    ];
    for (name, proof, auth, reason) in &cases {
        let r = get(proof, auth);
        assert_eq!((r.status, r.reason().as_deref()), (401, Some(*reason)), "case: {name}: {}", r.body);
        assert!(r.header("www-authenticate").unwrap().starts_with("DPoP realm=\"cjwt\""), "case: {name}");
    }
    // No proof, two proofs.
    let r = envoy.get("/v1/orders", &[("authorization", &auth)]);
    assert_eq!(r.reason().as_deref(), Some("invalid_dpop_proof"));
    let (p1, p2) = (es.proof("GET", URL, &t, now()), es.proof("GET", URL, &t, now()));
    let r = envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", &p1), ("dpop", &p2)]);
    assert_eq!(r.reason().as_deref(), Some("invalid_dpop_proof"));
    // Unbound tokens: the DPoP scheme or a proof is unexpected; plain Bearer passes.
    let plain = token(json!({}));
    let r = get(&es.proof("GET", URL, &plain, now()), &format!("DPoP {plain}"));
    assert_eq!(r.reason().as_deref(), Some("unexpected_dpop"));
    let r = get(&es.proof("GET", URL, &plain, now()), &format!("Bearer {plain}"));
    assert_eq!(r.reason().as_deref(), Some("unexpected_dpop"));
    assert_eq!(envoy.get("/v1/orders", &[("authorization", &format!("Bearer {plain}"))]).status, 200);
    // A binding the configuration does not enable.
    let x5t = token(json!({"cnf": {"x5t#S256": b64::encode(&[1u8; 32])}}));
    let r = envoy.get("/v1/orders", &[("authorization", &format!("Bearer {x5t}"))]);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("unsupported_binding")));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="cjwt", error="invalid_token", error_description="unsupported_binding""#)
    );
    assert_eq!(envoy.upstream.count(), 3, "only the three good requests went upstream");
    assert_eq!(envoy.stat("cjwt.denied.dpop_replay"), 1);
    assert_eq!(envoy.stat("cjwt.denied.dpop_required"), 1);
    assert_eq!(envoy.stat("cjwt.denied.dpop_key_mismatch"), 1);
}

/// ES256 and RS256 proofs: verified by the host (Envoy's `verify_signature` in
/// the wasm build, ring natively), counted as `cjwt.verify.host`; the token is
/// EdDSA, so only the proofs reach the host.
#[test]
fn es256_and_rs256_proofs_are_verified_by_the_host() {
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer as _};
    use rsa::traits::PublicKeyParts;
    let envoy =
        Envoy::start(&with_sender(json!({"dpop": {"algorithms": ["ES256", "RS256"]}}), json!({})), Options::default());
    // RS256, with the rsa crate directly.
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    let (n, e) = (b64::encode(&public.n().to_bytes_be()), b64::encode(&public.e().to_bytes_be()));
    let jkt = b64::encode(&Sha256::digest(format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes()));
    let t = token(json!({"cnf": {"jkt": jkt}}));
    let header = json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": {"kty": "RSA", "n": n, "e": e}});
    let claims = proof_claims("GET", URL, &t, now(), None);
    let input =
        format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
    let sig = SigningKey::<Sha256>::new(private).sign(input.as_bytes()).to_bytes();
    let proof = format!("{input}.{}", b64::encode(&sig));
    let r = envoy.get("/v1/orders", &[("authorization", &format!("DPoP {t}")), ("dpop", &proof)]);
    assert_eq!(r.status, 200, "{}", r.body);
    // A tampered RS256 proof is refused.
    let mut bad = sig.to_vec();
    bad[10] ^= 1;
    let claims = proof_claims("GET", URL, &t, now(), None);
    let input =
        format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
    let r = envoy.get(
        "/v1/orders",
        &[("authorization", &format!("DPoP {t}")), ("dpop", &format!("{input}.{}", b64::encode(&bad)))],
    );
    assert_eq!(r.reason().as_deref(), Some("invalid_dpop_proof"));
    // ES256.
    let es = Holder::es256(41);
    let te = bound(&es);
    let r = envoy
        .get("/v1/orders", &[("authorization", &format!("DPoP {te}")), ("dpop", &es.proof("GET", URL, &te, now()))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(envoy.stat("cjwt.verify.host"), 3, "three proofs, each verified by the host");
}

/// One replay cache for all workers: the same proof sent on many connections to
/// an Envoy with four workers is let through once.
#[test]
fn a_proof_is_accepted_once_across_workers() {
    let envoy =
        Envoy::start(&with_sender(json!({"dpop": {}}), json!({})), Options { concurrency: 4, ..Options::default() });
    let es = Holder::es256(21);
    let t = bound(&es);
    let auth = format!("DPoP {t}");
    let proof = es.proof("GET", URL, &t, now());
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (auth, proof, port) = (auth.clone(), proof.clone(), envoy.port);
            std::thread::spawn(move || {
                envoy::send("127.0.0.1", port, "GET", "/v1/orders", &[("authorization", &auth), ("dpop", &proof)])
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 15, "{statuses:?}");
    assert_eq!(envoy.upstream.count(), 1);
}

/// Issue 24 item 5: `max_entries` fresh, distinct proofs sent within seconds all
/// pass (none is refused `dpop_replay` below the configured bound); every one of
/// them is still remembered, and one more live proof is refused (fail closed).
#[test]
fn max_entries_fresh_proofs_are_all_accepted() {
    const MAX: usize = 1024;
    let envoy = Envoy::start(
        &with_sender(json!({"dpop": {"replay_cache": {"max_entries": MAX}}}), json!({})),
        Options { concurrency: 2, ..Options::default() },
    );
    let es = Holder::es256(51);
    let t = bound(&es);
    let auth = format!("DPoP {t}");
    let proofs: Vec<String> = (0..MAX).map(|_| es.proof("GET", URL, &t, now())).collect();
    let started = std::time::Instant::now();
    let threads: Vec<_> = proofs
        .chunks(MAX / 4)
        .map(|chunk| {
            let (auth, chunk, port) = (auth.clone(), chunk.to_vec(), envoy.port);
            std::thread::spawn(move || {
                chunk
                    .iter()
                    .map(|p| {
                        let r = envoy::send(
                            "127.0.0.1",
                            port,
                            "GET",
                            "/v1/orders",
                            &[("authorization", &auth), ("dpop", p)],
                        );
                        (r.status, r.reason())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let said: Vec<(u16, Option<String>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let took = started.elapsed();
    let replays = said.iter().filter(|s| s.1.as_deref() == Some("dpop_replay")).count();
    let allowed = said.iter().filter(|s| s.0 == 200).count();
    assert_eq!(
        (allowed, replays),
        (MAX, 0),
        "{MAX} fresh proofs in {took:?}: {allowed} allowed, {replays} refused dpop_replay"
    );
    // One more live proof is over the bound: refused, nothing forgotten.
    let r = envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", &es.proof("GET", URL, &t, now()))]);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("dpop_replay")), "over max_entries");
    for p in proofs.iter().step_by(97) {
        let r = envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", p)]);
        assert_eq!(r.reason().as_deref(), Some("dpop_replay"), "a live proof forgotten");
    }
    assert_eq!(envoy.upstream.count(), MAX);
}

#[test]
fn server_nonces_and_public_origin() {
    let secret = b64::encode(&[42u8; 32]);
    let envoy = Envoy::start(
        &with_sender(
            json!({"dpop": {"public_origin": "https://api.example.net", "nonce": {"secret": secret, "rotate_seconds": 60}}}),
            json!({}),
        ),
        Options::default(),
    );
    let es = Holder::es256(31);
    let t = bound(&es);
    let auth = format!("DPoP {t}");
    let url = "https://api.example.net/v1/orders";
    let r = envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", &es.proof("GET", url, &t, now()))]);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("use_dpop_nonce")));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"DPoP realm="cjwt", error="use_dpop_nonce", error_description="use_dpop_nonce", algs="ES256 EdDSA""#)
    );
    let nonce = r.header("dpop-nonce").expect("a fresh nonce").to_string();
    let proof = es.proof_with(false, proof_claims("GET", url, &t, now(), Some(&nonce)));
    let r = envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", &proof)]);
    assert_eq!(r.status, 200, "{}", r.body);
    // The request's own origin is not the public one.
    let proof = es.proof_with(false, proof_claims("GET", URL, &t, now(), Some(&nonce)));
    let r = envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", &proof)]);
    assert_eq!(r.reason().as_deref(), Some("invalid_dpop_proof"));
}

/// The configuration of replicas sharing a nonce secret and, with `mesh`, the
/// mesh-wide replay store (`replay_cache.store: "usage_store"`) on etcd.
fn replica_config(mesh: bool) -> Value {
    let mut dpop = json!({"nonce": {"secret": b64::encode(&[42u8; 32]), "rotate_seconds": 60}});
    if mesh {
        dpop["replay_cache"] = json!({"store": "usage_store"});
    }
    with_sender(
        json!({"dpop": dpop}),
        json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 2000}}}),
    )
}

/// An Envoy (two workers) of `config` with the etcd cluster `clusters`, once its
/// health checks found every store member healthy.
fn replica(config: &Value, clusters: &str, artifact: Option<PathBuf>) -> Envoy {
    let envoy = Envoy::start(
        config,
        Options { concurrency: 2, clusters: clusters.to_string(), artifact, ..Options::default() },
    );
    said::wait_until("the etcd members healthy in Envoy", std::time::Duration::from_secs(10), || {
        let (_, clusters) = envoy.admin_get("/clusters");
        let flags: Vec<&str> =
            clusters.lines().filter(|l| l.starts_with("etcd::") && l.contains("::health_flags::")).collect();
        !flags.is_empty() && flags.iter().all(|l| l.ends_with("::healthy"))
    });
    envoy
}

/// A current nonce, as a client learns it: from a `use_dpop_nonce` refusal.
fn learn_nonce(envoy: &Envoy, es: &Holder, t: &str) -> String {
    let r =
        envoy.get("/v1/orders", &[("authorization", &format!("DPoP {t}")), ("dpop", &es.proof("GET", URL, t, now()))]);
    assert_eq!(r.reason().as_deref(), Some("use_dpop_nonce"));
    r.header("dpop-nonce").expect("a nonce").to_string()
}

/// Issue 24 item 3: two replicas with the same nonce secret and one etcd. A
/// proof accepted by one is refused `dpop_replay` by the other (nonces bound the
/// proof's age, not the replica); the same fresh proof sent to both at once is
/// accepted exactly once; the store holds the proof's hash under a lease.
#[test]
fn a_proof_accepted_by_one_replica_is_a_replay_on_another() {
    let etcd = cjwt_harness::etcd::EtcdCluster::start(1);
    let clusters = etcd.envoy_cluster("etcd");
    let (a, b) = (replica(&replica_config(true), &clusters, None), replica(&replica_config(true), &clusters, None));
    let es = Holder::es256(61);
    let t = bound(&es);
    let auth = format!("DPoP {t}");
    let nonce = learn_nonce(&a, &es, &t);
    let proof = es.proof_with(false, proof_claims("GET", URL, &t, now(), Some(&nonce)));
    let r = a.get("/v1/orders", &[("authorization", &auth), ("dpop", &proof)]);
    assert_eq!(r.status, 200, "{}", r.body);
    for (name, envoy) in [("the other replica", &b), ("the same replica", &a)] {
        let r = envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", &proof)]);
        assert_eq!((r.status, r.reason().as_deref()), (401, Some("dpop_replay")), "replayed to {name}: {}", r.body);
    }
    // A fresh proof is fine on the other replica (the same nonce is current there).
    let fresh = es.proof_with(false, proof_claims("GET", URL, &t, now(), Some(&nonce)));
    assert_eq!(b.get("/v1/orders", &[("authorization", &auth), ("dpop", &fresh)]).status, 200);
    // The same fresh proof to both replicas at once: one 200 in every round.
    let ports = [a.port, b.port];
    for round in 0..10 {
        let proof = es.proof_with(false, proof_claims("GET", URL, &t, now(), Some(&nonce)));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (auth, proof, port) = (auth.clone(), proof.clone(), ports[i % 2]);
                std::thread::spawn(move || {
                    let r = envoy::send(
                        "127.0.0.1",
                        port,
                        "GET",
                        "/v1/orders",
                        &[("authorization", &auth), ("dpop", &proof)],
                    );
                    (r.status, r.reason())
                })
            })
            .collect();
        let said: Vec<said::Said> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(said::count(&said, 200, None), 1, "round {round}: {:?}", said::tally(&said));
        assert_eq!(said::count(&said, 401, Some("dpop_replay")), 7, "round {round}: {:?}", said::tally(&said));
    }
    assert_eq!(a.upstream.count() + b.upstream.count(), 12);
    // The store holds one key per accepted proof, no proof data, each under a lease.
    let keys = etcd.keys_under(b"cjwt/uses/dpop/");
    assert_eq!(keys.len(), 12, "{keys:?}");
    assert!(keys.iter().all(|(k, _, lease)| k.len() == "cjwt/uses/dpop/".len() + 32 && *lease > 0), "{keys:?}");
    let stats = |name: &str| a.stat(name) + b.stat(name);
    assert_eq!(stats("cjwt.usage_store.failed"), 0);
    assert_eq!(stats("cjwt.denied.dpop_replay"), 2 + 70);
}

/// The mesh's replay store down: a DPoP proof cannot be recorded, so it is
/// refused 503 `usage_unavailable` (fail closed), bounded by `timeout_ms`; tokens
/// without a binding pass; once etcd is back, fresh proofs pass and the proof
/// accepted before is still a replay.
#[test]
fn proofs_are_refused_503_while_the_mesh_replay_store_is_down() {
    let mut etcd = cjwt_harness::etcd::EtcdCluster::start(1);
    let envoy = replica(&replica_config(true), &etcd.envoy_cluster("etcd"), None);
    let es = Holder::es256(62);
    let t = bound(&es);
    let auth = format!("DPoP {t}");
    let nonce = learn_nonce(&envoy, &es, &t);
    let get = |proof: &str| envoy.get("/v1/orders", &[("authorization", &auth), ("dpop", proof)]);
    let before = es.proof_with(false, proof_claims("GET", URL, &t, now(), Some(&nonce)));
    assert_eq!(get(&before).status, 200);
    etcd.stop(0);
    let plain = format!("Bearer {}", token(json!({})));
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let r = get(&es.proof_with(false, proof_claims("GET", URL, &t, now(), Some(&nonce))));
        assert_eq!((r.status, r.reason().as_deref()), (503, Some("usage_unavailable")), "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("1"));
        // Bounded by timeout_ms (2000), with margin for a loaded machine (etcd's own timeout is 7 s).
        assert!(started.elapsed() < std::time::Duration::from_millis(4000), "waited {:?}", started.elapsed());
        assert_eq!(envoy.get("/v1/orders", &[("authorization", &plain)]).status, 200, "unbound tokens pass");
    }
    assert!(envoy.stat("cjwt.usage_store.failed") >= 3);
    assert_eq!(envoy.upstream.count(), 1 + 3);
    etcd.restart(0);
    said::wait_until("fresh proofs pass again", std::time::Duration::from_secs(20), || {
        get(&es.proof_with(false, proof_claims("GET", URL, &t, now(), Some(&nonce)))).status == 200
    });
    let r = get(&before);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("dpop_replay")), "{}", r.body);
}

#[test]
fn certificate_bound_tokens_over_tls() {
    let pki = Pki::new();
    let envoy = Envoy::start(
        &with_sender(json!({"mtls": {"from": "peer"}}), json!({})),
        Options { edits: vec![pki.tls_edit()], ..Options::default() },
    );
    let t = token(json!({"cnf": {"x5t#S256": pki.x5t("bound")}}));
    let auth = format!("Bearer {t}");
    let bound = (pki.path("bound.pem"), pki.path("bound.key"));
    let other = (pki.path("other.pem"), pki.path("other.key"));
    let h = [("authorization", auth.as_str())];
    let (status, body) = https(envoy.port, Some((&bound.0, &bound.1)), &h);
    assert_eq!(status, 200, "{body}");
    let (status, body) = https(envoy.port, Some((&other.0, &other.1)), &h);
    assert_eq!((status, body["reason"].as_str()), (401, Some("certificate_mismatch")));
    let (status, body) = https(envoy.port, None, &h);
    assert_eq!((status, body["reason"].as_str()), (401, Some("certificate_required")));
    // An unbound token needs no certificate.
    let plain = format!("Bearer {}", token(json!({})));
    assert_eq!(https(envoy.port, None, &[("authorization", &plain)]).0, 200);
    assert_eq!(envoy.upstream.count(), 2);
}

#[test]
fn certificate_bound_tokens_through_a_trusted_hop() {
    let pki = Pki::new();
    let envoy = Envoy::start(
        &with_sender(json!({"mtls": {"from": "xfcc", "trusted_hops": 1}}), json!({})),
        Options {
            edits: vec![(
                "use_remote_address: true".to_string(),
                "use_remote_address: true\n          forward_client_cert_details: ALWAYS_FORWARD_ONLY".to_string(),
            )],
            ..Options::default()
        },
    );
    let t = token(json!({"cnf": {"x5t#S256": pki.x5t("bound")}}));
    let auth = format!("Bearer {t}");
    let (bound, other) = (pki.sha256_hex("bound"), pki.sha256_hex("other"));
    let xfcc = |v: &str| envoy.get("/v1/orders", &[("authorization", &auth), ("x-forwarded-client-cert", v)]);
    // The trusted hop (the last element) saw the bound certificate.
    let r = xfcc(&format!("By=spiffe://gw;Hash={bound};Subject=\"CN=bound\""));
    assert_eq!(r.status, 200, "{}", r.body);
    // The bound hash only in an element before the trusted hop's: forged.
    let r = xfcc(&format!("Hash={bound};Subject=\"CN=bound\",By=spiffe://gw;Hash={other}"));
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("certificate_mismatch")));
    let r = envoy.get("/v1/orders", &[("authorization", &auth)]);
    assert_eq!((r.status, r.reason().as_deref()), (401, Some("certificate_required")));
    assert_eq!(envoy.upstream.count(), 1);
}

/// Issue 24 item 1: with `APPEND_FORWARD` (the sidecar setting) the client
/// controls the start of `x-forwarded-client-cert` and Envoy appends its own
/// element after it. An unclosed quote or a dangling escape at the start must
/// not swallow Envoy's element: an attacker with their own valid certificate
/// and a token bound to another one is refused, with `trusted_hops` 1 or 2.
#[test]
fn xfcc_quote_smuggling_is_refused_through_a_tls_listener() {
    let pki = Pki::new();
    let victim = pki.sha256_hex("bound");
    let t = token(json!({"cnf": {"x5t#S256": pki.x5t("bound")}}));
    let auth = format!("Bearer {t}");
    let attacker = (pki.path("other.pem"), pki.path("other.key"));
    let bound = (pki.path("bound.pem"), pki.path("bound.key"));
    for hops in [1, 2] {
        let envoy = Envoy::start(
            &with_sender(json!({"mtls": {"from": "xfcc", "trusted_hops": hops}}), json!({})),
            Options {
                edits: vec![
                    pki.tls_edit(),
                    (
                        "use_remote_address: true".to_string(),
                        "use_remote_address: true\n          forward_client_cert_details: APPEND_FORWARD\n          set_current_client_cert_details: { subject: true, uri: true, dns: true }".to_string(),
                    ),
                ],
                ..Options::default()
            },
        );
        let shapes: Vec<String> = match hops {
            1 => vec![
                format!("Hash={victim};By=\""),
                format!("Hash={victim};By=\"x\\"),
                format!("Hash={victim};Subject=\"CN=x\\\""),
            ],
            _ => vec![format!("Hash={victim},By=\""), format!("Hash={victim},By=\"x\\")],
        };
        for forged in &shapes {
            let (status, body) = https(
                envoy.port,
                Some((&attacker.0, &attacker.1)),
                &[("authorization", &auth), ("x-forwarded-client-cert", forged)],
            );
            assert_eq!(
                (status, body["reason"].as_str()),
                (401, Some("certificate_header_malformed")),
                "trusted_hops {hops}, forged {forged:?}: {body}"
            );
        }
        if hops == 1 {
            // The bound certificate itself passes: Envoy's own element is well formed.
            let (status, body) = https(envoy.port, Some((&bound.0, &bound.1)), &[("authorization", &auth)]);
            assert_eq!(status, 200, "{body}");
            // A well-formed forged element before Envoy's is simply not the trusted one.
            let forged = format!("By=spiffe://x;Hash={victim};Subject=\"CN=bound\"");
            let (status, body) = https(
                envoy.port,
                Some((&attacker.0, &attacker.1)),
                &[("authorization", &auth), ("x-forwarded-client-cert", &forged)],
            );
            assert_eq!((status, body["reason"].as_str()), (401, Some("certificate_mismatch")), "{body}");
            assert_eq!(envoy.upstream.count(), 1);
        } else {
            assert_eq!(envoy.upstream.count(), 0);
        }
    }
}
