//! Holder attenuation (SPEC §16) through the whole decision: a root token
//! bound to a holder key, links derived offline with `chain::mint::attenuate`
//! (and forged by hand where the test needs a link it would refuse to sign),
//! the leaf's DPoP proof, and every refusal with its own reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::chain::mint::{attenuate, split, LinkSpec};
use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{dpop_proof, jkt, mint, mint_raw, SigningKey};
use cjwt_core::reason::Reason;
use cjwt_core::sender::replay::ProcessReplay;
use cjwt_core::testing::*;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::MemoryCounter;
use serde_json::{json, Value};
use sha2::Digest;

const URL: &str = "https://api.example.com/orders/1";

/// A deterministic P-256 holder key, one per `n`.
fn holder(n: u8) -> SigningKey {
    SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[n; 32]).unwrap())
}

fn engine_with(extra: Value) -> Engine {
    let mut cfg = config_json(extra);
    cfg["sender_constraints"] = json!({"dpop": {}});
    Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap())
}

fn root(cnst: Value) -> String {
    let mut extra = json!({"jti": "root-1", "cnf": {"jkt": jkt(&holder(1)).unwrap()}});
    if !cnst.is_null() {
        extra["cnst"] = cnst;
    }
    mint(key(Algorithm::EdDSA), Some("k1"), &claims(extra))
}

fn spec(jti: &str, next: u8, cnst: Value) -> LinkSpec {
    LinkSpec {
        jti: jti.into(),
        iat: NOW - 10,
        exp: NOW + 300,
        constraints: (!cnst.is_null()).then_some(cnst),
        next_jkt: jkt(&holder(next)).unwrap(),
    }
}

/// The credential `ROOT~L1~…`: link `i` is signed by holder `i + 1` and binds holder `i + 2`.
fn credential(root_cnst: Value, links: &[Value]) -> String {
    let mut c = root(root_cnst);
    for (i, cnst) in links.iter().enumerate() {
        let n = u8::try_from(i).unwrap() + 1;
        c = attenuate(&holder(n), &c, &spec(&format!("link-{n}"), n + 1, cnst.clone()), "cnst", &[]).unwrap();
    }
    c
}

/// The request: the root under `DPoP`, the links in `cjwt-chain`, a proof by `prover`.
fn request(method: &str, url: &str, credential: &str, prover: &SigningKey, proof_jti: &str) -> StaticHost {
    let (root, links) = split(credential);
    let path = url.strip_prefix("https://api.example.com").unwrap();
    let proof = dpop_proof(prover, method, url, Some(root), NOW, proof_jti, None).unwrap();
    let host = StaticHost::request(method, path)
        .header(":scheme", "https")
        .header("authorization", &format!("DPoP {root}"))
        .header("dpop", &proof);
    match links {
        Some(links) => host.header("cjwt-chain", links),
        None => host,
    }
}

fn decide(e: &mut Engine, host: &StaticHost, counter: &mut MemoryCounter) -> Option<Reason> {
    let replay = ProcessReplay::new();
    match e.decide_with(host, &InlineOnly, &PureRust, counter, &mut &replay).decision {
        Decision::Allow { .. } => None,
        Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
    }
}

fn verdict(e: &mut Engine, host: &StaticHost) -> Option<Reason> {
    decide(e, host, &mut MemoryCounter::default())
}

/// A link signed by hand with the claims given (the tests' forgeries).
fn forged(signer: &SigningKey, header: Value, claims: Value) -> String {
    mint_raw(signer, &header.to_string(), &claims.to_string())
}

fn par_hash(part: &str) -> String {
    let input = &part[..part.rfind('.').unwrap()];
    b64::encode(&sha2::Sha256::digest(input.as_bytes()))
}

