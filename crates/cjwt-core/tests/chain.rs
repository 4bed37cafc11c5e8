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

/// A root bound by `cnf.jwk` (the holder's public key itself, RFC 7800) starts
/// a chain as one bound by `cnf.jkt` does: its first link must be signed by
/// that key; a root whose `cnf.jwk` holds a private key binds nothing.
#[test]
fn a_root_bound_by_cnf_jwk_starts_a_chain() {
    let mut e = engine_with(json!({}));
    let root_with =
        |jwk: Value| mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"jti": "root-jwk", "cnf": {"jwk": jwk}})));
    let root = root_with(holder(1).public_jwk(None));
    let c = attenuate(&holder(1), &root, &spec("link-jwk", 2, json!({"methods": ["GET"]})), "cnst", &[]).unwrap();
    assert_eq!(verdict(&mut e, &request("GET", URL, &c, &holder(2), "jwk-ok")), None);
    assert_eq!(verdict(&mut e, &request("POST", URL, &c, &holder(2), "jwk-post")), Some(Reason::Method));
    // The root alone, proved by its own key, as any DPoP-bound token.
    assert_eq!(verdict(&mut e, &request("GET", URL, &root, &holder(1), "jwk-root")), None);
    // A link signed by another key than the one in cnf.jwk.
    let stranger = attenuate(&holder(1), &root_with(holder(4).public_jwk(None)), &spec("s", 2, json!({})), "cnst", &[]);
    assert!(stranger.is_err(), "the CLI refuses to derive with a key the credential does not bind");
    let mut private = holder(1).public_jwk(None);
    private["d"] = json!(b64::encode(&[1u8; 32]));
    let leaky = root_with(private);
    assert_eq!(
        verdict(&mut e, &request("GET", URL, &leaky, &holder(1), "jwk-private")),
        Some(Reason::UnsupportedBinding)
    );
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
    // One character inside the signature changed (all its six bits are the
    // signature's: the last one's low bits are padding, which a strict decoder
    // refuses as malformed rather than as a wrong signature).
    let mut bad_sig = good.clone().into_bytes();
    let at = bad_sig.len() - 10;
    bad_sig[at] = if bad_sig[at] == b'A' { b'B' } else { b'A' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
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
fn with_a_usage_store_every_counting_level_goes_to_the_store() {
    let mut e = engine_with(
        json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "key_prefix": "mesh/uses/", "timeout_ms": 300}}}),
    );
    let decide = |e: &mut Engine, c: &str, proof: &str| {
        e.decide_with(
            &request("GET", URL, c, &holder(2), proof),
            &InlineOnly,
            &PureRust,
            &mut MemoryCounter::default(),
            &mut &ProcessReplay::new(),
        )
    };
    let one = credential(json!({}), &[json!({"max_uses": 3})]);
    let outcome = decide(&mut e, &one, "m1");
    assert!(matches!(outcome.decision, Decision::Allow { .. }), "{:?}", outcome.decision);
    assert_eq!(outcome.pending_use.map(|c| c.uses_left()), Some(1), "the link's use goes to the store");
    let two = credential(json!({"max_uses": 5}), &[json!({"max_uses": 3})]);
    let outcome = decide(&mut e, &two, "m2");
    assert!(matches!(outcome.decision, Decision::Allow { .. }), "{:?}", outcome.decision);
    assert_eq!(outcome.pending_use.map(|c| c.uses_left()), Some(2), "the link's use, then the root's");
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

/// A mesh-wide `usage_store` (SPEC §16, decision 117): an in-memory etcd
/// answering the calls a request's flow hands out, over the JSON gateway or
/// gRPC, as etcd does: the use transaction (create, or put again below the
/// limit), the compare-and-swap of a leased allowance, the lease grant.
mod mesh {
    use super::*;
    use base64::Engine as _;
    use cjwt_core::engine::Engine;
    use cjwt_core::keys::host_crypto::PureRust;
    use cjwt_core::lifecycle::request::{Env, RequestFlow, Step, StoreCall};
    use cjwt_core::outcome::metrics::Counter;
    use cjwt_core::outcome::plan::{Act, Plan};
    use cjwt_core::usage::etcd::EtcdReply;
    use cjwt_core::usage::grpc::{self, pb};
    use cjwt_core::usage::UsageId;
    use prost::Message as _;
    use std::collections::{HashMap, HashSet};

