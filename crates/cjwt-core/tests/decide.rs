//! The core decision, natively, table-driven: every reason code and constraint,
//! with boundaries, against a fake host and a fixed clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{mint, mint_raw};
use cjwt_core::reason::Reason;
use cjwt_core::testing::*;
use cjwt_core::token::verify::InlineOnly;
use cjwt_core::usage::etcd::UseAnswer;
use cjwt_core::usage::MemoryCounter;
use serde_json::{json, Value};

fn check(cases: &[(&str, StaticHost, Option<Reason>)], engine: &mut Engine) {
    for (name, host, want) in cases {
        assert_eq!(verdict(engine, host), *want, "case: {name}");
    }
}

#[test]
fn valid_token_is_allowed_and_carries_claims() {
    let mut e = engine(json!({}));
    let host = StaticHost::get("/x").bearer(&eddsa(json!({})));
    match cjwt_core::testing::decide_inline(&mut e, &host).decision {
        Decision::Allow { token: Some(t), .. } => assert_eq!(t.claims["sub"], "alice"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn credential_extraction_reasons() {
    let mut e = engine(json!({}));
    let t = eddsa(json!({}));
    check(
        &[
            ("no header", StaticHost::get("/x"), Some(Reason::MissingToken)),
            (
                "basic scheme",
                StaticHost::get("/x").header("authorization", "Basic dXNlcjpwYXNz"),
                Some(Reason::MissingToken),
            ),
            ("empty bearer", StaticHost::get("/x").header("authorization", "Bearer "), Some(Reason::MissingToken)),
            (
                "bearer glued",
                StaticHost::get("/x").header("authorization", &format!("Bearer{t}")),
                Some(Reason::MissingToken),
            ),
            ("lowercase scheme", StaticHost::get("/x").header("authorization", &format!("bearer {t}")), None),
            ("uppercase scheme", StaticHost::get("/x").header("authorization", &format!("BEARER {t}")), None),
            (
                "trailing junk",
                StaticHost::get("/x").header("authorization", &format!("Bearer {t} trailing")),
                Some(Reason::MalformedToken),
            ),
            (
                "two tokens in one",
                StaticHost::get("/x").header("authorization", &format!("Bearer {t},Bearer {t}")),
                Some(Reason::MultipleTokens),
            ),
            (
                "joined by envoy",
                StaticHost::get("/x").header("authorization", &format!("Bearer {t}, Bearer forged")),
                Some(Reason::MultipleTokens),
            ),
            ("trailing comma", StaticHost::get("/x").header("authorization", &format!("Bearer {t},")), None),
            ("two headers", StaticHost::get("/x").bearer(&t).bearer("forged.x.y"), Some(Reason::MultipleTokens)),
            (
                "two headers, forged first",
                StaticHost::get("/x").bearer("forged.x.y").bearer(&t),
                Some(Reason::MultipleTokens),
            ),
            (
                "non-utf8",
                StaticHost::get("/x").header("authorization", "Bearer \u{00ff}"),
                Some(Reason::MalformedToken),
            ),
        ],
        &mut e,
    );
}

#[test]
fn header_plus_query_is_multiple_tokens() {
    let mut e =
        engine(json!({"token_from": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}]}));
    let t = eddsa(json!({}));
    check(
        &[
            ("query only", StaticHost::get(&format!("/x?access_token={t}")), None),
            (
                "header and query",
                StaticHost::get(&format!("/x?access_token={t}")).bearer(&t),
                Some(Reason::MultipleTokens),
            ),
            (
                "query twice",
                StaticHost::get(&format!("/x?access_token={t}&access_token={t}")),
                Some(Reason::MultipleTokens),
            ),
        ],
        &mut e,
    );
}

#[test]
fn cookie_source() {
    let mut e = engine(json!({"token_from": [{"cookie": "jwt"}]}));
    let t = eddsa(json!({}));
    check(
        &[
            ("cookie", StaticHost::get("/x").header("cookie", &format!("a=1; jwt={t}")), None),
            (
                "cookie twice",
                StaticHost::get("/x").header("cookie", &format!("jwt={t}")).header("cookie", &format!("jwt={t}")),
                Some(Reason::MultipleTokens),
            ),
            ("other cookie", StaticHost::get("/x").header("cookie", "jwtx=1"), Some(Reason::MissingToken)),
        ],
        &mut e,
    );
}

/// The token's 401 reasons are the 401 table (`cjwt_core::testing::cases::untrusted`,
/// run by tests/cases.rs and through Envoy); here what needs another configuration.
#[test]
fn token_too_large_under_a_configured_limit() {
    let mut e = engine(json!({"max_token_bytes": 2048}));
    check(&[("too large", StaticHost::get("/x").bearer(&"a".repeat(2049)), Some(Reason::TokenTooLarge))], &mut e);
}

#[test]
fn signature_from_another_key_of_same_alg_is_bad_signature() {
    let mut e = engine(json!({}));
    let stranger = cjwt_core::mint::SigningKey::generate(Algorithm::EdDSA).unwrap();
    let t = mint(&stranger, Some("k1"), &claims(json!({})));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t)), Some(Reason::BadSignature));
}

#[test]
fn time_boundaries_with_skew() {
    let mut e = engine(json!({"clock_skew_seconds": 60}));
    let t = eddsa(json!({"iat": NOW, "nbf": NOW, "exp": NOW + 100}));
    check(
        &[
            ("just before exp+skew", StaticHost::get("/x").bearer(&t).at(NOW + 159), None),
            ("at exp+skew", StaticHost::get("/x").bearer(&t).at(NOW + 160), Some(Reason::Expired)),
            ("nbf-skew", StaticHost::get("/x").bearer(&t).at(NOW - 60), None),
            ("before nbf-skew", StaticHost::get("/x").bearer(&t).at(NOW - 61), Some(Reason::NotYetValid)),
        ],
        &mut e,
    );
    let future_iat = eddsa(json!({"iat": NOW + 61}));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&future_iat)), Some(Reason::NotYetValid));
}

#[test]
fn extreme_and_float_dates_saturate_without_panic() {
    let mut e = engine(json!({}));
    check(
        &[
            ("huge nbf", StaticHost::get("/x").bearer(&eddsa(json!({"nbf": 9.9e300}))), Some(Reason::NotYetValid)),
            (
                "huge negative exp",
                StaticHost::get("/x").bearer(&eddsa(json!({"exp": -9.9e300}))),
                Some(Reason::Expired),
            ),
            ("u64 exp", StaticHost::get("/x").bearer(&eddsa(json!({"exp": u64::MAX}))), None),
            ("float exp", StaticHost::get("/x").bearer(&eddsa(json!({"exp": (NOW + 30) as f64 + 0.5}))), None),
            ("i64 min nbf", StaticHost::get("/x").bearer(&eddsa(json!({"nbf": i64::MIN}))), None),
        ],
        &mut e,
    );
    let extreme_now = StaticHost::get("/x").bearer(&eddsa(json!({}))).at(i64::MAX);
    assert_eq!(verdict(&mut e, &extreme_now), Some(Reason::Expired));
}

