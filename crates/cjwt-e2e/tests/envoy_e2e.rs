//! End to end through a real Envoy (V8) loading the built cjwt.wasm: statuses,
//! challenges, bodies, what the upstream saw, and the counters in /stats.
//! Requires `make build` and the project virtualenv (`make envoy`); `make test` does both.

// Some tables are tuples on purpose: one line per case.
#![allow(clippy::type_complexity)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::{mint, mint_raw};
use cjwt_core::reason::Reason;
use cjwt_harness::envoy::{cluster, Build, Envoy, Options};
use cjwt_harness::*;
use serde_json::{json, Value};

fn token(extra: Value) -> String {
    mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra))
}

fn start(extra: Value) -> Envoy {
    Envoy::start(&config_json(extra), Options::default())
}

#[test]
fn allowed_request_reaches_upstream_with_verified_claims_only() {
    let envoy = start(
        json!({"forward": {"claims_to_headers": [{"claim": "sub", "header": "x-cjwt-sub"}, {"claim": "roles", "header": "x-cjwt-roles"}]}}),
    );
    let t = token(json!({"roles": ["reader"]}));
    let auth = bearer(&t);
    let r = envoy.get(
        "/v1/orders/7",
        &[("authorization", auth.as_str()), ("x-cjwt-sub", "admin"), ("x-cjwt-sub", "root"), ("x-cjwt-roles", "admin")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = envoy.upstream.last().unwrap();
    assert_eq!(seen.path, "/v1/orders/7");
    assert_eq!(seen.header("x-cjwt-sub"), Some("alice"));
    assert_eq!(seen.header_count("x-cjwt-sub"), 1, "client copies removed, verified value set once");
    assert_eq!(seen.header("x-cjwt-roles"), Some(r#"["reader"]"#), "non-string claims forwarded as JSON");
    assert_eq!(seen.header("authorization"), Some(auth.as_str()));
    // A token without the claim: the client's copy must not survive either.
    let no_roles = bearer(&token(json!({})));
    assert_eq!(envoy.get("/x", &[("authorization", no_roles.as_str()), ("x-cjwt-roles", "admin")]).status, 200);
    assert_eq!(envoy.upstream.last().unwrap().header("x-cjwt-roles"), None);
    assert_eq!(envoy.stat("cjwt.allowed"), 2);
    assert_eq!(envoy.stat("cjwt.cache.miss"), 2);
    assert_eq!(envoy.get("/v1/orders/8", &[("authorization", auth.as_str())]).status, 200);
    assert_eq!(envoy.stat("cjwt.cache.hit"), 1, "the repeated token is served from the cache");
}

#[test]
fn missing_token_is_401_with_bare_challenge_and_never_forwarded() {
    let envoy = start(json!({}));
    let r = envoy.get("/x", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="cjwt""#));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"error": "invalid_token", "reason": "missing_token"}));
    assert_eq!(envoy.upstream.count(), 0);
    assert_eq!(envoy.stat("cjwt.denied"), 1);
    assert_eq!(envoy.stat("cjwt.denied.missing_token"), 1);
}

/// Sends every case of `table` (cjwt_core::testing::cases: the table the core
/// runs too) through `envoy` and checks what the class implies: the status, the
/// challenge (or `retry-after` for a 503), the reason, that no refused request
/// reached the upstream and that every allowed one did, and `cjwt.denied.<reason>`
/// counted once per refused case.
fn run_table(envoy: &Envoy, table: &cases::Table) {
    let mut forwarded = 0;
    for case in &table.cases {
        let before = envoy.upstream.count();
        let r = envoy.request(case.source, case.method, case.path, &case.header_refs());
        let name = case.name;
        match case.want {
            None => {
                assert_eq!(r.status, 200, "{name}: {}", r.body);
                assert_eq!(envoy.upstream.count(), before + 1, "{name}: allowed but not forwarded");
                forwarded += 1;
            }
            Some(reason) => {
                assert_eq!(u32::from(r.status), reason.status(), "{name}: {}", r.body);
                assert_eq!(r.reason().as_deref(), Some(reason.code()), "{name}");
                let challenge = match (reason.status(), reason.oauth_error()) {
                    (503, _) => None,
                    (_, None) => Some(r#"Bearer realm="cjwt""#.to_string()),
                    (_, Some(error)) => {
                        Some(format!(r#"Bearer realm="cjwt", error="{error}", error_description="{}""#, reason.code()))
                    }
                };
                assert_eq!(r.header("www-authenticate"), challenge.as_deref(), "{name}");
                if reason.status() == 503 {
                    assert_eq!(r.header("retry-after"), Some("1"), "{name}: a 503 says when to retry");
                }
                assert_eq!(envoy.upstream.count(), before, "{name}: refused request reached the upstream");
            }
        }
    }
    assert_eq!(envoy.upstream.count(), forwarded, "every allowed case, and only those, reached the upstream");
    let mut refused = 0;
    for reason in Reason::ALL {
        let n = table.count(reason);
        refused += n;
        assert_eq!(envoy.stat(&format!("cjwt.denied.{}", reason.code())), n as u64, "cjwt.denied.{reason}");
    }
    assert_eq!(envoy.stat("cjwt.denied"), refused as u64);
    assert_eq!(envoy.stat("cjwt.allowed"), forwarded as u64);
}

#[test]
fn every_401_class_end_to_end() {
    let table = cases::untrusted(now());
    let envoy = Envoy::start(&table.config, Options::default());
    run_table(&envoy, &table);
    // The VM survived every refusal.
    assert_eq!(envoy.get("/x", &[("authorization", &bearer(&token(json!({}))))]).status, 200);
}

#[test]
fn every_403_class_end_to_end() {
    let table = cases::forbidden(now(), cjwt_harness::envoy::server_side_region());
    let envoy = Envoy::start(&table.config, Options::default());
    run_table(&envoy, &table);
}

#[test]
fn every_503_class_end_to_end() {
    // The usage store's cluster `etcd` points at a claimed port nothing listens on.
    let (port, _claim) = cjwt_harness::claim::port();
    let table = cases::unavailable(now());
    let envoy = Envoy::start(&table.config, Options { clusters: cluster("etcd", port), ..Options::default() });
    run_table(&envoy, &table);
}

#[test]
fn region_from_a_header_and_from_a_static_value() {
    let t = bearer(&token(json!({"cnst": {"region": ["eu-west-1"]}})));
    let header = start(json!({"region": {"header": "x-geo-region"}}));
    assert_eq!(header.get("/x", &[("authorization", t.as_str()), ("x-geo-region", "eu-west-1")]).status, 200);
    assert_eq!(
        header.get("/x", &[("authorization", t.as_str()), ("x-geo-region", "ap-south-1")]).reason().as_deref(),
        Some("region")
    );
    assert_eq!(header.get("/x", &[("authorization", t.as_str())]).reason().as_deref(), Some("region"));
    let fixed = start(json!({"region": {"value": "eu-west-1"}}));
    assert_eq!(fixed.get("/x", &[("authorization", t.as_str())]).status, 200);
    let node_config = config_json(json!({"region": {"node_metadata": "REGION"}}));
    match cjwt_harness::envoy::build() {
        Build::Wasm => {
            let node = Envoy::start(&node_config, Options { region: Some("us-east-1".into()), ..Options::default() });
            assert_eq!(node.get("/x", &[("authorization", t.as_str())]).reason().as_deref(), Some("region"));
        }
        // Envoy 1.40's dynamic-module ABI cannot read node metadata: the native
        // build refuses the configuration, naming the field, and Envoy does not start.
        Build::Native => {
            let log = Envoy::try_start(Some(&node_config.to_string()), Options::default())
                .err()
                .expect("the native build refuses region.node_metadata");
            assert!(log.contains("region.node_metadata"), "{log}");
        }
    }
}

#[test]
fn max_uses_is_exact_across_two_workers() {
    let envoy = Envoy::start(&config_json(json!({})), Options { concurrency: 2, ..Options::default() });
    let t = bearer(&token(json!({"jti": "burst-1", "cnst": {"max_uses": 5}})));
    let port = envoy.port;
    let handles: Vec<_> = (0..24)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                cjwt_harness::envoy::send("127.0.0.1", port, "GET", "/x", &[("authorization", t.as_str())])
            })
        })
        .collect();
    let responses: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let limited = responses.iter().filter(|r| r.status == 403 && r.reason().as_deref() == Some("max_uses")).count();
    assert_eq!((ok, limited), (5, 19), "{:?}", responses.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(envoy.upstream.count(), 5);
    assert_eq!(envoy.stat("cjwt.denied.max_uses"), 19);
}

#[test]
fn xff_source_trusts_only_the_hop_envoy_appended() {
    let envoy = start(json!({"client_ip": {"from": "xff", "trusted_hops": 1}}));
    let net10 = bearer(&token(json!({"cnst": {"ip": ["10.0.0.0/8"]}})));
    let spoofed =
        envoy.request("127.0.0.1", "GET", "/x", &[("authorization", net10.as_str()), ("x-forwarded-for", "10.1.2.3")]);
    assert_eq!(spoofed.status, 403);
    assert_eq!(spoofed.reason().as_deref(), Some("ip"));
    let local = bearer(&token(json!({"cnst": {"ip": ["127.0.0.2"]}})));
    assert_eq!(
        envoy
            .request("127.0.0.2", "GET", "/x", &[("authorization", local.as_str()), ("x-forwarded-for", "10.1.2.3")])
            .status,
        200
    );
}

#[test]
fn dry_run_decides_and_counts_but_never_refuses() {
    let envoy =
        start(json!({"mode": "dry_run", "forward": {"claims_to_headers": [{"claim": "sub", "header": "x-cjwt-sub"}]}}));
    let r = envoy.get("/x", &[("x-cjwt-sub", "admin")]);
    assert_eq!(r.status, 200);
    assert_eq!(envoy.stat("cjwt.dry_run.denied.missing_token"), 1);
    assert_eq!(envoy.stat("cjwt.denied"), 0);
    assert_eq!(envoy.upstream.last().unwrap().header("x-cjwt-sub"), None, "client copies are stripped in dry_run too");
    assert!(
        envoy.wait_log("cjwt: denied reason=missing_token status=401 token=- (dry_run: allowed)"),
        "{}",
        envoy.log()
    );
}

#[test]
fn head_with_expired_token_gets_401_without_body() {
    let envoy = start(json!({}));
    let t = bearer(&token(json!({"iat": now() - 7200, "exp": now() - 3600})));
    let r = envoy.request("127.0.0.1", "HEAD", "/x", &[("authorization", t.as_str())]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().contains("expired"));
    assert_eq!(envoy.upstream.count(), 0);
}

#[test]
fn remove_token_strips_the_credential() {
    let envoy = start(json!({"forward": {"remove_token": true}}));
    let t = bearer(&token(json!({})));
    assert_eq!(envoy.get("/x", &[("authorization", t.as_str())]).status, 200);
    assert_eq!(envoy.upstream.last().unwrap().header("authorization"), None);
}

#[test]
fn auth_none_rule_passes_without_token_and_health_stays_open() {
    let envoy = start(json!({"rules": [{"match": {"path": "/healthz", "methods": ["GET"]}, "auth": "none"}]}));
    assert_eq!(envoy.get("/healthz", &[]).status, 200);
    assert_eq!(envoy.get("/healthz/x", &[]).status, 401);
}

#[test]
fn bad_configuration_stops_envoy_with_the_field_named() {
    let mut cfg = config_json(json!({}));
    cfg["providers"][0]["jwks"]["keys"][0]["use"] = json!("enc");
    let log = match Envoy::try_start(Some(&cfg.to_string()), Options::default()) {
        Ok(_) => panic!("Envoy started with a bad configuration"),
        Err(log) => log,
    };
    assert!(log.contains("cjwt: configuration refused: providers[0].jwks.keys[0]: `use` is \"enc\""), "{log}");
    let unknown = config_json(json!({"clock_skew": 5}));
    let log = Envoy::try_start(Some(&unknown.to_string()), Options::default()).err().expect("unknown field refused");
    assert!(
        log.contains("configuration refused: (root): unknown field `clock_skew`")
            || log.contains("configuration refused: clock_skew"),
        "{log}"
    );
}

#[test]
fn struct_configuration_is_accepted() {
    let cfg = config_json(json!({}));
    let opts = Options { edits: vec![cjwt_harness::envoy::config_as_struct()], ..Options::default() };
    let envoy = Envoy::start(&cfg, opts);
    assert_eq!(envoy.get("/x", &[("authorization", &bearer(&token(json!({}))))]).status, 200);
    assert_eq!(envoy.get("/x", &[]).status, 401);
}

#[test]
fn issuer_lifetime_typ_and_keys_unavailable_end_to_end() {
    let k = key(Algorithm::EdDSA);
    let cfg = json!({
        "providers": [
            {"name": "corp", "issuer": "https://idp.example.com", "jwks": {"keys": [k.public_jwk(Some("k1"))]}},
            {"name": "remote", "issuer": "https://remote.example", "remote_jwks": {"cluster": "idp", "path": "/jwks.json"}}
        ],
        "max_lifetime_seconds": 3600,
        "required_typ": "at+jwt",
        "rules": [{"match": {"path": "/remote-only/**"}, "require": {"issuers": ["remote"]}}]
    });
    let envoy = Envoy::start(&cfg, Options::default());
    let at = |extra: Value| {
        mint_raw(k, r#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#, &claims_at(now(), extra).to_string())
    };
    let cases = [
        ("/x", at(json!({})), 200, None),
        ("/x", token(json!({})), 401, Some("wrong_typ")),
        ("/x", at(json!({"iat": now(), "exp": now() + 7200})), 401, Some("lifetime_too_long")),
        ("/remote-only/a", at(json!({})), 403, Some("issuer")),
        ("/x", at(json!({"iss": "https://remote.example"})), 401, Some("keys_unavailable")),
    ];
    for (path, t, status, reason) in &cases {
        let r = envoy.get(path, &[("authorization", &bearer(t))]);
        assert_eq!(r.status, *status, "{path} {reason:?}: {}", r.body);
        assert_eq!(r.reason().as_deref(), *reason);
    }
    assert_eq!(envoy.upstream.count(), 1);
}

/// Tokens minted by the `cjwt` command line (keygen → plugin config → mint) are
/// accepted by the filter and refused when a constraint is violated.
#[test]
fn cli_minted_tokens_round_trip_through_envoy() {
    let dir = cjwt_harness::scratch(&format!("cli-e2e-{}", std::process::id()));
    let run = |args: &[&str]| {
        let o = std::process::Command::new(cjwt_harness::envoy::cli_binary()).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    run(&["keygen", "--alg", "ES256", "--kid", "cli-1", "--out", dir.to_str().unwrap()]);
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cli-1.jwks.json")).unwrap()).unwrap();
    let cfg = json!({"providers": [{"name": "cli", "issuer": "https://cli.test", "audiences": ["api"], "jwks": jwks}],
        "custom_constraints": {"tenant": {"header": "x-tenant-id"}}});
    let envoy = Envoy::start(&cfg, Options::default());
    let pem = dir.join("cli-1.pem");
    let t = run(&[
        "mint",
        "--key",
        pem.to_str().unwrap(),
        "--kid",
        "cli-1",
        "--iss",
        "https://cli.test",
        "--aud",
        "api",
        "--ttl",
        "5m",
        "--ip",
        "127.0.0.2/32",
        "--methods",
        "GET",
        "--constraint",
        "tenant=acme",
        "--max-uses",
        "2",
    ]);
    let auth = bearer(&t);
    let ok = envoy.request("127.0.0.2", "GET", "/x", &[("authorization", auth.as_str()), ("x-tenant-id", "acme")]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ip = envoy.request("127.0.0.3", "GET", "/x", &[("authorization", auth.as_str()), ("x-tenant-id", "acme")]);
    assert_eq!(ip.reason().as_deref(), Some("ip"));
    let tenant = envoy.request("127.0.0.2", "GET", "/x", &[("authorization", auth.as_str()), ("x-tenant-id", "other")]);
    assert_eq!(tenant.reason().as_deref(), Some("custom"));
    assert_eq!(
        envoy.request("127.0.0.2", "GET", "/x", &[("authorization", auth.as_str()), ("x-tenant-id", "acme")]).status,
        200
    );
    let used = envoy.request("127.0.0.2", "GET", "/x", &[("authorization", auth.as_str()), ("x-tenant-id", "acme")]);
    assert_eq!(used.reason().as_deref(), Some("max_uses"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// ECDSA `s` replaced by `n - s`: the same signature in its other valid form.
fn malleate(alg: Algorithm, sig: &[u8]) -> Vec<u8> {
    use p256::elliptic_curve::PrimeField;
    let n = sig.len() / 2;
    let (r, s) = sig.split_at(n);
    let neg: Vec<u8> = match alg {
        Algorithm::ES256 => {
            let mut bytes = p256::FieldBytes::default();
            bytes.copy_from_slice(s);
            let s = p256::Scalar::from_repr(bytes).unwrap();
            (-s).to_repr().to_vec()
        }
        _ => {
            let mut bytes = p384::FieldBytes::default();
            bytes.copy_from_slice(s);
            let s = p384::Scalar::from_repr(bytes).unwrap();
            (-s).to_repr().to_vec()
        }
    };
    [r, &neg[..]].concat()
}

/// Envoy's native `verify_signature` (RS*, ES*) and cjwt's pure-Rust verification
/// (the native core here) give the same verdict on valid, malleated and broken
/// signatures, and the host path is really used in Envoy.
#[test]
fn host_and_pure_rust_signature_paths_agree() {
    use cjwt_core::encoding::b64;
    let algs = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ];
    let keys: Vec<Value> = algs.iter().map(|a| key(*a).public_jwk(Some(a.name()))).collect();
    let cfg = json!({"providers": [{"name": "p", "issuer": "https://idp.example.com", "jwks": {"keys": keys}}], "cache": {"max_entries": 0}});
    let envoy = Envoy::start(&cfg, Options::default());
    let mut engine =
        cjwt_core::engine::Engine::new(cjwt_core::config::Config::from_json(cfg.to_string().as_bytes()).unwrap());
    let p256_n = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
    let mut checked = 0;
    for alg in algs {
        let k = key(alg);
        let good = mint(k, Some(alg.name()), &claims_at(now(), json!({})));
        let (input, sig64) = good.rsplit_once('.').unwrap();
        let sig = b64::decode(sig64.as_bytes()).unwrap();
        let with_sig = |s: &[u8]| format!("{input}.{}", b64::encode(s));
        let mut variants = vec![
            ("valid", good.clone()),
            ("zero", with_sig(&vec![0u8; sig.len()])),
            ("truncated", with_sig(&sig[..sig.len() - 1])),
        ];
        let mut flipped = sig.clone();
        flipped[sig.len() / 2] ^= 1;
        variants.push(("bit flip", with_sig(&flipped)));
        variants.push(("extra byte", with_sig(&[&sig[..], &[0]].concat())));
        let other_payload = mint(k, Some(alg.name()), &claims_at(now(), json!({"sub": "mallory"})));
        variants
            .push(("signature of another payload", format!("{input}.{}", other_payload.rsplit_once('.').unwrap().1)));
        if matches!(alg, Algorithm::ES256 | Algorithm::ES384) {
            variants.push(("high-s malleated", with_sig(&malleate(alg, &sig))));
            let der = cjwt_core::keys::host_crypto::jose_to_der(&sig, sig.len() / 2).unwrap();
            variants.push(("DER instead of r||s", with_sig(&der)));
        }
        if alg == Algorithm::ES256 {
            let n = (0..32).map(|i| u8::from_str_radix(&p256_n[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<_>>();
            variants.push(("r = n", with_sig(&[&n[..], &sig[32..]].concat())));
            variants.push(("s = n", with_sig(&[&sig[..32], &n[..]].concat())));
        }
        for (what, token) in variants {
            let native = match engine
                .decide_with(
                    &StaticHost::get("/x").bearer(&token).at(now()),
                    &cjwt_core::token::verify::InlineOnly,
                    &cjwt_core::keys::host_crypto::PureRust,
                    &mut cjwt_core::usage::MemoryCounter::default(),
                    &mut cjwt_core::sender::replay::NoReplayCache,
                )
                .decision
            {
                cjwt_core::engine::Decision::Allow { .. } => None,
                cjwt_core::engine::Decision::Deny(d) | cjwt_core::engine::Decision::DryRunDeny(d) => {
                    Some(d.reason.code().to_string())
                }
            };
            let r = envoy.get("/x", &[("authorization", &bearer(&token))]);
            let in_envoy = if r.status == 200 { None } else { r.reason() };
            assert_eq!(in_envoy, native, "{alg:?} {what}: Envoy and native disagree");
            if what == "valid" || what == "high-s malleated" {
                assert_eq!(native, None, "{alg:?} {what} must verify");
            } else {
                assert_eq!(native.as_deref(), Some("bad_signature"), "{alg:?} {what}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 48);
    assert!(envoy.stat("cjwt.verify.host") >= 25, "host verifications: {}", envoy.stat("cjwt.verify.host"));
}

/// SPEC §12: the decision reaches Envoy's access log through the shipped format —
/// filter state `wasm.cjwt.*` in the wasm build, dynamic metadata `cjwt:*` in the
/// native one — for allowed and refused requests; `sub`/`iss` only from a
/// verified token.
#[test]
fn the_decision_reaches_the_access_log() {
    let envoy = start(json!({"rules": [{"match": {"path": "/open/**"}, "auth": "none"}]}));
    let iss = "cjwt.iss=https://idp.example.com";
    let allowed = bearer(&token(json!({})));
    let ip = bearer(&token(json!({"sub": "mallory", "cnst": {"ip": ["10.0.0.0/8"]}})));
    let forged = bearer(&token(json!({"sub": "eve"})).replace('.', ".x"));
    let cases: [(&str, Vec<(&str, &str)>, u16, Vec<&str>); 5] = [
        (
            "/x",
            vec![("authorization", allowed.as_str())],
            200,
            vec!["cjwt.reason=allowed", "cjwt.sub=alice", iss, "cjwt.rule=default"],
        ),
        ("/x", vec![], 401, vec!["cjwt.reason=missing_token", "cjwt.sub=-", "cjwt.iss=-", "cjwt.rule=default"]),
        (
            "/y",
            vec![("authorization", ip.as_str())],
            403,
            vec!["cjwt.reason=ip", "cjwt.sub=mallory", iss, "cjwt.rule=default"],
        ),
        ("/z", vec![("authorization", forged.as_str())], 401, vec!["cjwt.sub=-", "cjwt.iss=-", "cjwt.rule=default"]),
        ("/open/a", vec![], 200, vec!["cjwt.reason=allowed", "cjwt.sub=-", "cjwt.rule=0"]),
    ];
    for (path, headers, status, _) in &cases {
        assert_eq!(envoy.get(path, headers).status, *status, "{path}");
    }
    for (path, _, status, parts) in &cases {
        let mut want = vec![*path];
        want.push(if *status == 200 {
            " 200 "
        } else if *status == 401 {
            " 401 "
        } else {
            " 403 "
        });
        want.extend(parts.iter().copied());
        assert!(envoy.wait_access_log(&want).is_some(), "{want:?} not in the access log:\n{}", envoy.access_log());
    }
    assert!(!envoy.access_log().contains("eve"), "an unverified token's sub is never logged");
}