    const ISS: &str = "https://idp.example.com";
    const PREFIX: &str = "mesh/uses/";
    const NOW_MS: u64 = (NOW as u64) * 1000;

    #[derive(Default)]
    struct FakeEtcd {
        /// key → (version, value, mod_revision)
        keys: HashMap<Vec<u8>, (i64, Vec<u8>, i64)>,
        leases: HashSet<i64>,
        revision: i64,
        /// The keys of the transactions, in the order asked.
        asked: Vec<String>,
        /// The n-th call (from 0) is answered 503 / gRPC 14.
        fail_at: Option<usize>,
        calls: usize,
    }

    /// What etcd does with one transaction, API aside.
    enum Done {
        Created,
        Nested(bool),
        Taken,
        Moved(u64, i64),
        LeaseMissing,
    }

    impl FakeEtcd {
        fn version(&self, key: &str) -> i64 {
            self.keys.get(key.as_bytes()).map_or(0, |k| k.0)
        }

        fn count(&self, key: &str) -> u64 {
            self.keys.get(key.as_bytes()).map_or(0, |k| String::from_utf8_lossy(&k.1).parse().unwrap())
        }

        /// `create`: the put if the key is absent (with its lease, value);
        /// `nested_limit`: the use's limit; else `cas`: (known mod_revision or
        /// None for CREATE, value to write).
        fn apply(
            &mut self,
            key: Vec<u8>,
            lease: i64,
            nested_limit: Option<i64>,
            cas: Option<(Option<i64>, Vec<u8>)>,
        ) -> Done {
            self.asked.push(String::from_utf8(key.clone()).unwrap());
            let exists = self.keys.contains_key(&key);
            match (nested_limit, cas) {
                (Some(limit), _) => {
                    if !exists {
                        if !self.leases.contains(&lease) {
                            return Done::LeaseMissing;
                        }
                        self.revision += 1;
                        self.keys.insert(key, (1, vec![], self.revision));
                        return Done::Created;
                    }
                    let k = self.keys.get_mut(&key).unwrap();
                    if k.0 < limit {
                        self.revision += 1;
                        k.0 += 1;
                        k.2 = self.revision;
                        Done::Nested(true)
                    } else {
                        Done::Nested(false)
                    }
                }
                (None, Some((known, value))) => {
                    let current = self.keys.get(&key).map(|k| k.2);
                    match (known, current) {
                        (None, None) if !self.leases.contains(&lease) => Done::LeaseMissing,
                        (None, None) => {
                            self.revision += 1;
                            self.keys.insert(key, (1, value, self.revision));
                            Done::Taken
                        }
                        (Some(m), Some(c)) if m == c => {
                            self.revision += 1;
                            let k = self.keys.get_mut(&key).unwrap();
                            (k.0, k.1, k.2) = (k.0 + 1, value, self.revision);
                            Done::Taken
                        }
                        _ => {
                            let k = self.keys.get(&key).unwrap();
                            Done::Moved(String::from_utf8_lossy(&k.1).parse().unwrap(), k.2)
                        }
                    }
                }
                (None, None) => panic!("not a transaction of cjwt's"),
            }
        }