#[test]
fn lifetime_and_typ() {
    let mut e = engine(json!({"max_lifetime_seconds": 3600, "required_typ": "at+jwt"}));
    let k = key(Algorithm::EdDSA);
    let c = claims(json!({"iat": NOW, "exp": NOW + 3600})).to_string();
    let typed = |typ: &str| mint_raw(k, &format!(r#"{{"alg":"EdDSA","kid":"k1","typ":"{typ}"}}"#), &c);
    check(
        &[
            ("at+jwt", StaticHost::get("/x").bearer(&typed("at+jwt")), None),
            ("media type form", StaticHost::get("/x").bearer(&typed("application/AT+JWT")), None),
            ("trailing space", StaticHost::get("/x").bearer(&typed("at+jwt ")), Some(Reason::WrongTyp)),
            ("JWT", StaticHost::get("/x").bearer(&typed("JWT")), Some(Reason::WrongTyp)),
            (
                "absent",
                StaticHost::get("/x").bearer(&mint_raw(k, r#"{"alg":"EdDSA","kid":"k1"}"#, &c)),
                Some(Reason::WrongTyp),
            ),
        ],
        &mut e,
    );
    let long = mint_raw(
        k,
        r#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#,
        &claims(json!({"iat": NOW, "exp": NOW + 3601})).to_string(),
    );
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&long)), Some(Reason::LifetimeTooLong));
}

/// Issue 24 item 6: a JWT explicitly typed as another kind (a Status List
/// Token, a DPoP proof, a Transaction Token), or carrying a Status List Token's
/// `status_list` claim, is never an access token, with or without `required_typ`.
#[test]
fn other_kinds_of_jwt_are_not_access_tokens() {
    let k = key(Algorithm::EdDSA);
    let c = claims(json!({})).to_string();
    let typed = |typ: &str| mint_raw(k, &format!(r#"{{"alg":"EdDSA","kid":"k1","typ":"{typ}"}}"#), &c);
    let list_claims =
        claims(json!({"sub": "https://idp.example/lists/1", "status_list": {"bits": 1, "lst": "eNrbuRgAAhcBXQ"}}));
    let list_untyped = mint_raw(k, r#"{"alg":"EdDSA","kid":"k1"}"#, &list_claims.to_string());
    for config in [json!({}), json!({"required_typ": "at+jwt"})] {
        let mut e = engine(config.clone());
        check(
            &[
                ("statuslist+jwt", StaticHost::get("/x").bearer(&typed("statuslist+jwt")), Some(Reason::WrongTyp)),
                (
                    "application/statuslist+jwt",
                    StaticHost::get("/x").bearer(&typed("application/StatusList+JWT")),
                    Some(Reason::WrongTyp),
                ),
                ("dpop+jwt", StaticHost::get("/x").bearer(&typed("dpop+jwt")), Some(Reason::WrongTyp)),
                (
                    "txntoken+jwt",
                    StaticHost::get("/x").bearer(&typed("txntoken+jwt")),
                    Some(Reason::TxnTokenInAuthorization),
                ),
                ("status_list claim", StaticHost::get("/x").bearer(&list_untyped), Some(Reason::WrongTyp)),
            ],
            &mut e,
        );
    }
    // Without `required_typ`, an ordinary token passes whatever its `typ`.
    let mut e = engine(json!({}));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&typed("JWT"))), None);
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&typed("at+jwt"))), None);
    // Nor can the configuration ask for one of them.
    for typ in ["statuslist+jwt", "application/dpop+jwt", "TXNTOKEN+JWT"] {
        let cfg = json!({"required_typ": typ, "providers": [{"name": "p", "issuer": "https://x.example",
            "jwks": {"keys": [key(Algorithm::EdDSA).public_jwk(Some("k1"))]}}]});
        let err = cjwt_core::config::Config::from_json(cfg.to_string().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("required_typ") && err.contains("not an access token type"), "{typ}: {err}");
    }
}

#[test]
fn constraints_ip() {
    let mut e = engine(json!({}));
    let t = eddsa(json!({"cnst": {"ip": ["127.0.0.2/32", "10.0.0.0/8"]}}));
    check(
        &[
            ("in range", StaticHost::get("/x").bearer(&t).peer("127.0.0.2:5000"), None),
            ("neighbour", StaticHost::get("/x").bearer(&t).peer("127.0.0.3:5000"), Some(Reason::Ip)),
            ("second range", StaticHost::get("/x").bearer(&t).peer("10.255.255.255:1"), None),
            ("mapped v6", StaticHost::get("/x").bearer(&t).peer("[::ffff:10.1.1.1]:1"), None),
            ("v6 loopback", StaticHost::get("/x").bearer(&t).peer("[::1]:1"), Some(Reason::Ip)),
        ],
        &mut e,
    );
    let empty = eddsa(json!({"cnst": {"ip": []}}));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&empty)), Some(Reason::Ip), "empty list allows nothing");
}

#[test]
fn constraints_ip_from_xff_trusts_only_configured_hops() {
    let mut e = engine(json!({"client_ip": {"from": "xff", "trusted_hops": 1}}));
    let t = eddsa(json!({"cnst": {"ip": ["10.0.0.0/8"]}}));
    check(
        &[
            ("last entry", StaticHost::get("/x").bearer(&t).header("x-forwarded-for", "6.6.6.6, 10.0.0.9"), None),
            (
                "spoofed first entry",
                StaticHost::get("/x").bearer(&t).header("x-forwarded-for", "10.0.0.9, 6.6.6.6"),
                Some(Reason::Ip),
            ),
            ("no header", StaticHost::get("/x").bearer(&t), Some(Reason::Ip)),
        ],
        &mut e,
    );
}

#[test]
fn constraints_methods_paths_hosts() {
    let mut e = engine(json!({}));
    let t = eddsa(
        json!({"cnst": {"methods": ["GET", "HEAD"], "paths": ["/v1/orders/**", "/v1/items/*"], "hosts": ["*.example.com"]}}),
    );
    check(
        &[
            ("all hold", StaticHost::get("/v1/orders/7").bearer(&t), None),
            ("query ignored", StaticHost::get("/v1/orders/7?x=/admin").bearer(&t), None),
            ("method", StaticHost::request("POST", "/v1/orders/7").bearer(&t), Some(Reason::Method)),
            ("method case", StaticHost::request("get", "/v1/orders/7").bearer(&t), Some(Reason::Method)),
            ("path", StaticHost::get("/v1/admin").bearer(&t), Some(Reason::Path)),
            ("star one segment", StaticHost::get("/v1/items/a").bearer(&t), None),
            ("star two segments", StaticHost::get("/v1/items/a/b").bearer(&t), Some(Reason::Path)),
            ("dotdot", StaticHost::get("/v1/orders/../admin").bearer(&t), Some(Reason::PathNotNormalized)),
            ("encoded slash", StaticHost::get("/v1/orders%2F..%2Fadmin").bearer(&t), Some(Reason::PathNotNormalized)),
            ("semicolon", StaticHost::get("/v1/orders/..;/admin").bearer(&t), Some(Reason::PathNotNormalized)),
            ("double slash", StaticHost::get("/v1//orders/7").bearer(&t), Some(Reason::PathNotNormalized)),
            (
                "host with port",
                StaticHost::get("/v1/orders/7").bearer(&t).set_header(":authority", "API.example.com:443"),
                None,
            ),
            (
                "host two labels",
                StaticHost::get("/v1/orders/7").bearer(&t).set_header(":authority", "a.b.example.com"),
                Some(Reason::Host),
            ),
            (
                "apex host",
                StaticHost::get("/v1/orders/7").bearer(&t).set_header(":authority", "example.com"),
                Some(Reason::Host),
            ),
        ],
        &mut e,
    );
}