/// The claims `attenuate` would write for link 1 under `root`.
fn link_claims(root: &str, extra: Value) -> Value {
    let mut c = json!({
        "iss": jkt(&holder(1)).unwrap(), "jti": "forged", "iat": NOW - 10, "exp": NOW + 300,
        "par_hash": par_hash(root), "del_depth": 1, "cnf": {"jkt": jkt(&holder(2)).unwrap()}
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn link_header(signer: &SigningKey) -> Value {
    json!({"typ": "cjwt-link+jwt", "alg": signer.alg().name(), "jwk": signer.public_jwk(None)})
}

#[test]
fn a_three_link_chain_narrows_tools_uses_and_time() {
    let mut e = engine_with(json!({}));
    let c = credential(
        json!({"methods": ["GET", "POST"], "paths": ["/orders/**"], "max_uses": 10}),
        &[json!({"methods": ["GET"], "max_uses": 5}), json!({"paths": ["/orders/1"], "max_uses": 2}), json!({})],
    );
    let leaf = holder(4);
    let mut counter = MemoryCounter::default();
    // The leaf holder may GET /orders/1, twice (link 2's max_uses).
    assert_eq!(decide(&mut e, &request("GET", URL, &c, &leaf, "a"), &mut counter), None);
    // Narrowed: POST (link 1), another path (link 2).
    assert_eq!(decide(&mut e, &request("POST", URL, &c, &leaf, "b"), &mut counter), Some(Reason::Method));
    let other = "https://api.example.com/orders/2";
    assert_eq!(decide(&mut e, &request("GET", other, &c, &leaf, "c"), &mut counter), Some(Reason::Path));
    assert_eq!(decide(&mut e, &request("GET", URL, &c, &leaf, "d"), &mut counter), None);
    assert_eq!(decide(&mut e, &request("GET", URL, &c, &leaf, "e"), &mut counter), Some(Reason::MaxUses));
    // The root's holder still has the root's own uses left: 10, of which the chain spent 2.
    let (root_only, _) = split(&c);
    for i in 0..8 {
        let host = request("GET", URL, root_only, &holder(1), &format!("r{i}"));
        assert_eq!(decide(&mut e, &host, &mut counter), None, "root use {i}");
    }
    let host = request("GET", URL, root_only, &holder(1), "r-last");
    assert_eq!(decide(&mut e, &host, &mut counter), Some(Reason::MaxUses));
}

#[test]
fn a_child_never_spends_more_than_its_parent_has_left() {
    let mut e = engine_with(json!({}));
    // The root allows 2 uses; the link allows 2 too, but the root's holder spends one first.
    let c = credential(json!({"max_uses": 2}), &[json!({"max_uses": 2})]);
    let mut counter = MemoryCounter::default();
    let (root_only, _) = split(&c);
    assert_eq!(decide(&mut e, &request("GET", URL, root_only, &holder(1), "r"), &mut counter), None);
    assert_eq!(decide(&mut e, &request("GET", URL, &c, &holder(2), "a"), &mut counter), None);
    assert_eq!(decide(&mut e, &request("GET", URL, &c, &holder(2), "b"), &mut counter), Some(Reason::MaxUses));
}

#[test]
fn the_leaf_proves_possession_of_its_own_key() {
    let mut e = engine_with(json!({}));
    let c = credential(json!({}), &[json!({}), json!({})]);
    assert_eq!(verdict(&mut e, &request("GET", URL, &c, &holder(3), "ok")), None);
    // A proof by an intermediate holder (or the root's) is not the leaf's.
    assert_eq!(verdict(&mut e, &request("GET", URL, &c, &holder(2), "mid")), Some(Reason::DpopKeyMismatch));
    assert_eq!(verdict(&mut e, &request("GET", URL, &c, &holder(1), "root")), Some(Reason::DpopKeyMismatch));
    // No proof at all.
    let (root, links) = split(&c);
    let bare = StaticHost::get("/orders/1")
        .header(":scheme", "https")
        .header("authorization", &format!("DPoP {root}"))
        .header("cjwt-chain", links.unwrap());
    assert_eq!(verdict(&mut e, &bare), Some(Reason::InvalidDpopProof));
    // Replay of an intermediate link: the chain cut short after link 1 binds
    // holder 2, so only holder 2's proof goes with it (holder 3 cannot use it).
    let first = c.split('~').take(2).collect::<Vec<_>>().join("~");
    assert_eq!(verdict(&mut e, &request("GET", URL, &first, &holder(3), "cut")), Some(Reason::DpopKeyMismatch));
    assert_eq!(verdict(&mut e, &request("GET", URL, &first, &holder(2), "cut2")), None);
}

#[test]
fn every_refusal_has_its_own_reason() {
    let mut e = engine_with(json!({"attenuation": {"max_depth": 3, "max_bytes": 4096},
        "revocation": {"jti": [{"iss": "https://idp.example.com", "jti": "link-2"}]}}));
    let r = root(json!({"methods": ["GET"]}));
    let h1 = holder(1);
    let send = |e: &mut Engine, links: &str, prover: &SigningKey| {
        let c = format!("{r}~{links}");
        verdict(e, &request("GET", URL, &c, prover, "p"))
    };
    let good = forged(&h1, link_header(&h1), link_claims(&r, json!({})));
    assert_eq!(send(&mut e, &good, &holder(2)), None);
    // Broken signature.
    let mut bad_sig = good.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(send(&mut e, &bad_sig, &holder(2)), Some(Reason::ChainSignature));
    // Signed by another key than the root's bound one (its own jwk, valid signature).
    let stranger = holder(9);
    let other = forged(&stranger, link_header(&stranger), link_claims(&r, json!({"iss": jkt(&stranger).unwrap()})));
    assert_eq!(send(&mut e, &other, &holder(2)), Some(Reason::ChainKey));
    // The right key in the header, but the signature by another: key substitution.
    let substituted = forged(&stranger, link_header(&h1), link_claims(&r, json!({})));
    assert_eq!(send(&mut e, &substituted, &holder(2)), Some(Reason::ChainSignature));
    // `iss` naming another key than the signer's.
    let wrong_iss = forged(&h1, link_header(&h1), link_claims(&r, json!({"iss": "someone"})));
    assert_eq!(send(&mut e, &wrong_iss, &holder(2)), Some(Reason::ChainKey));
    // Spliced: a link made for another root of the same holder.
    let other_root = root(json!({"methods": ["GET", "POST"]}));
    let spliced = forged(&h1, link_header(&h1), link_claims(&other_root, json!({})));
    assert_eq!(send(&mut e, &spliced, &holder(2)), Some(Reason::ChainParent));
    // Widening: a method, a lifetime past the parent's.
    let widens = forged(&h1, link_header(&h1), link_claims(&r, json!({"cnst": {"methods": ["GET", "DELETE"]}})));
    assert_eq!(send(&mut e, &widens, &holder(2)), Some(Reason::ChainWidens));
    let longer = forged(&h1, link_header(&h1), link_claims(&r, json!({"exp": NOW + 3600})));
    assert_eq!(send(&mut e, &longer, &holder(2)), Some(Reason::ChainWidens));
    let unknown = forged(&h1, link_header(&h1), link_claims(&r, json!({"cnst": {"geo": "eu"}})));
    assert_eq!(send(&mut e, &unknown, &holder(2)), Some(Reason::ChainWidens));
    // Expired, not yet valid.
    let expired = forged(&h1, link_header(&h1), link_claims(&r, json!({"exp": NOW - 120, "iat": NOW - 600})));
    assert_eq!(send(&mut e, &expired, &holder(2)), Some(Reason::ChainExpired));
    let early = forged(&h1, link_header(&h1), link_claims(&r, json!({"nbf": NOW + 120})));
    assert_eq!(send(&mut e, &early, &holder(2)), Some(Reason::ChainExpired));
    // Malformed: missing members, a wrong typ, a wrong depth, a kid, not a JWS.
    for (name, link) in [
        ("no jti", forged(&h1, link_header(&h1), link_claims(&r, json!({"jti": null})))),
        ("no exp", forged(&h1, link_header(&h1), link_claims(&r, json!({"exp": null})))),
        ("no cnf", forged(&h1, link_header(&h1), link_claims(&r, json!({"cnf": null})))),
        ("cnf.jwk", forged(&h1, link_header(&h1), link_claims(&r, json!({"cnf": {"jwk": {"kty": "EC"}}})))),
        ("depth 2", forged(&h1, link_header(&h1), link_claims(&r, json!({"del_depth": 2})))),
        ("no typ", forged(&h1, json!({"alg": "ES256", "jwk": h1.public_jwk(None)}), link_claims(&r, json!({})))),
        (
            "kid",
            forged(
                &h1,
                json!({"typ": "cjwt-link+jwt", "alg": "ES256", "kid": "a", "jwk": h1.public_jwk(None)}),
                link_claims(&r, json!({})),
            ),
        ),
        ("no jwk", forged(&h1, json!({"typ": "cjwt-link+jwt", "alg": "ES256"}), link_claims(&r, json!({})))),
        ("bad constraint", forged(&h1, link_header(&h1), link_claims(&r, json!({"cnst": {"methods": 3}})))),
        ("two parts", "abc.def".to_string()),
        ("empty", String::new()),
    ] {
        assert_eq!(send(&mut e, &link, &holder(2)), Some(Reason::ChainMalformed), "{name}");
    }
    // Two chain headers.
    let c = format!("{r}~{good}");
    let twice = request("GET", URL, &c, &holder(2), "t").header("cjwt-chain", &good);
    assert_eq!(verdict(&mut e, &twice), Some(Reason::ChainMalformed));
    // Too deep (4 links, max_depth 3), too large.
    let deep = credential(json!({}), &[json!({}), json!({}), json!({}), json!({})]);
    assert_eq!(verdict(&mut e, &request("GET", URL, &deep, &holder(5), "d")), Some(Reason::ChainDepth));
    let large = format!("{good}~{}", "A".repeat(4096));
    assert_eq!(send(&mut e, &large, &holder(2)), Some(Reason::ChainSize));
    // Revocation of a link's jti revokes the chain (the root's own revocation is SPEC §11's, unchanged).
    let c = credential(json!({}), &[json!({}), json!({})]);
    assert_eq!(verdict(&mut e, &request("GET", URL, &c, &holder(3), "v")), Some(Reason::Revoked));
    // Reordered links: link 2 where link 1 belongs.
    let c = credential(json!({}), &[json!({}), json!({"methods": ["GET"]})]);
    let parts: Vec<&str> = c.split('~').collect();
    let reordered = format!("{}~{}~{}", parts[0], parts[2], parts[1]);
    assert_eq!(verdict(&mut e, &request("GET", URL, &reordered, &holder(3), "o")), Some(Reason::ChainKey));
}

#[test]
fn a_root_not_bound_to_a_key_has_no_chain() {
    let mut e = engine_with(json!({}));
    let unbound = mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"jti": "u"})));
    let h1 = holder(1);
    let link = forged(&h1, link_header(&h1), link_claims(&unbound, json!({})));
    let host = StaticHost::get("/orders/1").bearer(&unbound).header("cjwt-chain", &link);
    assert_eq!(verdict(&mut e, &host), Some(Reason::ChainKey));
    // max_depth 0: no chain at all.
    let mut e = engine_with(json!({"attenuation": {"max_depth": 0}}));
    let c = credential(json!({}), &[json!({})]);
    assert_eq!(verdict(&mut e, &request("GET", URL, &c, &holder(2), "z")), Some(Reason::ChainDepth));
}