        /// The answer to `call`: (HTTP status, grpc-status, grpc-message, body).
        fn answer(&mut self, call: &StoreCall) -> (String, Option<String>, Option<String>, Vec<u8>) {
            let n = self.calls;
            self.calls += 1;
            if self.fail_at == Some(n) {
                return match call.is_grpc() {
                    true => ("200".into(), Some("14".into()), Some("etcdserver: no leader".into()), vec![]),
                    false => ("503".into(), None, None, br#"{"error":"etcdserver: no leader"}"#.to_vec()),
                };
            }
            if call.is_grpc() {
                self.answer_grpc(call)
            } else {
                self.answer_json(call)
            }
        }

        fn answer_json(&mut self, call: &StoreCall) -> (String, Option<String>, Option<String>, Vec<u8>) {
            let body: Value = serde_json::from_slice(&call.body).unwrap();
            let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
            let num = |v: &Value| v.as_str().unwrap().parse::<i64>().unwrap();
            if call.path.ends_with("/lease/grant") {
                self.leases.insert(num(&body["ID"]));
                let out = json!({"header": {"revision": "1"}, "ID": body["ID"], "TTL": body["TTL"]});
                return ("200".into(), None, None, out.to_string().into_bytes());
            }
            let cmp = &body["compare"][0];
            let put = &body["success"][0]["requestPut"];
            let lease = put.get("lease").map_or(0, num);
            let done = match body["failure"][0].get("requestTxn") {
                Some(nested) => self.apply(b64(&cmp["key"]), lease, Some(num(&nested["compare"][0]["version"])), None),
                None => {
                    let known = (cmp["target"] == "MOD").then(|| num(&cmp["modRevision"]));
                    self.apply(b64(&cmp["key"]), lease, None, Some((known, b64(&put["value"]))))
                }
            };
            let header = json!({"revision": self.revision.to_string()});
            let out = match done {
                Done::LeaseMissing => {
                    return (
                        "404".into(),
                        None,
                        None,
                        br#"{"error":"etcdserver: requested lease not found","code":5}"#.to_vec(),
                    )
                }
                Done::Created | Done::Taken => json!({"header": header, "succeeded": true}),
                Done::Nested(true) => json!({"header": header, "responses": [{"response_txn": {"succeeded": true}}]}),
                Done::Nested(false) => json!({"header": header, "responses": [{"response_txn": {}}]}),
                Done::Moved(count, rev) => json!({"header": header, "responses": [{"response_range": {"kvs": [{
                    "mod_revision": rev.to_string(),
                    "value": base64::engine::general_purpose::STANDARD.encode(count.to_string())}]}}]}),
            };
            ("200".into(), None, None, out.to_string().into_bytes())
        }

        fn answer_grpc(&mut self, call: &StoreCall) -> (String, Option<String>, Option<String>, Vec<u8>) {
            use pb::compare::TargetUnion;
            use pb::request_op::Request;
            use pb::response_op::Response;
            let message = grpc::unframe(&call.body).unwrap();
            let header = |rev| Some(pb::ResponseHeader { revision: rev, ..Default::default() });
            if call.path == grpc::LEASE_GRANT_PATH {
                let asked = pb::LeaseGrantRequest::decode(message).unwrap();
                self.leases.insert(asked.id);
                let out =
                    pb::LeaseGrantResponse { header: header(1), id: asked.id, ttl: asked.ttl, error: String::new() };
                return ("200".into(), Some("0".into()), None, grpc::frame(&out));
            }
            let txn = pb::TxnRequest::decode(message).unwrap();
            let cmp = &txn.compare[0];
            let Some(Request::RequestPut(put)) = &txn.success[0].request else { panic!("no put") };
            let done = match &txn.failure[0].request {
                Some(Request::RequestTxn(nested)) => {
                    let Some(TargetUnion::Version(limit)) = nested.compare[0].target_union else { panic!() };
                    self.apply(cmp.key.clone(), put.lease, Some(limit), None)
                }
                _ => {
                    let known = match cmp.target_union {
                        Some(TargetUnion::ModRevision(m)) => Some(m),
                        _ => None,
                    };
                    self.apply(cmp.key.clone(), put.lease, None, Some((known, put.value.clone())))
                }
            };
            let nested = |succeeded| pb::ResponseOp {
                response: Some(Response::ResponseTxn(pb::TxnResponse {
                    header: header(0),
                    succeeded,
                    responses: vec![],
                })),
            };
            let out = match done {
                Done::LeaseMissing => {
                    return (
                        "200".into(),
                        Some("5".into()),
                        Some("etcdserver: requested lease not found".into()),
                        vec![],
                    )
                }
                Done::Created | Done::Taken => {
                    pb::TxnResponse { header: header(self.revision), succeeded: true, responses: vec![] }
                }
                Done::Nested(ok) => {
                    pb::TxnResponse { header: header(self.revision), succeeded: false, responses: vec![nested(ok)] }
                }
                Done::Moved(count, rev) => pb::TxnResponse {
                    header: header(self.revision),
                    succeeded: false,
                    responses: vec![pb::ResponseOp {
                        response: Some(Response::ResponseRange(pb::RangeResponse {
                            kvs: vec![pb::KeyValue {
                                key: cmp.key.clone(),
                                mod_revision: rev,
                                value: count.to_string().into_bytes(),
                                ..Default::default()
                            }],
                            ..Default::default()
                        })),
                    }],
                },
            };
            ("200".into(), Some("0".into()), None, grpc::frame(&out))
        }
    }