#[test]
fn constraints_region_from_each_source() {
    let t = eddsa(json!({"cnst": {"region": ["eu-west-1"]}}));
    let mut none = engine(json!({}));
    assert_eq!(verdict(&mut none, &StaticHost::get("/x").bearer(&t)), Some(Reason::Region), "no source configured");
    let mut fixed = engine(json!({"region": {"value": "eu-west-1"}}));
    assert_eq!(verdict(&mut fixed, &StaticHost::get("/x").bearer(&t)), None);
    let mut other = engine(json!({"region": {"value": "us-east-1"}}));
    assert_eq!(verdict(&mut other, &StaticHost::get("/x").bearer(&t)), Some(Reason::Region));
    let mut header = engine(json!({"region": {"header": "x-geo-region"}}));
    check(
        &[
            ("header", StaticHost::get("/x").bearer(&t).header("x-geo-region", "eu-west-1"), None),
            (
                "header other",
                StaticHost::get("/x").bearer(&t).header("x-geo-region", "us-east-1"),
                Some(Reason::Region),
            ),
            (
                "header twice",
                StaticHost::get("/x")
                    .bearer(&t)
                    .header("x-geo-region", "eu-west-1")
                    .header("x-geo-region", "eu-west-1"),
                Some(Reason::Region),
            ),
        ],
        &mut header,
    );
    let mut node = engine(json!({"region": {"node_metadata": "REGION"}}));
    check(
        &[
            (
                "node",
                StaticHost::get("/x").bearer(&t).property(&["xds", "node", "metadata", "REGION"], "eu-west-1"),
                None,
            ),
            ("node absent", StaticHost::get("/x").bearer(&t), Some(Reason::Region)),
        ],
        &mut node,
    );
}

#[test]
fn constraints_window_boundaries() {
    let mut e = engine(json!({}));
    // NOW is Monday 10:00 UTC = 11:00 in Berlin (CET).
    let t = eddsa(
        json!({"exp": NOW + 7200, "cnst": {"window": [{"days": ["mon"], "start": "11:00", "end": "11:30", "tz": "Europe/Berlin"}]}}),
    );
    check(
        &[
            ("at start", StaticHost::get("/x").bearer(&t), None),
            ("before start", StaticHost::get("/x").bearer(&t).at(NOW - 1), Some(Reason::Window)),
            ("last second", StaticHost::get("/x").bearer(&t).at(NOW + 1799), None),
            ("at end", StaticHost::get("/x").bearer(&t).at(NOW + 1800), Some(Reason::Window)),
        ],
        &mut e,
    );
}

#[test]
fn constraints_custom() {
    let mut e = engine(
        json!({"custom_constraints": {"tenant": {"header": "x-tenant-id"}, "shard": {"path_segment": 1}, "ver": {"query": "v"}}}),
    );
    let t = eddsa(json!({"cnst": {"tenant": ["acme"], "shard": "eu", "ver": ["2"]}}));
    check(
        &[
            ("all hold", StaticHost::get("/t/eu/x?v=2").bearer(&t).header("x-tenant-id", "acme"), None),
            (
                "header other",
                StaticHost::get("/t/eu/x?v=2").bearer(&t).header("x-tenant-id", "evil"),
                Some(Reason::Custom),
            ),
            ("header absent", StaticHost::get("/t/eu/x?v=2").bearer(&t), Some(Reason::Custom)),
            (
                "segment other",
                StaticHost::get("/t/us/x?v=2").bearer(&t).header("x-tenant-id", "acme"),
                Some(Reason::Custom),
            ),
            (
                "query twice",
                StaticHost::get("/t/eu/x?v=2&v=2").bearer(&t).header("x-tenant-id", "acme"),
                Some(Reason::Custom),
            ),
            ("query absent", StaticHost::get("/t/eu/x").bearer(&t).header("x-tenant-id", "acme"), Some(Reason::Custom)),
        ],
        &mut e,
    );
}

#[test]
fn unknown_constraint_refuses_before_anything_else() {
    let mut e = engine(json!({}));
    let t = eddsa(json!({"cnst": {"geo": ["eu"], "ip": ["10.0.0.0/8"]}}));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t)), Some(Reason::UnknownConstraint));
}

#[test]
fn constraints_are_checked_in_table_order() {
    let mut e = engine(json!({}));
    let t = eddsa(
        json!({"cnst": {"window": [{"start": "00:00", "end": "00:01"}], "methods": ["PUT"], "ip": ["10.0.0.0/8"]}}),
    );
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t)), Some(Reason::Ip));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t).peer("10.0.0.1:1")), Some(Reason::Method));
    assert_eq!(verdict(&mut e, &StaticHost::request("PUT", "/x").bearer(&t).peer("10.0.0.1:1")), Some(Reason::Window));
}

#[test]
fn max_uses_counts_only_allowed_requests() {
    let mut e = engine(json!({}));
    let mut counter = MemoryCounter::default();
    let t = eddsa(json!({"jti": "j1", "cnst": {"max_uses": 2, "methods": ["GET"]}}));
    let post = StaticHost::request("POST", "/x").bearer(&t);
    let get = StaticHost::get("/x").bearer(&t);
    assert_eq!(verdict_with(&mut e, &post, &mut counter), Some(Reason::Method), "a refused request uses nothing");
    assert_eq!(verdict_with(&mut e, &get, &mut counter), None);
    assert_eq!(verdict_with(&mut e, &get, &mut counter), None);
    assert_eq!(verdict_with(&mut e, &get, &mut counter), Some(Reason::MaxUses));
    // Another token with the same (iss, jti) shares the count (malleated copies, re-minted tokens).
    let same_jti = eddsa(json!({"jti": "j1", "sub": "bob", "cnst": {"max_uses": 5}}));
    let mut counter2 = MemoryCounter::default();
    assert_eq!(verdict_with(&mut e, &StaticHost::get("/x").bearer(&same_jti), &mut counter2), None);
}