#[test]
fn with_a_usage_store_one_level_counts_and_more_are_refused() {
    let mut e = engine_with(
        json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "key_prefix": "mesh/uses/", "timeout_ms": 300}}}),
    );
    let one = credential(json!({}), &[json!({"max_uses": 3})]);
    let outcome = e.decide_with(
        &request("GET", URL, &one, &holder(2), "m1"),
        &InlineOnly,
        &PureRust,
        &mut MemoryCounter::default(),
        &mut &ProcessReplay::new(),
    );
    assert!(matches!(outcome.decision, Decision::Allow { .. }), "{:?}", outcome.decision);
    assert!(outcome.pending_use.is_some(), "the link's use goes to the store");
    let two = credential(json!({"max_uses": 5}), &[json!({"max_uses": 3})]);
    assert_eq!(verdict(&mut e, &request("GET", URL, &two, &holder(2), "m2")), Some(Reason::ChainUses));
}

/// Wycheproof-style negative cases for a link's signature: every mutation of
/// a valid ES256 / EdDSA link is `chain_signature` (or, where the mutation
/// changes the key, `chain_key`), never allowed.
#[test]
fn link_signatures_refuse_every_mutation() {
    let mut e = engine_with(json!({}));
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let h = SigningKey::generate(alg).unwrap();
        let bound =
            mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"jti": "w", "cnf": {"jkt": jkt(&h).unwrap()}})));
        let header = json!({"typ": "cjwt-link+jwt", "alg": alg.name(), "jwk": h.public_jwk(None)});
        let mut body = link_claims(&bound, json!({}));
        body["iss"] = json!(jkt(&h).unwrap());
        let good = forged(&h, header.clone(), body.clone());
        let send = |e: &mut Engine, link: &str| {
            let c = format!("{bound}~{link}");
            verdict(e, &request("GET", URL, &c, &holder(2), "w"))
        };
        assert_eq!(send(&mut e, &good), None, "{alg:?} valid");
        let (input, sig) = good.rsplit_once('.').unwrap();
        let raw = b64::decode(sig.as_bytes()).unwrap();
        // No signature at all is not a compact JWS.
        let empty = format!("{input}.");
        assert_eq!(send(&mut e, &empty), Some(Reason::ChainMalformed), "{alg:?} empty signature");
        let mut cases: Vec<(String, Vec<u8>)> = vec![
            ("truncated".into(), raw[..raw.len() - 1].to_vec()),
            ("extended".into(), [raw.clone(), vec![0]].concat()),
            ("all zero".into(), vec![0; raw.len()]),
            ("all ones".into(), vec![0xff; raw.len()]),
            ("halves swapped".into(), [raw[raw.len() / 2..].to_vec(), raw[..raw.len() / 2].to_vec()].concat()),
        ];
        for i in [0, raw.len() / 2 - 1, raw.len() / 2, raw.len() - 1] {
            let mut flipped = raw.clone();
            flipped[i] ^= 1;
            cases.push((format!("bit flipped at {i}"), flipped));
        }
        if alg == Algorithm::ES256 {
            // r = 0 or s = 0; s replaced by n - s (the other valid s is not a new
            // message: p256 accepts it, so it is not listed); DER instead of raw.
            cases.push(("r zero".into(), [vec![0; 32], raw[32..].to_vec()].concat()));
            cases.push(("s zero".into(), [raw[..32].to_vec(), vec![0; 32]].concat()));
            let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der().as_bytes().to_vec();
            cases.push(("DER encoded".into(), der));
        }
        for (name, sig) in cases {
            let link = format!("{input}.{}", b64::encode(&sig));
            assert_eq!(send(&mut e, &link), Some(Reason::ChainSignature), "{alg:?} {name}");
        }
        // The payload changed under the signature.
        let mut other = body.clone();
        other["jti"] = json!("changed");
        let tampered =
            format!("{}.{}.{sig}", input.split('.').next().unwrap(), b64::encode(other.to_string().as_bytes()));
        assert_eq!(send(&mut e, &tampered), Some(Reason::ChainSignature), "{alg:?} payload changed");
        // alg none, an HMAC alg keyed with the public key, another alg than the key's.
        for bad_alg in ["none", "HS256", if alg == Algorithm::ES256 { "ES384" } else { "ES256" }] {
            let mut h2 = header.clone();
            h2["alg"] = json!(bad_alg);
            let input =
                format!("{}.{}", b64::encode(h2.to_string().as_bytes()), b64::encode(body.to_string().as_bytes()));
            let link = format!("{input}.{sig}");
            assert_eq!(send(&mut e, &link), Some(Reason::ChainSignature), "{alg:?} alg {bad_alg}");
        }
        // A private key member in the header's jwk.
        let mut h3 = header.clone();
        h3["jwk"]["d"] = json!("AAAA");
        assert_eq!(send(&mut e, &forged(&h, h3, body.clone())), Some(Reason::ChainMalformed), "{alg:?} private jwk");
    }
}