    fn engine(api: &str, extra: Value) -> Engine {
        let mut store =
            json!({"cluster": "etcd", "authority": "etcd", "key_prefix": PREFIX, "timeout_ms": 300, "api": api});
        for (k, v) in extra.as_object().unwrap() {
            store[k] = v.clone();
        }
        let mut sender = json!({"dpop": {}});
        if extra.get("mesh_proofs").is_some() {
            store.as_object_mut().unwrap().remove("mesh_proofs");
            sender["dpop"]["replay_cache"] = json!({"store": "usage_store"});
        }
        let mut cfg = config_json(json!({"usage_store": {"etcd": store}}));
        cfg["sender_constraints"] = sender;
        Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap())
    }

    /// One request walked through its flow against `etcd`: the plan that ends it.
    fn walk(e: &mut Engine, host: &StaticHost, etcd: &mut FakeEtcd, counter: &mut MemoryCounter) -> Plan {
        let replay = ProcessReplay::new();
        let mut r = &replay;
        let mut flow = RequestFlow::new();
        let env = Env { host, keys: &InlineOnly, crypto: &PureRust, counter: &mut *counter, replay: &mut r };
        let mut step = flow.start(e, env, NOW_MS);
        for _ in 0..32 {
            match step {
                Step::Act(plan) => return plan,
                Step::AwaitStore(call) => {
                    let (status, gs, gm, body) = etcd.answer(&call);
                    let reply = EtcdReply {
                        status: Some(&status),
                        grpc_status: gs.as_deref(),
                        grpc_message: gm.as_deref(),
                        body: &body,
                    };
                    step = flow.on_store_reply(e, host, &mut *counter, &reply, body.len(), NOW_MS + 10);
                }
                other => panic!("unexpected step {other:?}"),
            }
        }
        panic!("the flow never ended")
    }

    fn reason(plan: &Plan) -> Option<(u32, String)> {
        match &plan.act {
            Act::Forward(_) => None,
            Act::Refuse(r) => {
                let reason = plan.audit.iter().find(|(f, _)| *f == "reason").map(|(_, v)| v.clone()).unwrap();
                Some((r.status, reason))
            }
        }
    }

    /// The store key of the root (`root-1`) and of link `i` (1-based) of `c`.
    fn root_key() -> String {
        format!("{PREFIX}{}", UsageId::new(ISS, "root-1").hex())
    }

    fn link_key(c: &str, i: usize) -> String {
        let link = c.split('~').nth(i).unwrap();
        let input = &link[..link.rfind('.').unwrap()];
        let name = format!("link:{}", b64::encode(&sha2::Sha256::digest(input.as_bytes())));
        format!("{PREFIX}{}", UsageId::new(ISS, &name).hex())
    }