#[test]
fn rules_first_match_and_auth_modes() {
    let mut e = engine(json!({
        "rules": [
            {"match": {"path": "/healthz", "methods": ["GET"]}, "auth": "none"},
            {"match": {"path": "/public/**"}, "auth": "optional"},
            {"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}},
            {"match": {"path": "/v1/orders/**", "methods": ["POST"]}, "require": {"scopes_all": ["orders:write"], "claims": [{"claim": "tenant", "equals_header": "x-tenant-id"}]}},
            {"match": {"hosts": ["internal.example.com"]}, "require": {"issuers": ["corp"], "claims": [{"claim": "realm_access.roles", "one_of": [["ops"]]}]}}
        ]
    }));
    let plain = eddsa(json!({}));
    let admin = eddsa(json!({"roles": ["admin"]}));
    let writer = eddsa(json!({"scope": "orders:read orders:write", "tenant": "acme"}));
    check(
        &[
            ("health without token", StaticHost::get("/healthz"), None),
            ("health with bad token", StaticHost::get("/healthz").bearer("junk"), None),
            ("health POST needs token", StaticHost::request("POST", "/healthz"), Some(Reason::MissingToken)),
            ("public without token", StaticHost::get("/public/a"), None),
            ("public with bad token", StaticHost::get("/public/a").bearer("junk"), Some(Reason::MalformedToken)),
            ("admin without role", StaticHost::get("/admin/x").bearer(&plain), Some(Reason::Role)),
            ("admin with role", StaticHost::get("/admin/x").bearer(&admin), None),
            (
                "admin abnormal path",
                StaticHost::get("/public/../admin/x").bearer(&plain),
                Some(Reason::PathNotNormalized),
            ),
            (
                "orders write",
                StaticHost::request("POST", "/v1/orders/1").bearer(&writer).header("x-tenant-id", "acme"),
                None,
            ),
            (
                "orders other tenant",
                StaticHost::request("POST", "/v1/orders/1").bearer(&writer).header("x-tenant-id", "evil"),
                Some(Reason::Claim),
            ),
            (
                "orders no scope",
                StaticHost::request("POST", "/v1/orders/1").bearer(&plain).header("x-tenant-id", "acme"),
                Some(Reason::Scope),
            ),
            ("orders GET falls to default", StaticHost::get("/v1/orders/1").bearer(&plain), None),
            ("default requires token", StaticHost::get("/other"), Some(Reason::MissingToken)),
        ],
        &mut e,
    );
}

#[test]
fn require_roles_scopes_claims_issuers() {
    let mut e = engine(json!({
        "claim_names": {"roles": "realm_access.roles"},
        "rules": [
            {"match": {"path": "/all"}, "require": {"roles_all": ["a", "b"], "scopes_any": ["x", "y"]}},
            {"match": {"path": "/eq"}, "require": {"claims": [{"claim": "level", "equals": 3}, {"claim": "team", "present": true}]}}
        ]
    }));
    let kc = eddsa(json!({"realm_access": {"roles": ["a", "b"]}, "scope": ["y"]}));
    let partial = eddsa(json!({"realm_access": {"roles": ["a"]}, "scope": "y"}));
    let case = eddsa(json!({"realm_access": {"roles": ["A", "b"]}, "scope": "y"}));
    let level = eddsa(json!({"level": 3, "team": "t"}));
    let level_str = eddsa(json!({"level": "3", "team": "t"}));
    let no_team = eddsa(json!({"level": 3}));
    check(
        &[
            ("keycloak roles", StaticHost::get("/all").bearer(&kc), None),
            ("missing role", StaticHost::get("/all").bearer(&partial), Some(Reason::Role)),
            ("no case folding", StaticHost::get("/all").bearer(&case), Some(Reason::Role)),
            ("equals and present", StaticHost::get("/eq").bearer(&level), None),
            ("type mismatch", StaticHost::get("/eq").bearer(&level_str), Some(Reason::Claim)),
            ("absent claim", StaticHost::get("/eq").bearer(&no_team), Some(Reason::Claim)),
        ],
        &mut e,
    );
    let mut issuers = engine(json!({"rules": [{"match": {"path": "/x"}, "require": {"issuers": ["corp"]}}]}));
    assert_eq!(verdict(&mut issuers, &StaticHost::get("/x").bearer(&eddsa(json!({})))), None);
}

#[test]
fn require_issuer_refuses_other_provider() {
    let es = key(Algorithm::ES256);
    let cfg = json!({
        "providers": [
            {"name": "corp", "issuer": "https://idp.example.com", "jwks": {"keys": [key(Algorithm::EdDSA).public_jwk(Some("k1"))]}},
            {"name": "partner", "issuer": "https://partner.example", "jwks": {"keys": [es.public_jwk(Some("p1"))]}}
        ],
        "rules": [{"match": {"path": "/corp/**"}, "require": {"issuers": ["corp"]}}]
    });
    let mut e = Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
    let partner = mint(es, Some("p1"), &claims(json!({"iss": "https://partner.example"})));
    assert_eq!(verdict(&mut e, &StaticHost::get("/other").bearer(&partner)), None);
    assert_eq!(verdict(&mut e, &StaticHost::get("/corp/x").bearer(&partner)), Some(Reason::Issuer));
}

#[test]
fn every_algorithm_verifies_with_its_key_only() {
    for alg in Algorithm::ALL {
        let k = key(alg);
        let cfg = json!({"providers": [{"name": "p", "issuer": "https://idp.example.com", "jwks": {"keys": [k.public_jwk(Some("k"))]}}]});
        let mut e = Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
        let good = mint(k, Some("k"), &claims(json!({})));
        assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&good)), None, "{alg:?}");
        let mut bad = good.clone();
        bad.truncate(good.rfind('.').unwrap() + 1);
        bad.push_str(&cjwt_core::encoding::b64::encode(&vec![7u8; k.sign(b"x").len()]));
        assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&bad)), Some(Reason::BadSignature), "{alg:?}");
    }
}

#[test]
fn cache_hits_still_check_time_and_constraints() {
    let mut e = engine(json!({}));
    let t = eddsa(json!({"exp": NOW + 100, "cnst": {"ip": ["127.0.0.1"]}}));
    let mut counter = MemoryCounter::default();
    let first = e.decide_with(
        &StaticHost::get("/x").bearer(&t),
        &InlineOnly,
        &PureRust,
        &mut counter,
        &mut cjwt_core::sender::replay::NoReplayCache,
    );
    assert_eq!(first.cache_hit, Some(false));
    let second = e.decide_with(
        &StaticHost::get("/x").bearer(&t),
        &InlineOnly,
        &PureRust,
        &mut counter,
        &mut cjwt_core::sender::replay::NoReplayCache,
    );
    assert_eq!(second.cache_hit, Some(true));
    assert!(matches!(second.decision, Decision::Allow { .. }));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t).peer("127.0.0.9:1")), Some(Reason::Ip));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t).at(NOW + 160)), Some(Reason::Expired));
}

#[test]
fn cache_stays_bounded() {
    let mut e = engine(json!({"cache": {"max_entries": 16}}));
    for i in 0..100 {
        let t = eddsa(json!({"jti": format!("t{i}")}));
        assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t)), None);
    }
    assert!(e.cached() <= 16, "cache holds {}", e.cached());
}

#[test]
fn denial_carries_a_fingerprint_not_the_token() {
    let mut e = engine(json!({}));
    let t = eddsa(json!({"aud": "x"}));
    match e
        .decide_with(
            &StaticHost::get("/x").bearer(&t),
            &InlineOnly,
            &PureRust,
            &mut MemoryCounter::default(),
            &mut cjwt_core::sender::replay::NoReplayCache,
        )
        .decision
    {
        Decision::Deny(d) => {
            let fp = d.fingerprint.unwrap();
            assert_eq!(fp.len(), 16);
            assert!(!t.contains(&fp));
        }
        other => panic!("{other:?}"),
    }
}

