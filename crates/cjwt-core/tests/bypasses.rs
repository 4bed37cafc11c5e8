//! Regression tests for the bypasses of issue 12 where the core decides
//! (docs/security.md, rows SEC-12.x). Each failed on the code before the fix.
//! Findings that cross the proxy are tested through Envoy in `envoy_bypasses.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::jwks::parse::parse_remote_jwks;
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{mint, mint_raw};
use cjwt_core::outcome::forward;
use cjwt_core::reason::Reason;
use cjwt_core::request::view::RequestView;
use cjwt_core::testing::*;
use cjwt_core::usage::MemoryCounter;
use serde_json::{json, Value};

/// SEC-12.1: a query custom constraint sees the parameter as upstream decoders do.
#[test]
fn query_constraints_decode_names_and_refuse_second_occurrences() {
    let mut e = engine(json!({"custom_constraints": {"tenant": {"query": "tenant"}}}));
    let t = eddsa(json!({"cnst": {"tenant": ["acme"]}}));
    let cases: &[(&str, Option<Reason>)] = &[
        ("/x?tenant=acme", None),
        ("/x?a=1&tenant=acme", None),
        ("/x?tenant=%61cme", None),
        ("/x?ten%61nt=acme", None),
        ("/x?t%65nant=evil&tenant=acme", Some(Reason::Custom)),
        ("/x?tenant&tenant=acme", Some(Reason::Custom)),
        ("/x?tenant=acme&tenant", Some(Reason::Custom)),
        ("/x?tenant=acme&t%65nant=evil", Some(Reason::Custom)),
        ("/x?x=1;tenant=evil&tenant=acme", Some(Reason::Custom)),
        ("/x?tenant=acme;tenant=evil", Some(Reason::Custom)),
        ("/x?tenant=ac+me", Some(Reason::Custom)),
        ("/x?tenant", Some(Reason::Custom)),
        ("/x", Some(Reason::Custom)),
    ];
    for (path, want) in cases {
        assert_eq!(verdict(&mut e, &StaticHost::get(path).bearer(&t)), *want, "{path}");
    }
}

/// SEC-12.1: `?access%5Ftoken=` is `access_token` to the upstream, so it is a
/// second credential next to `Authorization` (also when not configured).
#[test]
fn credential_scan_decodes_query_names() {
    let t = eddsa(json!({}));
    let other = eddsa(json!({"sub": "mallory"}));
    let mut header_only = engine(json!({}));
    let mut both =
        engine(json!({"token_from": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}]}));
    for e in [&mut header_only, &mut both] {
        for path in [
            format!("/x?access%5Ftoken={other}"),
            format!("/x?access%5ftoken={other}"),
            format!("/x?%61ccess_token={other}"),
            format!("/x?a=1;access_token={other}"),
        ] {
            assert_eq!(verdict(e, &StaticHost::get(&path).bearer(&t)), Some(Reason::MultipleTokens), "{path}");
        }
        // A valueless parameter carries no credential.
        assert_eq!(verdict(e, &StaticHost::get("/x?access_token").bearer(&t)), None);
    }
    for path in [format!("/x?access_token={t}&access%5Ftoken={other}"), format!("/x?access_token&access_token={t}")] {
        assert_eq!(verdict(&mut both, &StaticHost::get(&path)), Some(Reason::MultipleTokens), "{path}");
    }
    assert_eq!(verdict(&mut both, &StaticHost::get(&format!("/x?access%5Ftoken={t}"))), None);
}

/// SEC-12.1: `remove_token` strips the query credential in any spelling.
#[test]
fn query_credential_is_stripped_in_any_spelling() {
    assert_eq!(forward::remove_query_param("/a?access%5Ftoken=x&b=1", "access_token"), "/a?b=1");
    assert_eq!(forward::remove_query_param("/a?b=1&access_token=x", "access_token"), "/a?b=1");
}

/// SEC-12.2: `admin.example.com.` is the same name as `admin.example.com`.
#[test]
fn host_rules_and_constraints_match_a_trailing_dot() {
    let mut e = engine(json!({
        "rules": [{"match": {"hosts": ["admin.example.com"]}, "require": {"roles_any": ["admin"]}}]
    }));
    let user = eddsa(json!({}));
    for authority in ["admin.example.com", "admin.example.com.", "ADMIN.example.com.:443"] {
        let host = StaticHost::get("/x").bearer(&user).set_header(":authority", authority);
        assert_eq!(verdict(&mut e, &host), Some(Reason::Role), "{authority}");
    }
    let mut e = engine(json!({}));
    let t = eddsa(json!({"cnst": {"hosts": ["api.example.com"]}}));
    for (authority, want) in
        [("api.example.com.", None), ("api.example.com", None), ("api.example.com..", Some(Reason::Host))]
    {
        let host = StaticHost::get("/x").bearer(&t).set_header(":authority", authority);
        assert_eq!(verdict(&mut e, &host), want, "{authority}");
    }
}