    /// A 3-link chain with `max_uses` at the root (5), link 1 (3) and link 3
    /// (2): each request counts the leaf's, link 1's and the root's key, in
    /// that order; the leaf (tightest) is exhausted after 2, and its refusal
    /// counts nothing further. Then a chain whose middle level is the tightest:
    /// refused there with the leaf's use spent.
    #[test]
    fn every_counting_level_counts_in_the_store_leaf_first() {
        for api in ["json", "grpc"] {
            let mut e = engine(api, json!({}));
            let c = credential(json!({"max_uses": 5}), &[json!({"max_uses": 3}), json!({}), json!({"max_uses": 2})]);
            let (leaf, mid, root) = (link_key(&c, 3), link_key(&c, 1), root_key());
            let mut etcd = FakeEtcd::default();
            let mut counter = MemoryCounter::default();
            for (i, jti) in ["a", "b"].iter().enumerate() {
                let plan = walk(&mut e, &request("GET", URL, &c, &holder(4), jti), &mut etcd, &mut counter);
                assert_eq!(reason(&plan), None, "{api} use {i}: {plan:?}");
                assert!(plan.counters.contains(&Counter::UsageStoreOk));
            }
            // Three keys, leaf first. The links' bucket lease (their `exp`) is
            // granted at the leaf's first use, the root's (a later `exp`) at its own.
            let order: Vec<&str> = etcd.asked.iter().map(String::as_str).collect();
            assert_eq!(
                order,
                [&leaf, &leaf, &mid, &root, &root, &leaf, &mid, &root].map(String::as_str),
                "{api}: each level in order, each missing lease granted then the level asked again"
            );
            assert_eq!(etcd.leases.len(), 2, "{api}");
            assert_eq!((etcd.version(&leaf), etcd.version(&mid), etcd.version(&root)), (2, 2, 2), "{api}");
            // The leaf is spent: refused max_uses, nothing else counted.
            let plan = walk(&mut e, &request("GET", URL, &c, &holder(4), "c"), &mut etcd, &mut counter);
            assert_eq!(reason(&plan), Some((403, "max_uses".into())), "{api}");
            assert_eq!((etcd.version(&mid), etcd.version(&root)), (2, 2), "{api}");
            // The free deny path: the leaf's chain is refused without the store.
            let calls = etcd.calls;
            let plan = walk(&mut e, &request("GET", URL, &c, &holder(4), "d"), &mut etcd, &mut counter);
            assert_eq!((reason(&plan), etcd.calls), (Some((403, "max_uses".into())), calls), "{api}");

            // The middle level the tightest: link 1 allows 1, its child 2.
            let c = credential(json!({"max_uses": 5}), &[json!({"max_uses": 1}), json!({"max_uses": 1})]);
            let c2 = credential(json!({"max_uses": 5}), &[json!({"max_uses": 1})]);
            let (l1, l2) = (link_key(&c, 1), link_key(&c, 2));
            assert_eq!(l1, link_key(&c2, 1), "the same link, the same key");
            let mut counter = MemoryCounter::default();
            let plan = walk(&mut e, &request("GET", URL, &c2, &holder(2), "x"), &mut etcd, &mut counter);
            assert_eq!(reason(&plan), None, "{api}: link 1 spends its one use");
            assert_eq!(etcd.version(&root), 3, "{api}");
            let plan = walk(&mut e, &request("GET", URL, &c, &holder(3), "y"), &mut etcd, &mut counter);
            assert_eq!(reason(&plan), Some((403, "max_uses".into())), "{api}: link 1 has nothing left");
            assert_eq!(etcd.version(&l2), 1, "{api}: the leaf's use, counted before, stays spent");
            assert_eq!((etcd.version(&l1), etcd.version(&root)), (1, 3), "{api}: the root counts nothing");
        }
    }