/// `mode: dry_run` is decided by the engine, not by the adapter: every refusal
/// becomes `DryRunDeny` with the same denial (reason, fingerprint, provider,
/// credential), and what is allowed stays allowed.
#[test]
fn dry_run_is_an_outcome_of_the_engine() {
    let rules = json!({"rules": [{"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}}]});
    let mut enforce = engine(rules.clone());
    let mut extra = rules;
    extra["mode"] = json!("dry_run");
    let mut dry = engine(extra);
    let ip = eddsa(json!({"cnst": {"ip": ["10.0.0.0/8"]}}));
    let unknown_kid = mint(key(Algorithm::EdDSA), Some("nope"), &claims(json!({})));
    let cases = [
        ("allowed", StaticHost::get("/x").bearer(&eddsa(json!({}))), None),
        ("missing token", StaticHost::get("/x"), Some(Reason::MissingToken)),
        ("expired", StaticHost::get("/x").bearer(&eddsa(json!({"exp": NOW - 3600}))), Some(Reason::Expired)),
        ("unknown key", StaticHost::get("/x").bearer(&unknown_kid), Some(Reason::UnknownKey)),
        ("rule", StaticHost::get("/admin/x").bearer(&eddsa(json!({}))), Some(Reason::Role)),
        ("path", StaticHost::get("/admin/../x").bearer(&eddsa(json!({}))), Some(Reason::PathNotNormalized)),
        ("constraint", StaticHost::get("/x").bearer(&ip), Some(Reason::Ip)),
        ("constraint met", StaticHost::get("/x").bearer(&ip).peer("10.1.2.3:4"), None),
    ];
    for (what, host, want) in cases {
        let mut counter = MemoryCounter::default();
        let enforced = enforce
            .decide_with(&host, &InlineOnly, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache)
            .decision;
        let dry_run = dry
            .decide_with(&host, &InlineOnly, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache)
            .decision;
        match (enforced, dry_run, want) {
            (Decision::Allow { .. }, Decision::Allow { .. }, None) => {}
            (Decision::Deny(e), Decision::DryRunDeny(d), Some(reason)) => {
                assert_eq!(e.reason, reason, "{what}");
                assert_eq!(e, d, "{what}: the same denial in both modes");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// A dry-run refusal that only waits for keys still names the provider, so the
/// adapter fetches the keys (and decides again) before forwarding.
#[test]
fn dry_run_refusals_for_missing_keys_name_the_provider() {
    let cfg = json!({"mode": "dry_run", "providers": [{"name": "idp", "issuer": "https://idp.example.com",
        "remote_jwks": {"cluster": "idp", "path": "/jwks.json"}}]});
    let mut e = Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
    let host = StaticHost::get("/x").bearer(&eddsa(json!({})));
    match cjwt_core::testing::decide_inline(&mut e, &host).decision {
        Decision::DryRunDeny(d) => {
            assert_eq!((d.reason, d.provider), (Reason::KeysUnavailable, Some(0)));
            assert!(d.credential.is_some() && d.fingerprint.is_some());
        }
        other => panic!("{other:?}"),
    }
}

/// A dry-run refusal counts no use: `max_uses` is checked last in both modes.
#[test]
fn dry_run_refusals_use_nothing() {
    let mut e = engine(json!({"mode": "dry_run"}));
    let t = eddsa(json!({"jti": "once", "cnst": {"methods": ["GET"], "max_uses": 1}}));
    let mut counter = MemoryCounter::default();
    let post = StaticHost::request("POST", "/x").bearer(&t);
    assert!(matches!(
        e.decide_with(&post, &InlineOnly, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache)
            .decision,
        Decision::DryRunDeny(_)
    ));
    let get = StaticHost::get("/x").bearer(&t);
    assert!(matches!(
        e.decide_with(&get, &InlineOnly, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache)
            .decision,
        Decision::Allow { .. }
    ));
    match e
        .decide_with(&get, &InlineOnly, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache)
        .decision
    {
        Decision::DryRunDeny(d) => assert_eq!(d.reason, Reason::MaxUses),
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_unavailable_when_a_remote_only_provider_has_no_keys_yet() {
    let cfg = json!({"providers": [{"name": "idp", "issuer": "https://idp.example.com",
        "remote_jwks": {"cluster": "idp", "path": "/jwks.json"}}]});
    let mut e = Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&eddsa(json!({})))), Some(Reason::KeysUnavailable));
}

/// One request per reason code: proves every code of SPEC §4 is reachable and
/// that no two cases collapse into one code.
#[test]
fn every_reason_code_is_reachable() {
    use std::collections::HashSet;
    let mut e = engine(json!({
        "max_lifetime_seconds": 3600,
        "region": {"value": "eu-west-1"},
        "custom_constraints": {"tenant": {"header": "x-tenant-id"}},
        "rules": [
            {"match": {"path": "/typ"}, "require": {}},
            {"match": {"path": "/role"}, "require": {"roles_any": ["admin"]}},
            {"match": {"path": "/scope"}, "require": {"scopes_any": ["w"]}},
            {"match": {"path": "/claim"}, "require": {"claims": [{"claim": "team", "present": true}]}},
            {"match": {"path": "/issuer"}, "require": {"issuers": ["corp"]}}
        ]
    }));
    let k = key(Algorithm::EdDSA);
    let c = claims(json!({})).to_string();
    let t = |extra: Value| eddsa(extra);
    let good = t(json!({}));
    let mut bad_sig = good.clone();
    bad_sig.truncate(good.rfind('.').unwrap() + 1);
    bad_sig.push_str(&cjwt_core::encoding::b64::encode(&[0u8; 64]));
    let mut counter = MemoryCounter::default();
    let once = t(json!({"jti": "once", "cnst": {"max_uses": 1}}));
    assert_eq!(verdict_with(&mut e, &StaticHost::get("/x").bearer(&once), &mut counter), None);
    let mut seen = HashSet::new();
    let mut probe = |host: StaticHost, counter: &mut MemoryCounter| {
        if let Some(r) = verdict_with(&mut e, &host, counter) {
            seen.insert(r);
        }
    };
    probe(StaticHost::get("/x"), &mut counter);
    probe(StaticHost::get("/x").bearer(&good).bearer(&good), &mut counter);
    probe(StaticHost::get("/x").bearer(&"a".repeat(9000)), &mut counter);
    probe(StaticHost::get("/x").bearer("a.b"), &mut counter);
    probe(StaticHost::get("/x").bearer(&mint_raw(k, r#"{"alg":"none"}"#, &c)), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"iss": "https://other"}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&mint(k, Some("zz"), &claims(json!({})))), &mut counter);
    probe(StaticHost::get("/x").bearer(&bad_sig), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"exp": NOW - 3600}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"nbf": NOW + 3600}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"exp": null}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"exp": NOW + 7200}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"aud": "nope"}))), &mut counter);
    probe(
        StaticHost::get("/x").bearer(&mint_raw(k, r#"{"alg":"EdDSA","kid":"k1","x5u":"https://x"}"#, &c)),
        &mut counter,
    );
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"ip": "1.2.3"}}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"geo": "eu"}}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"ip": ["10.0.0.0/8"]}}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"methods": ["PUT"]}}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"paths": ["/y"]}}))), &mut counter);
    probe(StaticHost::get("/a/../x").bearer(&t(json!({"cnst": {"paths": ["/x"]}}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"hosts": ["other.example"]}}))), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"region": ["us-east-1"]}}))), &mut counter);
    probe(
        StaticHost::get("/x").bearer(&t(json!({"cnst": {"window": [{"start": "00:00", "end": "00:01"}]}}))),
        &mut counter,
    );
    probe(StaticHost::get("/x").bearer(&once), &mut counter);
    probe(StaticHost::get("/x").bearer(&t(json!({"cnst": {"tenant": ["acme"]}}))), &mut counter);
    // SPEC §15: an MCP agent token, and the MCP filter's parse as a filter state property.
    let agent = t(json!({"cnst": {"mcp": {"tools": ["get_order"], "args": {"get_order": {"customer_id": "42"}}}}}));
    let parsed = |body: &str| {
        StaticHost::request("POST", "/mcp")
            .property(&cjwt_core::request::mcp::PROPERTY, body)
            .property_bytes(&cjwt_core::request::mcp::IS_MCP_REQUEST, [1u8])
    };
    probe(StaticHost::request("POST", "/mcp").bearer(&agent), &mut counter);
    probe(parsed(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read"}"#).bearer(&agent), &mut counter);
    probe(
        parsed(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#).bearer(&agent),
        &mut counter,
    );
    probe(
        parsed(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","arguments":{"customer_id":"7"}}}"#)
            .bearer(&agent),
        &mut counter,
    );
    probe(StaticHost::get("/role").bearer(&good), &mut counter);
    probe(StaticHost::get("/scope").bearer(&good), &mut counter);
    probe(StaticHost::get("/claim").bearer(&good), &mut counter);
    let mut typed = engine(json!({"required_typ": "at+jwt"}));
    seen.insert(verdict(&mut typed, &StaticHost::get("/x").bearer(&good)).unwrap());
    let cfg = json!({"providers": [
        {"name": "corp", "issuer": "https://idp.example.com", "jwks": {"keys": [k.public_jwk(Some("k1"))]}},
        {"name": "remote", "issuer": "https://remote.example", "remote_jwks": {"cluster": "idp", "path": "/jwks"}}],
        "rules": [{"match": {"path": "/issuer"}, "require": {"issuers": ["remote"]}}]});
    let mut multi = Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
    seen.insert(verdict(&mut multi, &StaticHost::get("/issuer").bearer(&good)).unwrap());
    seen.insert(
        verdict(&mut multi, &StaticHost::get("/x").bearer(&t(json!({"iss": "https://remote.example"})))).unwrap(),
    );
    // usage_unavailable: a mesh-wide store that did not answer.
    let mut meshed = engine(json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd"}}}));
    let waiting = meshed.decide_with(
        &StaticHost::get("/x").bearer(&once),
        &InlineOnly,
        &PureRust,
        &mut counter,
        &mut cjwt_core::sender::replay::NoReplayCache,
    );
    let settled = cjwt_core::engine::settle(meshed.config().mode(), waiting, &UseAnswer::Unavailable("timeout".into()));
    if let Decision::Deny(d) = settled.decision {
        seen.insert(d.reason);
    }
    // SPEC §11: a deny-listed jti; a status list with entries 0: 1 (revoked), 1: 2 (suspended);
    // a list not configured; a configured list never fetched.
    let uri = "https://idp.example.com/statuslists/1";
    let mut revoking = engine(json!({
        "revocation": {"jti": [{"iss": "https://idp.example.com", "jti": "leaked"}]},
        "status_lists": [{"uri": uri, "provider": "corp", "cluster": "idp", "path": "/sl"},
                         {"uri": "https://idp.example.com/statuslists/2", "provider": "corp", "cluster": "idp", "path": "/sl2"}]
    }));
    let mut store = cjwt_core::jwks::store::Fetched::new(1);
    let list = cjwt_core::revocation::status_list::StatusList::new(2, vec![0b1001], NOW + 60).unwrap();
    store.set_status_list(0, list).unwrap();
    let status = |idx: u64, uri: &str| t(json!({"status": {"status_list": {"idx": idx, "uri": uri}}}));
    for token in [
        t(json!({"jti": "leaked"})),
        status(1, uri),
        status(0, "https://elsewhere/1"),
        status(0, "https://idp.example.com/statuslists/2"),
    ] {
        let host = StaticHost::get("/x").bearer(&token);
        if let Decision::Deny(d) = revoking
            .decide_with(&host, &store, &PureRust, &mut counter, &mut cjwt_core::sender::replay::NoReplayCache)
            .decision
        {
            seen.insert(d.reason);
        }
    }
    sender_reasons(&mut seen);
    txn_reasons(&mut seen);
    chain_reasons(&mut seen);
    let missing: Vec<&str> = Reason::ALL.iter().filter(|r| !seen.contains(r)).map(|r| r.code()).collect();
    assert!(missing.is_empty(), "unreached reason codes: {missing:?}");
}

/// The reasons of SPEC §16, one request each (tests/chain.rs has the details).
fn chain_reasons(seen: &mut std::collections::HashSet<Reason>) {
    use cjwt_core::chain::mint::{attenuate, split, LinkSpec};
    use cjwt_core::mint::{dpop_proof, jkt, mint_raw, SigningKey};
    let holder = |n: u8| SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[n; 32]).unwrap());
    let root = |cnst: Value| eddsa(json!({"jti": "r", "cnf": {"jkt": jkt(&holder(1)).unwrap()}, "cnst": cnst}));
    let spec = |cnst: Value, exp: i64| LinkSpec {
        jti: "l".into(),
        iat: NOW,
        exp,
        constraints: Some(cnst),
        next_jkt: jkt(&holder(2)).unwrap(),
    };
    let derive = |r: &str, cnst: Value| attenuate(&holder(1), r, &spec(cnst, NOW + 60), "cnst", &[]).unwrap();
    let url = "https://api.example.com/x";
    let send = |e: &mut Engine, credential: &str, chain: Option<&str>| {
        let (r, links) = split(credential);
        let proof = dpop_proof(&holder(2), "GET", url, Some(r), NOW, "p", None).unwrap();
        let host = StaticHost::get("/x")
            .header(":scheme", "https")
            .header("authorization", &format!("DPoP {r}"))
            .header("dpop", &proof)
            .header("cjwt-chain", chain.or(links).unwrap());
        let replay = cjwt_core::sender::replay::ProcessReplay::new();
        match e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay).decision {
            Decision::Allow { .. } => None,
            Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
        }
    };
    let mut e = engine(json!({"sender_constraints": {"dpop": {}}, "attenuation": {"max_depth": 1, "max_bytes": 2048}}));
    let r = root(json!({"methods": ["GET"], "max_uses": 5}));
    let good = derive(&r, json!({}));
    let link = split(&good).1.unwrap().to_string();
    let flipped = {
        let mut b = link.clone().into_bytes();
        let i = b.len() - 10;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let h1 = holder(1);
    let header = json!({"typ": "cjwt-link+jwt", "alg": "ES256", "jwk": h1.public_jwk(None)});
    let claims = |extra: Value| {
        let mut c: Value = serde_json::from_slice(
            &cjwt_core::encoding::b64::decode(link.split('.').nth(1).unwrap().as_bytes()).unwrap(),
        )
        .unwrap();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c.to_string()
    };
    let stranger = holder(9);
    let foreign = json!({"typ": "cjwt-link+jwt", "alg": "ES256", "jwk": stranger.public_jwk(None)});
    for chain in [
        "x".to_string(),                                                                    // chain_malformed
        format!("{link}~{}", "A".repeat(2048)),                                             // chain_size
        format!("{link}~{link}"),                                                           // chain_depth
        mint_raw(&stranger, &foreign.to_string(), &claims(json!({}))),                      // chain_key
        flipped,                                                                            // chain_signature
        mint_raw(&h1, &header.to_string(), &claims(json!({"par_hash": "AAAA"}))),           // chain_parent
        mint_raw(&h1, &header.to_string(), &claims(json!({"exp": NOW - 120}))),             // chain_expired
        mint_raw(&h1, &header.to_string(), &claims(json!({"cnst": {"methods": ["PUT"]}}))), // chain_widens
    ] {
        if let Some(r) = send(&mut e, &good, Some(&chain)) {
            seen.insert(r);
        }
    }
}

/// The reasons of SPEC §14, one request each (tests/txn.rs has the details).
fn txn_reasons(seen: &mut std::collections::HashSet<Reason>) {
    let gw = key(Algorithm::ES256);
    let dir = std::env::temp_dir().join(format!("cjwt-decide-txn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("gw.pem");
    std::fs::write(&pem, gw.to_pem().unwrap()).unwrap();
    let mut sidecar = engine(json!({
        "providers": [{"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                       "jwks": {"keys": [gw.public_jwk(Some("gw1"))]}}],
        "default_rule": {"auth": "txn_token", "require": {"req_wl": ["gateway.mesh.example"]}}
    }));
    let txn = |extra: Value| txn_token(gw, "gw1", &txn_claims(NOW, extra));
    for host in [
        StaticHost::get("/x"),
        StaticHost::get("/x").bearer(&txn(json!({}))),
        StaticHost::get("/x").header("txn-token", &txn(json!({"aud": "other.example"}))),
        StaticHost::get("/x").header("txn-token", &txn(json!({"txn": null}))),
        StaticHost::get("/x").header("txn-token", &txn(json!({"req_wl": "other"}))),
    ] {
        if let Some(r) = verdict(&mut sidecar, &host) {
            seen.insert(r);
        }
    }
    // `require.caller`: no caller identity, then another workload's.
    let mut bound = engine(json!({
        "providers": [{"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                       "jwks": {"keys": [gw.public_jwk(Some("gw1"))]}}],
        "default_rule": {"auth": "txn_token", "require": {"caller": {"from": "peer"}}}
    }));
    let at = StaticHost::get("/x").header("txn-token", &txn(json!({})));
    for host in [at.clone(), at.property(&["connection", "uri_san_peer_certificate"], "spiffe://elsewhere")] {
        if let Some(r) = verdict(&mut bound, &host) {
            seen.insert(r);
        }
    }
    // txn_issue_failed: a signer that fails cannot be made from a valid key; the
    // reason is reached by a rule without a scope in a configuration built by hand.
    let cfg = Config::from_json(
        config_json(json!({"transaction_tokens": {"issue": {"trust_domain": TRUST_DOMAIN, "workload": "gw",
            "scope": "s", "key": {"file": pem.to_string_lossy()}}}}))
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let cfg = cjwt_core::testing::without_txn_scope(cfg);
    if let Some(r) = verdict(&mut Engine::new(cfg), &StaticHost::get("/x").bearer(&eddsa(json!({})))) {
        seen.insert(r);
    }
    // Exchanged issuing: the service does not answer, or answers garbage
    // (tests/txn_exchange.rs has the details).
    use cjwt_core::lifecycle::request::{Env, RequestFlow, Step};
    let mut gateway = engine(json!({
        "providers": [{"name": "corp", "issuer": "https://idp.example.com", "jwks": {"keys": [key(Algorithm::EdDSA).public_jwk(Some("k1"))]}},
                      {"name": "tts", "kind": "txn_token", "trust_domain": TRUST_DOMAIN,
                       "jwks": {"keys": [gw.public_jwk(Some("gw1"))]}}],
        "transaction_tokens": {"issue": {"trust_domain": TRUST_DOMAIN, "workload": "gw", "scope": "s",
                                         "exchange": {"cluster": "tts"}}}
    }));
    let host = StaticHost::get("/x").bearer(&eddsa(json!({})));
    for answer in [None, Some("garbage")] {
        let mut flow = RequestFlow::new();
        let mut counter = cjwt_core::usage::MemoryCounter::default();
        let mut replay = cjwt_core::sender::replay::NoReplayCache;
        let env = Env { host: &host, keys: &InlineOnly, crypto: &PureRust, counter: &mut counter, replay: &mut replay };
        assert!(matches!(flow.start(&mut gateway, env, 0), Step::AwaitStore(_)));
        let step = match answer {
            None => flow.on_store_failure(&gateway, &host, "timeout"),
            Some(body) => {
                let env = Env {
                    host: &host,
                    keys: &InlineOnly,
                    crypto: &PureRust,
                    counter: &mut counter,
                    replay: &mut replay,
                };
                flow.on_answer(&gateway, env, Some("200"), body.as_bytes(), body.len(), 0)
            }
        };
        let Step::Act(plan) = step else { panic!("expected a plan") };
        for c in plan.counters {
            if let cjwt_core::outcome::metrics::Counter::DeniedBy(r) = c {
                seen.insert(r);
            }
        }
    }
}

/// The reasons of SPEC §10, one request each (tests/sender.rs has the details).
fn sender_reasons(seen: &mut std::collections::HashSet<Reason>) {
    use cjwt_core::encoding::b64;
    use cjwt_core::sender::replay::ProcessReplay;
    use p256::ecdsa::signature::Signer;
    use sha2::Digest;
    let holder = p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
    let point = holder.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64::encode(point.x().unwrap()), "y": b64::encode(point.y().unwrap())});
    let jkt = cjwt_core::sender::dpop::thumbprint(jwk.as_object().unwrap()).unwrap();
    let proof = |token: &str, jti: &str| {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let ath = b64::encode(&sha2::Sha256::digest(token.as_bytes()));
        let c = json!({"htm": "GET", "htu": "https://api.example.com/x", "iat": NOW, "jti": jti, "ath": ath});
        let input = format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(c.to_string().as_bytes()));
        let sig: p256::ecdsa::Signature = holder.sign(input.as_bytes());
        format!("{input}.{}", b64::encode(&sig.to_bytes()))
    };
    let replay = ProcessReplay::new();
    let mut probe = |e: &mut Engine, host: StaticHost| {
        let outcome = e.decide_with(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default(), &mut &replay);
        if let Decision::Deny(d) = outcome.decision {
            seen.insert(d.reason);
        }
    };
    let secret = b64::encode(&[1u8; 32]);
    let mut dpop = engine(json!({"sender_constraints": {"dpop": {}, "mtls": {"from": "peer"}}}));
    let mut nonced = engine(json!({"sender_constraints": {"dpop": {"nonce": {"secret": secret}}}}));
    let bound = eddsa(json!({"cnf": {"jkt": jkt}}));
    let elsewhere = eddsa(json!({"cnf": {"jkt": "AAAA"}}));
    let plain = eddsa(json!({}));
    let x5t = eddsa(json!({"cnf": {"x5t#S256": b64::encode(&[7u8; 32])}}));
    let req = |scheme: &str, token: &str| {
        StaticHost::get("/x").header(":scheme", "https").header("authorization", &format!("{scheme} {token}"))
    };
    let p = proof(&bound, "1");
    probe(&mut dpop, req("DPoP", &bound).header("dpop", &p));
    probe(&mut dpop, req("DPoP", &bound).header("dpop", &p)); // dpop_replay
    probe(&mut dpop, req("Bearer", &bound)); // dpop_required
    probe(&mut dpop, req("DPoP", &plain)); // unexpected_dpop
    probe(&mut dpop, req("DPoP", &bound)); // invalid_dpop_proof
    probe(&mut dpop, req("DPoP", &elsewhere).header("dpop", &proof(&elsewhere, "2"))); // dpop_key_mismatch
    probe(&mut nonced, req("DPoP", &bound).header("dpop", &proof(&bound, "3"))); // use_dpop_nonce
    probe(&mut dpop, req("Bearer", &x5t)); // certificate_required
    let digest = ["connection", "sha256_peer_certificate_digest"];
    probe(&mut dpop, req("Bearer", &x5t).property(&digest, &"ab".repeat(32))); // certificate_mismatch
    probe(&mut dpop, req("Bearer", &eddsa(json!({"cnf": {"jwk": {}}})))); // unsupported_binding
    let mut xfcc = engine(json!({"sender_constraints": {"mtls": {"from": "xfcc", "trusted_hops": 1}}}));
    probe(&mut xfcc, req("Bearer", &x5t).header("x-forwarded-client-cert", "Hash=ab;By=\""));
    // certificate_header_malformed
}

#[test]
fn a_standard_location_token_next_to_the_configured_one_is_multiple_tokens() {
    // Only the Authorization header is configured; ?access_token= (RFC 6750 §2.3) still counts.
    let mut e = engine(json!({}));
    let t = eddsa(json!({}));
    assert_eq!(
        verdict(&mut e, &StaticHost::get(&format!("/x?access_token={t}")).bearer(&t)),
        Some(Reason::MultipleTokens)
    );
    assert_eq!(verdict(&mut e, &StaticHost::get("/x?access_token=forged").bearer(&t)), Some(Reason::MultipleTokens));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x?access_token=forged")), Some(Reason::MissingToken));
    // A cookie-configured filter also refuses a bearer header next to the cookie.
    let mut c = engine(json!({"token_from": [{"cookie": "jwt"}]}));
    let both = StaticHost::get("/x").header("cookie", &format!("jwt={t}")).bearer("forged.a.b");
    assert_eq!(verdict(&mut c, &both), Some(Reason::MultipleTokens));
}

#[test]
fn kid_injection_strings_are_only_unknown_keys() {
    let mut e = engine(json!({}));
    let k = key(Algorithm::EdDSA);
    for kid in ["../../../../dev/null", "/dev/null", "x' UNION SELECT '1';--", "|sleep 10", "", &"k".repeat(10_000)] {
        let t = mint(k, Some(kid), &claims(json!({})));
        let want = if t.len() > 8192 { Reason::TokenTooLarge } else { Reason::UnknownKey };
        assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t)), Some(want), "{kid:.20}");
    }
    let numeric = mint_raw(k, r#"{"alg":"EdDSA","kid":7}"#, &claims(json!({})).to_string());
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&numeric)), Some(Reason::MalformedToken));
}

#[test]
fn issuer_match_is_exact() {
    let mut e = engine(json!({}));
    for iss in
        ["https://idp.example.com/", "https://IDP.example.com", "https://idp.example.com ", "https://idp.example"]
    {
        assert_eq!(
            verdict(&mut e, &StaticHost::get("/x").bearer(&eddsa(json!({"iss": iss})))),
            Some(Reason::UnknownIssuer),
            "{iss}"
        );
    }
    assert_eq!(
        verdict(&mut e, &StaticHost::get("/x").bearer(&eddsa(json!({"iss": ["https://idp.example.com"]})))),
        Some(Reason::MalformedToken)
    );
}

#[test]
fn without_kid_at_most_four_keys_are_tried() {
    let keys: Vec<cjwt_core::mint::SigningKey> =
        (0..5).map(|_| cjwt_core::mint::SigningKey::generate(Algorithm::EdDSA).unwrap()).collect();
    let jwks: Vec<Value> = keys.iter().enumerate().map(|(i, k)| k.public_jwk(Some(&format!("k{i}")))).collect();
    let cfg = json!({"providers": [{"name": "p", "issuer": "https://idp.example.com", "jwks": {"keys": jwks}}]});
    let mut e = Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
    let by_fourth = mint(&keys[3], None, &claims(json!({})));
    let by_fifth = mint(&keys[4], None, &claims(json!({})));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&by_fourth)), None);
    assert_eq!(
        verdict(&mut e, &StaticHost::get("/x").bearer(&by_fifth)),
        Some(Reason::BadSignature),
        "the fifth key is never tried"
    );
    let with_kid = mint(&keys[4], Some("k4"), &claims(json!({})));
    assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&with_kid)), None);
}