/// `attenuate` refuses to sign what the proxy would refuse.
#[test]
fn attenuate_refuses_to_widen_or_to_sign_for_another_holder() {
    let r = root(json!({"methods": ["GET"], "max_uses": 3}));
    let ok = attenuate(&holder(1), &r, &spec("a", 2, json!({"max_uses": 2})), "cnst", &[]);
    assert!(ok.is_ok());
    let widen = attenuate(&holder(1), &r, &spec("a", 2, json!({"max_uses": 4})), "cnst", &[]);
    assert!(widen.unwrap_err().contains("max_uses"));
    let widen = attenuate(&holder(1), &r, &spec("a", 2, json!({"methods": ["GET", "PUT"]})), "cnst", &[]);
    assert!(widen.unwrap_err().contains("methods"));
    let not_mine = attenuate(&holder(2), &r, &spec("a", 3, json!({})), "cnst", &[]);
    assert!(not_mine.unwrap_err().contains("binds"));
    let mut long = spec("a", 2, json!({}));
    long.exp = NOW + 3600;
    assert!(attenuate(&holder(1), &r, &long, "cnst", &[]).unwrap_err().contains("exp"));
    // A second link is checked against the narrowest value so far, not only its parent's.
    let c = attenuate(&holder(1), &r, &spec("a", 2, json!({})), "cnst", &[]).unwrap();
    let widen = attenuate(&holder(2), &c, &spec("b", 3, json!({"methods": ["POST"]})), "cnst", &[]);
    assert!(widen.is_err());
}

/// `forward.remove_token`: the links go with the root token (they are part of
/// the credential); without it the `cjwt-chain` header goes upstream as sent.
#[test]
fn remove_token_removes_the_chain_too() {
    use cjwt_core::outcome::plan::{plan, Act};
    let c = credential(Value::Null, &[json!({"methods": ["GET"]})]);
    let host = request("GET", URL, &c, &holder(2), "p-remove");
    for (remove, removed) in [(true, true), (false, false)] {
        let mut e = engine_with(json!({"forward": {"remove_token": remove}}));
        let replay = ProcessReplay::new();
        let outcome = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
        assert!(matches!(outcome.decision, Decision::Allow { .. }), "{:?}", outcome.decision);
        let Act::Forward(ops) = plan(e.config(), &outcome, &host).act else { panic!("refused") };
        let chain_removed = ops.iter().any(|(n, v)| n == "cjwt-chain" && v.is_none());
        assert_eq!(chain_removed, removed, "remove_token {remove}: {ops:?}");
        assert_eq!(ops.iter().any(|(n, v)| n == "authorization" && v.is_none()), removed);
    }
}