    /// A DPoP proof recorded for the mesh, then the levels: a replayed proof
    /// counts nothing; a fresh one, every level.
    #[test]
    fn a_proof_is_recorded_first_then_each_level() {
        for api in ["json", "grpc"] {
            let mut e = engine(api, json!({"mesh_proofs": true}));
            let c = credential(json!({"max_uses": 5}), &[json!({"max_uses": 3})]);
            let (link, root) = (link_key(&c, 1), root_key());
            let mut etcd = FakeEtcd::default();
            let mut counter = MemoryCounter::default();
            let host = request("GET", URL, &c, &holder(2), "p1");
            let plan = walk(&mut e, &host, &mut etcd, &mut counter);
            assert_eq!(reason(&plan), None, "{api}: {plan:?}");
            assert!(etcd.asked[0].starts_with(&format!("{PREFIX}dpop/")), "{api}: {:?}", etcd.asked);
            assert_eq!(etcd.asked.last(), Some(&root));
            assert_eq!((etcd.version(&link), etcd.version(&root)), (1, 1), "{api}");
            // The same proof again: a replay, no level counted.
            let plan = walk(&mut e, &host, &mut etcd, &mut counter);
            assert_eq!(reason(&plan), Some((401, "dpop_replay".into())), "{api}");
            assert_eq!((etcd.version(&link), etcd.version(&root)), (1, 1), "{api}");
        }
    }

    /// The store failing at any call of the sequence: 503
    /// `usage_unavailable`, what was counted before stays counted.
    #[test]
    fn a_store_failing_mid_sequence_fails_closed() {
        for api in ["json", "grpc"] {
            let c = credential(json!({"max_uses": 5}), &[json!({"max_uses": 3}), json!({"max_uses": 2})]);
            // Calls: leaf txn (lease missing), grant, leaf txn, link 1 txn, root txn.
            for fail_at in 0..5 {
                let mut e = engine(api, json!({}));
                let mut etcd = FakeEtcd { fail_at: Some(fail_at), ..FakeEtcd::default() };
                let mut counter = MemoryCounter::default();
                let plan = walk(&mut e, &request("GET", URL, &c, &holder(3), "f"), &mut etcd, &mut counter);
                assert_eq!(reason(&plan), Some((503, "usage_unavailable".into())), "{api} failing at {fail_at}");
                assert!(plan.counters.contains(&Counter::UsageStoreFailed));
                assert_eq!(etcd.calls, fail_at + 1, "{api}: nothing asked after the failure");
                let leaf_counted = i64::from(fail_at > 2);
                assert_eq!(etcd.version(&link_key(&c, 2)), leaf_counted, "{api} failing at {fail_at}");
                assert_eq!(etcd.version(&link_key(&c, 1)), i64::from(fail_at > 3));
                assert_eq!(etcd.version(&root_key()), 0);
            }
        }
    }

    /// Leased allowances: a level whose `max_uses` reaches `from_max_uses` is
    /// counted in its allowance key (as without a chain), one use taken by
    /// compare-and-swap; the others in their use keys.
    #[test]
    fn a_leased_level_takes_one_use_from_its_allowance_key() {
        for api in ["json", "grpc"] {
            let allowance = json!({"allowance": {"from_max_uses": 10, "batch": 4, "refill_below": 0}});
            let mut e = engine(api, allowance);
            let c = credential(json!({"max_uses": 100}), &[json!({"max_uses": 2})]);
            let link = link_key(&c, 1);
            let root = format!("{PREFIX}allow/{}", UsageId::new(ISS, "root-1").hex());
            let mut etcd = FakeEtcd::default();
            let mut counter = MemoryCounter::default();
            for jti in ["a", "b"] {
                let plan = walk(&mut e, &request("GET", URL, &c, &holder(2), jti), &mut etcd, &mut counter);
                assert_eq!(reason(&plan), None, "{api}: {plan:?}");
            }
            assert_eq!((etcd.version(&link), etcd.count(&root)), (2, 2), "{api}: one use taken per request");
            let plan = walk(&mut e, &request("GET", URL, &c, &holder(2), "c"), &mut etcd, &mut counter);
            assert_eq!(reason(&plan), Some((403, "max_uses".into())), "{api}");
            assert_eq!(etcd.count(&root), 2, "{api}");
            // The root used alone takes a batch from the same key.
            let (root_only, _) = split(&c);
            let plan = walk(&mut e, &request("GET", URL, root_only, &holder(1), "r"), &mut etcd, &mut counter);
            assert_eq!(reason(&plan), None, "{api}");
            assert_eq!(etcd.count(&root), 6, "{api}: a batch of 4 on top of the chain's 2");
        }
    }
}