/// SEC-F09: a subject outside the configured SPIFFE prefix is refused (`prefix` claim check).
#[test]
fn a_subject_outside_a_spiffe_prefix_is_refused() {
    let mut e = engine(json!({"default_rule": {"require": {"claims": [
        {"claim": "sub", "prefix": "spiffe://corp.example/ns/payments/"}]}}}));
    let ok = eddsa(json!({"sub": "spiffe://corp.example/ns/payments/sa/api"}));
    let other_ns = eddsa(json!({"sub": "spiffe://corp.example/ns/paymentsX/sa/api"}));
    let lookalike = eddsa(json!({"sub": "spiffe://corp.example.evil/ns/payments/sa/api"}));
    let not_string = eddsa(json!({"sub": ["spiffe://corp.example/ns/payments/sa/api"]}));
    check(
        &[
            ("in the namespace", StaticHost::get("/x").bearer(&ok), None),
            ("a namespace sharing the prefix text", StaticHost::get("/x").bearer(&other_ns), Some(Reason::Claim)),
            ("a look-alike trust domain", StaticHost::get("/x").bearer(&lookalike), Some(Reason::Claim)),
            ("a non-string sub", StaticHost::get("/x").bearer(&not_string), Some(Reason::Claim)),
        ],
        &mut e,
    );
    let empty = config_json(json!({"default_rule": {"require": {"claims": [{"claim": "sub", "prefix": ""}]}}}));
    let error = Config::from_json(empty.to_string().as_bytes()).unwrap_err().to_string();
    assert!(error.contains("default_rule.require.claims[0]"), "{error}");
}