/// SEC-12.6: rule patterns that can never match are configuration errors.
#[test]
fn rule_patterns_that_never_match_are_refused() {
    for (rule, field) in [
        (json!({"match": {"hosts": ["admin.example.com:443"]}}), "rules[0].match.hosts[0]"),
        (json!({"match": {"hosts": ["a.example.com", "b.example.com:8443"]}}), "rules[0].match.hosts[1]"),
        (json!({"match": {"path": "/admin?x=1"}}), "rules[0].match.path"),
        (json!({"match": {"path": "/admin#top"}}), "rules[0].match.path"),
    ] {
        let err = Config::from_json(config_json(json!({"rules": [rule]})).to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
}

/// SEC-12.8: a fetched RSA key without `alg`, for a provider without
/// `algorithms`, verifies RS256 only (as an inline key does).
#[test]
fn remote_rsa_keys_without_alg_mean_rs256() {
    let cfg = json!({"providers": [{"name": "idp", "issuer": "https://idp.example.com",
        "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]});
    let c = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    let mut jwk = key(Algorithm::RS256).public_jwk(Some("r"));
    jwk.as_object_mut().unwrap().remove("alg");
    let got = parse_remote_jwks(&c, 0, json!({"keys": [jwk]}).to_string().as_bytes()).unwrap();
    let algs = got.keys[0].algs;
    assert!(algs.contains(Algorithm::RS256));
    for other in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512] {
        assert!(!algs.contains(other), "{other:?} must not be accepted");
    }
}

/// SEC-12.4: a key that leaves the fetched set takes its cached verifications with it.
#[test]
fn cached_verifications_do_not_outlive_their_key() {
    let cfg = json!({"providers": [{"name": "idp", "issuer": "https://idp.example.com", "audiences": ["orders-api"],
        "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]});
    let c = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    let c2 = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    let k1 = key(Algorithm::EdDSA);
    let k2 = key(Algorithm::ES256);
    let set = |jwks: Value| parse_remote_jwks(&c, 0, jwks.to_string().as_bytes()).unwrap().keys;
    let mut store = Fetched::new(1);
    store.set(0, set(json!({"keys": [k1.public_jwk(Some("k1")), k2.public_jwk(Some("k2"))]})));
    let mut e = Engine::new(c2);
    let t = mint(k1, Some("k1"), &claims(json!({})));
    let host = StaticHost::get("/x").bearer(&t);
    let decide = |e: &mut Engine, store: &Fetched| match e
        .decide_with(
            &host,
            store,
            &PureRust,
            &mut MemoryCounter::default(),
            &mut cjwt_core::sender::replay::NoReplayCache,
        )
        .decision
    {
        Decision::Allow { .. } => None,
        Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
    };
    assert_eq!(decide(&mut e, &store), None);
    assert_eq!(decide(&mut e, &store), None, "cache hit");
    store.set(0, set(json!({"keys": [k2.public_jwk(Some("k2"))]})));
    assert_eq!(decide(&mut e, &store), Some(Reason::UnknownKey), "k1 left the set");
}

/// SEC-12.10: a literal `"ext.cnst": {}` does not hide `ext: {cnst: {...}}`.
#[test]
fn a_literal_dotted_member_does_not_shadow_nested_constraints() {
    let mut e = engine(json!({"claim_names": {"constraints": "ext.cnst"}}));
    let shadowed = eddsa(json!({"ext.cnst": {}, "ext": {"cnst": {"ip": ["10.0.0.0/8"]}}}));
    let host = StaticHost::get("/x").bearer(&shadowed).peer("192.0.2.1:5000");
    assert_eq!(verdict(&mut e, &host), Some(Reason::MalformedConstraint));
    let nested = eddsa(json!({"ext": {"cnst": {"ip": ["10.0.0.0/8"]}}}));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&nested).peer("192.0.2.1:5000")), Some(Reason::Ip));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&nested).peer("10.1.2.3:5000")), None);
    let literal = eddsa(json!({"ext.cnst": {"ip": ["10.0.0.0/8"]}}));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&literal).peer("192.0.2.1:5000")), Some(Reason::Ip));
}

/// A length-delimited protobuf field: tag, varint length, payload.
fn ld(field: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![(field << 3) | 2];
    let mut n = payload.len();
    while n >= 0x80 {
        v.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
    v.extend_from_slice(payload);
    v
}

/// A `Value` holding a string, or a `Struct` from entries.
fn pb_string(s: &str) -> Vec<u8> {
    ld(3, s.as_bytes())
}

fn pb_entry(key: &str, value: Vec<u8>) -> Vec<u8> {
    ld(1, &[ld(1, key.as_bytes()), ld(2, &value)].concat())
}

/// SEC-12.11: a valid `Struct` whose first entry is 123 bytes long starts with
/// `\n{`, which looked like JSON to the old first-byte test.
#[test]
fn a_struct_configuration_starting_with_a_brace_byte_is_read_as_a_struct() {
    let jwk = json!({"keys": [key(Algorithm::EdDSA).public_jwk(Some("k1"))]}).to_string();
    let pad = |n: usize| pb_entry("required_typ", pb_string(&"r".repeat(n)));
    let n = (0..120).find(|n| pad(*n).len() == 2 + 123).unwrap();
    let first = pad(n);
    assert_eq!(&first[..2], b"\n{");
    let provider = [
        pb_entry("name", pb_string("corp")),
        pb_entry("issuer", pb_string("https://idp.example.com")),
        pb_entry("jwks", pb_string(&jwk)),
    ]
    .concat();
    // A list of one struct: ListValue { values: [Value { struct_value }] }.
    let list = ld(6, &ld(1, &ld(5, &provider)));
    let bytes = [first, pb_entry("providers", list)].concat();
    let config = Config::from_plugin_bytes(&bytes).unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(config.provider_count(), 1);
    // JSON still reads as JSON, and a JSON syntax error is reported as one.
    assert!(Config::from_plugin_bytes(config_json(json!({})).to_string().as_bytes()).is_ok());
    let err = Config::from_plugin_bytes(b"{\"providers\": [").unwrap_err().to_string();
    assert!(!err.contains("protobuf"), "{err}");
}

/// SEC-12.12: in `dry_run` a refused request still loses its token when
/// `remove_token` is set; SEC-12.9: every spelling of a forwarded header is stripped.
#[test]
fn forwarding_strips_the_token_on_dry_run_refusals_and_underscore_variants() {
    let mut e = engine(json!({"mode": "dry_run", "forward": {"remove_token": true,
        "claims_to_headers": [{"claim": "sub", "header": "x-cjwt-sub"}]}}));
    let expired = mint(key(Algorithm::EdDSA), Some("k1"), &claims(json!({"exp": NOW - 3600})));
    let host = StaticHost::get("/x").bearer(&expired).header("x_cjwt_sub", "admin").header("x-cjwt_sub", "admin");
    let Decision::DryRunDeny(denial) = cjwt_core::testing::decide_inline(&mut e, &host).decision else {
        panic!("an expired token is refused (in dry_run: forwarded as a refusal)");
    };
    let edits = forward::edits(
        e.config().forward(),
        None,
        denial.credential.as_ref(),
        &RequestView::for_config(&host, e.config()),
    );
    assert!(edits.remove.iter().any(|h| h == "authorization"), "{edits:?}");
    for h in ["x-cjwt-sub", "x_cjwt_sub", "x-cjwt_sub"] {
        assert!(edits.remove.iter().any(|r| r == h), "{h} not stripped: {edits:?}");
    }
    assert!(edits.set.is_empty());
    // Allowed: the variants go, the verified value is set under the canonical name.
    let ok = eddsa(json!({}));
    let host = StaticHost::get("/x").bearer(&ok).header("x_cjwt_sub", "admin");
    let Decision::Allow { token, credential } = cjwt_core::testing::decide_inline(&mut e, &host).decision else {
        panic!("a valid token is allowed");
    };
    let edits = forward::edits(
        e.config().forward(),
        token.as_deref(),
        credential.as_ref(),
        &RequestView::for_config(&host, e.config()),
    );
    assert!(edits.remove.iter().any(|r| r == "x_cjwt_sub"));
    assert_eq!(edits.set, vec![("x-cjwt-sub".to_string(), "alice".to_string())]);
    let _ = mint_raw;
}