/// SEC-F10: a token issued for one service, or one tenant, is refused by another;
/// a token re-sent past its usage limit is refused.
#[test]
fn tokens_do_not_cross_services_or_tenants_and_replays_stop_at_the_limit() {
    let orders = config_json(
        json!({"default_rule": {"require": {"claims": [{"claim": "tenant", "equals_header": "x-tenant-id"}]}}}),
    );
    let mut billing = orders.clone();
    billing["providers"][0]["audiences"] = json!(["billing-api"]);
    let mut orders = Engine::new(Config::from_json(orders.to_string().as_bytes()).unwrap());
    let mut billing = Engine::new(Config::from_json(billing.to_string().as_bytes()).unwrap());
    let for_orders = eddsa(json!({"tenant": "acme", "jti": "t-1", "cnst": {"max_uses": 2}}));
    let acme = || StaticHost::get("/x").bearer(&for_orders).header("x-tenant-id", "acme");
    let mut counter = MemoryCounter::default();
    assert_eq!(verdict_with(&mut orders, &acme(), &mut counter), None);
    assert_eq!(verdict(&mut billing, &acme()), Some(Reason::WrongAudience), "another service's audience");
    let other_tenant = StaticHost::get("/x").bearer(&for_orders).header("x-tenant-id", "globex");
    assert_eq!(verdict(&mut orders, &other_tenant), Some(Reason::Claim), "another tenant");
    assert_eq!(verdict_with(&mut orders, &acme(), &mut counter), None);
    assert_eq!(verdict_with(&mut orders, &acme(), &mut counter), Some(Reason::MaxUses), "the replay past the limit");
}

/// SEC-B09: numbers at the edges, signed as written (serde_json could not emit them).
#[test]
fn number_edges_in_signed_payloads_are_refused_or_inert() {
    let k = key(Algorithm::EdDSA);
    let header = r#"{"alg":"EdDSA","kid":"k1"}"#;
    let base = r#""iss":"https://idp.example.com","aud":"orders-api","sub":"alice""#;
    let exp = NOW + 600;
    let token = |rest: &str| mint_raw(k, header, &format!("{{{base},{rest}}}"));
    let mut e = engine(json!({"default_rule": {"require": {"claims": [{"claim": "level", "equals": 3}]}}}));
    let allowed = token(&format!(r#""exp":{exp},"level":3"#));
    let cases = [
        ("a valid token (control)", allowed, None),
        ("exp 1e400 (overflows f64)", token(r#""exp":1e400,"level":3"#), Some(Reason::MalformedToken)),
        ("a 400-digit exp", token(&format!(r#""exp":{},"level":3"#, "9".repeat(400))), Some(Reason::MalformedToken)),
        ("exp -0 is the epoch", token(r#""exp":-0,"level":3"#), Some(Reason::Expired)),
        (
            "a 30-digit claim is not the number 3",
            token(&format!(r#""exp":{exp},"level":123456789012345678901234567890"#)),
            Some(Reason::Claim),
        ),
        (
            "3.0 is not the integer 3 (exact comparison)",
            token(&format!(r#""exp":{exp},"level":3.0"#)),
            Some(Reason::Claim),
        ),
        (
            "a 400-digit custom number",
            token(&format!(r#""exp":{exp},"level":3,"big":{}"#, "1".repeat(400))),
            Some(Reason::MalformedToken),
        ),
    ];
    for (name, t, want) in cases {
        assert_eq!(verdict(&mut e, &StaticHost::get("/x").bearer(&t)), want, "{name}");
    }
}
