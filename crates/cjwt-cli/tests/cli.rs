//! The `cjwt` command line, run as a binary: every subcommand and its error paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cjwt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cjwt")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn tmp(name: &str) -> PathBuf {
    // The system temp dir: nothing a test writes lands in the repository.
    let dir = std::env::temp_dir().join(format!("cjwt-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keygen(dir: &Path, alg: &str, kid: &str) -> (String, Value) {
    let o = cjwt(&["keygen", "--alg", alg, "--kid", kid, "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pem = dir.join(format!("{kid}.pem"));
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{kid}.jwks.json"))).unwrap()).unwrap();
    (pem.to_str().unwrap().to_string(), jwks)
}

fn plugin(dir: &Path, jwks: &Value, extra: Value) -> String {
    let mut cfg = json!({"providers": [{"name": "p", "issuer": "https://issuer.test", "audiences": ["api"], "jwks": jwks}],
        "custom_constraints": {"tenant": {"header": "x-tenant-id"}}});
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    let path = dir.join("plugin.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn keygen_writes_a_private_pem_0600_and_a_public_jwks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("keygen");
    for alg in ["EdDSA", "ES256", "ES384", "RS256", "PS256", "HS256"] {
        let (pem, jwks) = keygen(&dir, alg, &format!("k-{alg}"));
        let mode = std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{alg}");
        assert_eq!(jwks["keys"][0]["alg"], alg);
        assert_eq!(jwks["keys"][0]["kid"], format!("k-{alg}"));
        if alg != "HS256" {
            assert!(jwks["keys"][0].get("d").is_none(), "no private member in the public JWKS");
        }
    }
    let o = cjwt(&["keygen", "--alg", "ES512", "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unsupported algorithm \"ES512\""));
}

#[test]
fn mint_then_explain_allows_and_refuses_like_the_filter() {
    let dir = tmp("explain");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let config = plugin(&dir, &jwks, json!({}));
    let o = cjwt(&["check-config", &config]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: 1 provider(s)"));
    let t = cjwt(&[
        "mint",
        "--key",
        &pem,
        "--kid",
        "k1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--ttl",
        "15m",
        "--ip",
        "10.0.0.0/8",
        "--methods",
        "GET,HEAD",
        "--paths",
        "/v1/orders/**",
        "--constraint",
        "tenant=acme",
    ]);
    assert!(t.status.success(), "{}", stderr(&t));
    let token = stdout(&t);
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--config",
            &config,
            "--token",
            &token,
            "--path",
            "/v1/orders/7",
            "--header",
            "x-tenant-id=acme",
        ];
        args.extend_from_slice(extra);
        cjwt(&args)
    };
    let ok = explain(&["--ip", "10.1.2.3"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert_eq!(stdout(&ok).lines().next(), Some("allow"));
    let ip = explain(&["--ip", "192.168.0.1"]);
    assert_eq!((ip.status.code(), stdout(&ip)), (Some(4), "refuse 403 ip".to_string()));
    let method = explain(&["--ip", "10.1.2.3", "--method", "POST"]);
    assert_eq!(stdout(&method), "refuse 403 method");
    let late = explain(&["--ip", "10.1.2.3", "--at", "2099-01-01T00:00:00Z"]);
    assert_eq!((late.status.code(), stdout(&late)), (Some(3), "refuse 401 expired".to_string()));
}

#[test]
fn mint_refuses_constraints_the_filter_would_refuse() {
    let dir = tmp("refuse");
    let (pem, _) = keygen(&dir, "ES256", "e1");
    for (flag, value, want) in [
        ("--ip", "010.0.0.0/8", "ip: malformed"),
        ("--paths", "/a/**/b", "paths: malformed"),
        ("--hosts", "a*.example.com", "hosts: malformed"),
        ("--window", "mon-fri 9:00-17:30", "window"),
        ("--window", "mon-fri 09:00-17:30 Mars/Base", "unknown time zone"),
        ("--max-uses", "0", "max_uses"),
        ("--ttl", "soon", "bad duration"),
    ] {
        let mut args = vec!["mint", "--key", &pem, "--iss", "i", flag, value];
        if flag != "--ttl" {
            args.extend_from_slice(&["--ttl", "1m"]);
        }
        let o = cjwt(&args);
        assert_eq!(o.status.code(), Some(1), "{flag} {value}");
        assert!(stderr(&o).contains(want), "{flag} {value}: {}", stderr(&o));
    }
}

#[test]
fn bad_key_files_and_arguments_are_errors() {
    let dir = tmp("badkey");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let o = cjwt(&["mint", "--key", junk.to_str().unwrap(), "--iss", "i", "--ttl", "1m"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a PKCS#8 private key"), "{}", stderr(&o));
    let o = cjwt(&["mint", "--key", "/nonexistent.pem", "--iss", "i", "--ttl", "1m"]);
    assert!(stderr(&o).contains("/nonexistent.pem"));
    let o = cjwt(&["mint", "--key", junk.to_str().unwrap(), "--iss", "i", "--ttl", "1m", "--bogus", "x"]);
    assert!(stderr(&o).contains("unknown option --bogus"));
    let o = cjwt(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("usage:"));
}

#[test]
fn check_config_names_the_field() {
    let dir = tmp("check");
    let path = dir.join("bad.json");
    std::fs::write(&path, r#"{"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": [{"kty": "oct", "alg": "HS256", "k": "c2hvcnQ"}]}}]}"#).unwrap();
    let o = cjwt(&["check-config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("providers[0].jwks.keys[0]: HS256 secret is 5 bytes; at least 32 are required"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_shows_header_claims_and_utc_dates() {
    let dir = tmp("inspect");
    let (pem, _) = keygen(&dir, "EdDSA", "k1");
    let t = stdout(&cjwt(&["mint", "--key", &pem, "--iss", "https://i", "--ttl", "1h", "--region", "eu-west-1"]));
    let o = cjwt(&["inspect", &t]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("\"alg\": \"EdDSA\""), "{out}");
    assert!(out.contains("\"region\": ["), "{out}");
    assert!(out.lines().any(|l| l.starts_with("exp: 20") && l.ends_with('Z')), "{out}");
    let bad = cjwt(&["inspect", "abc"]);
    assert_eq!(bad.status.code(), Some(1));
}

/// `mode: dry_run`: Envoy forwards what it would refuse, and `explain` says so.
#[test]
fn explain_says_what_envoy_does_in_dry_run() {
    let dir = tmp("dry-run");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let config = plugin(&dir, &jwks, json!({"mode": "dry_run"}));
    let args = ["mint", "--key", &pem, "--kid", "k1", "--iss", "https://issuer.test", "--aud", "api", "--ttl", "15m"];
    let t = cjwt(&[&args[..], &["--ip", "10.0.0.0/8"]].concat());
    assert!(t.status.success(), "{}", stderr(&t));
    let token = stdout(&t);
    let explain = |ip: &str| cjwt(&["explain", "--config", &config, "--token", &token, "--ip", ip]);
    let refused = explain("192.168.0.1");
    assert_eq!(
        (refused.status.code(), stdout(&refused)),
        (Some(0), "allow (dry_run: would refuse 403 ip)".to_string())
    );
    let ok = explain("10.1.2.3");
    assert_eq!((ok.status.code(), stdout(&ok).lines().next()), (Some(0), Some("allow")));
}

/// Issue 24 item 1, offline: an XFCC header whose unclosed quote swallows the
/// trusted hop's element is refused by `explain` as by Envoy.
#[test]
fn explain_refuses_xfcc_quote_smuggling() {
    let dir = tmp("xfcc");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let config = plugin(&dir, &jwks, json!({"sender_constraints": {"mtls": {"from": "xfcc", "trusted_hops": 1}}}));
    let victim = "b1a6fa5b3f3c4fb5b1b7a0d0c9d5d1b0f1e2d3c4b5a697887766554433221100";
    let attacker = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let digest: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&victim[2 * i..2 * i + 2], 16).unwrap()).collect();
    let cnf = format!(r#"cnf={{"x5t#S256":"{}"}}"#, cjwt_core::encoding::b64::encode(&digest));
    let args = ["mint", "--key", &pem, "--kid", "k1", "--iss", "https://issuer.test", "--aud", "api", "--ttl", "15m"];
    let t = cjwt(&[&args[..], &["--claim", &cnf]].concat());
    assert!(t.status.success(), "{}", stderr(&t));
    let token = stdout(&t);
    let explain = |xfcc: &str| {
        let header = format!("x-forwarded-client-cert={xfcc}");
        cjwt(&["explain", "--config", &config, "--token", &token, "--header", &header])
    };
    let o = explain(&format!("Hash={victim};By=\",By=spiffe://gw;Hash={attacker}"));
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(3), "refuse 401 certificate_header_malformed".to_string()),
        "{}",
        stderr(&o)
    );
    let o = explain(&format!("By=spiffe://gw;Hash={victim}"));
    assert_eq!((o.status.code(), stdout(&o).lines().next()), (Some(0), Some("allow")), "{}", stdout(&o));
    let o = explain(&format!("Hash={victim},By=spiffe://gw;Hash={attacker}"));
    assert_eq!((o.status.code(), stdout(&o)), (Some(3), "refuse 401 certificate_mismatch".to_string()));
}

/// The claims of a token, not verified.
fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&cjwt_core::encoding::b64::decode(p.as_bytes()).unwrap()).unwrap()
}

#[test]
fn each_subcommand_has_its_own_help() {
    let o = cjwt(&["mint", "--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Usage: cjwt mint"), "{out}");
    for flag in
        ["--key <FILE>", "--ttl <DURATION>", "--window <WINDOW>", "--constraints-claim <NAME>", "--config <FILE>"]
    {
        assert!(out.contains(flag), "{flag} missing from:\n{out}");
    }
    assert!(out.contains("ES256"), "the algorithms are listed: {out}");
    assert!(!out.contains("--out"), "keygen's flags are not in mint's help");
    let o = cjwt(&["help", "explain"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("--at <TIME>"), "{}", stdout(&o));
    let o = cjwt(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    for command in ["keygen", "mint", "inspect", "explain", "check-config"] {
        assert!(stdout(&o).contains(command), "{command}");
    }
}

#[test]
fn typed_values_are_refused_while_parsing_and_name_the_flag() {
    let dir = tmp("typed");
    let (pem, _) = keygen(&dir, "EdDSA", "k1");
    for (flag, value, want) in [
        ("--ttl", "5w", "--ttl"),
        ("--nbf", "0s", "must be positive"),
        ("--ip", "10.0.0.0/33", "ip: malformed"),
        ("--window", "mon-xyz 09:00-10:00", "unknown day"),
        ("--max-uses", "many", "--max-uses"),
        ("--claim", "novalue", "is not name=JSON"),
    ] {
        let o = cjwt(&["mint", "--key", &pem, "--iss", "i", "--ttl", "1m", flag, value]);
        assert_eq!(o.status.code(), Some(1), "{flag} {value}");
        assert!(stderr(&o).contains(want), "{flag} {value}: {}", stderr(&o));
    }
    let o = cjwt(&["mint", "--key", &pem, "--iss=i", "--ttl=1m", "--kid", "a", "--kid", "b"]);
    assert_eq!(o.status.code(), Some(1), "a single-valued flag given twice");
    let o = cjwt(&["mint", "--key", &pem, "--iss=i", "--ttl=2h", "--methods=GET, HEAD", "--methods", "POST"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let claims = payload(&stdout(&o));
    assert_eq!(claims["cnst"]["methods"], json!(["GET", "HEAD", "POST"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 7200);
}

#[test]
fn mint_puts_the_constraints_under_the_configured_claim_name() {
    let dir = tmp("claimname");
    let (pem, jwks) = keygen(&dir, "ES256", "e1");
    let base = ["mint", "--key", &pem, "--kid", "e1", "--iss", "https://issuer.test", "--aud", "api", "--ttl", "5m"];
    let mint = |extra: &[&str]| {
        let o = cjwt(&[&base[..], extra].concat());
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        stdout(&o)
    };
    // The default name, and an explicit one.
    let claims = payload(&mint(&["--ip", "10.0.0.0/8"]));
    assert_eq!(claims["cnst"], json!({"ip": ["10.0.0.0/8"]}));
    let claims = payload(&mint(&["--ip", "10.0.0.0/8", "--constraints-claim", "restrictions"]));
    assert_eq!(claims["restrictions"], json!({"ip": ["10.0.0.0/8"]}));
    assert!(claims.get("cnst").is_none(), "{claims}");
    let o = cjwt(&[&base[..], &["--ip", "10.0.0.0/8", "--constraints-claim", "a..b"]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a claim name"), "{}", stderr(&o));

    // With --config, the configuration's claim_names.constraints, which the filter then enforces.
    let name = "https://example.com/cnst";
    let config = plugin(&dir, &jwks, json!({"claim_names": {"constraints": name}}));
    let token = mint(&["--config", &config, "--ip", "10.0.0.0/8", "--constraint", "tenant=acme"]);
    let claims = payload(&token);
    assert_eq!(claims[name], json!({"ip": ["10.0.0.0/8"], "tenant": ["acme"]}), "{claims}");
    assert!(claims.get("cnst").is_none(), "{claims}");
    let explain = |ip: &str| {
        cjwt(&["explain", "--config", &config, "--token", &token, "--ip", ip, "--header", "x-tenant-id=acme"])
    };
    assert_eq!(stdout(&explain("10.1.2.3")).lines().next(), Some("allow"));
    assert_eq!(stdout(&explain("192.168.0.1")), "refuse 403 ip");

    // Under the default name, that configuration would never see the constraints.
    let unseen = mint(&["--ip", "10.0.0.0/8"]);
    let o = cjwt(&["explain", "--config", &config, "--token", &unseen, "--ip", "192.168.0.1"]);
    assert_eq!(stdout(&o).lines().next(), Some("allow"), "the constraint is not where this configuration looks");

    let o = cjwt(&[&base[..], &["--config", &config, "--constraints-claim", "x"]].concat());
    assert_eq!(o.status.code(), Some(1), "the two ways of naming the claim are exclusive");
    let o = cjwt(&[&base[..], &["--config", "/nonexistent.json"]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.json"));
}

#[test]
fn status_list_mint_status_and_explain_with_a_list_file() {
    let dir = tmp("status-list");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let uri = "https://issuer.test/statuslists/1";
    let cfg = plugin(
        &dir,
        &jwks,
        json!({"revocation": {"jti": [{"iss": "https://issuer.test", "jti": "leaked"}]},
               "status_lists": [{"uri": uri, "provider": "p", "cluster": "idp", "path": "/statuslists/1"}]}),
    );
    let o = cjwt(&[
        "status-list",
        "--key",
        &pem,
        "--kid",
        "k1",
        "--uri",
        uri,
        "--size",
        "16",
        "--bits",
        "2",
        "--revoked",
        "5,9-10",
        "--suspended",
        "3",
        "--ttl",
        "10m",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = dir.join("list.jwt");
    std::fs::write(&list, format!("{}\n", stdout(&o))).unwrap();
    let header: Value = serde_json::from_slice(&base64_url(stdout(&o).split('.').next().unwrap())).unwrap();
    assert_eq!(header["typ"], "statuslist+jwt");
    let token = |extra: &[&str]| {
        let mut args = vec![
            "mint",
            "--key",
            pem.as_str(),
            "--kid",
            "k1",
            "--iss",
            "https://issuer.test",
            "--aud",
            "api",
            "--ttl",
            "5m",
        ];
        args.extend_from_slice(extra);
        let o = cjwt(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let explain = |t: &str, with_list: bool| {
        let mut args = vec!["explain", "--config", cfg.as_str(), "--token", t];
        let list = list.to_str().unwrap();
        if with_list {
            args.extend_from_slice(&["--status-list", list]);
        }
        let o = cjwt(&args);
        (o.status.code(), stdout(&o).lines().next().unwrap_or("").to_string())
    };
    let status = |idx: &str| token(&["--status", &format!("{idx},{uri}")]);
    assert_eq!(explain(&status("0"), true), (Some(0), "allow".into()));
    assert_eq!(explain(&status("3"), true), (Some(3), "refuse 401 suspended".into()));
    assert_eq!(explain(&status("5"), true), (Some(3), "refuse 401 revoked".into()));
    assert_eq!(explain(&status("10"), true), (Some(3), "refuse 401 revoked".into()));
    assert_eq!(explain(&status("16"), true), (Some(3), "refuse 401 revoked".into()), "out of range");
    assert_eq!(explain(&status("0"), false), (Some(3), "refuse 401 status_unavailable".into()));
    assert_eq!(
        explain(&token(&["--status", "0,https://else/1"]), true),
        (Some(3), "refuse 401 unknown_status_list".into())
    );
    assert_eq!(explain(&token(&["--jti", "leaked"]), false), (Some(3), "refuse 401 revoked".into()));
    // Refusals of the command line itself.
    for (args, why) in [
        (vec!["--size", "8", "--suspended", "1"], "does not fit in 1 bit"),
        (vec!["--size", "8", "--revoked", "8"], "not below --size"),
        (vec!["--size", "8", "--revoked", "1", "--suspended", "1", "--bits", "2"], "listed twice"),
        (vec!["--size", "8", "--bits", "3"], "bits must be 1, 2, 4 or 8"),
        (vec!["--size", "0"], "--size"),
    ] {
        let mut all = vec!["status-list", "--key", pem.as_str(), "--uri", uri];
        all.extend(args);
        let o = cjwt(&all);
        assert_eq!(o.status.code(), Some(1), "{all:?}");
        assert!(stderr(&o).contains(why), "{all:?}: {}", stderr(&o));
    }
    let o = cjwt(&["mint", "--key", &pem, "--iss", "https://issuer.test", "--ttl", "5m", "--status", "x,y"]);
    assert_eq!(o.status.code(), Some(1));
    // A list for another URI, or signed by another key, is refused by explain.
    let (other_pem, _) = keygen(&dir, "EdDSA", "k2");
    let o = cjwt(&["status-list", "--key", &other_pem, "--kid", "k1", "--uri", uri, "--size", "8"]);
    std::fs::write(&list, stdout(&o)).unwrap();
    let (code, _) = explain(&status("0"), true);
    assert_eq!(code, Some(1), "a list signed by another key is refused");
}

fn base64_url(s: &str) -> Vec<u8> {
    cjwt_core::encoding::b64::decode(s.as_bytes()).unwrap()
}

#[test]
fn mint_binds_to_a_key_and_dpop_makes_the_proof_explain_accepts() {
    let dir = tmp("dpop");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let (holder, holder_jwks) = keygen(&dir, "ES256", "holder");
    let config = plugin(&dir, &jwks, json!({"sender_constraints": {"dpop": {}, "mtls": {"from": "peer"}}}));
    let mint = |extra: &[&str]| {
        let mut args =
            vec!["mint", "--key", &pem, "--kid", "k1", "--iss", "https://issuer.test", "--aud", "api", "--ttl", "5m"];
        args.extend_from_slice(extra);
        let o = cjwt(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let t = mint(&["--bind-key", &holder]);
    let jkt = payload(&t)["cnf"]["jkt"].as_str().unwrap().to_string();
    let jwk = holder_jwks["keys"][0].as_object().unwrap();
    assert_eq!(Some(jkt.clone()), cjwt_core::sender::dpop::thumbprint(jwk), "cnf.jkt is the holder key's thumbprint");
    let url = "https://api.example.com/v1/orders";
    let o = cjwt(&["dpop", "--key", &holder, "--method", "GET", "--url", &format!("{url}?page=2"), "--token", &t]);
    assert!(o.status.success(), "{}", stderr(&o));
    let proof = stdout(&o);
    let explain = |proof: Option<&str>, path: &str| {
        let mut args = vec!["explain", "--config", &config, "--token", &t, "--host", "api.example.com", "--path", path];
        if let Some(p) = proof {
            args.extend_from_slice(&["--dpop", p]);
        }
        cjwt(&args)
    };
    let o = explain(Some(&proof), "/v1/orders");
    assert_eq!(
        (o.status.code(), stdout(&o).lines().next().map(str::to_owned)),
        (Some(0), Some("allow".into())),
        "{}",
        stderr(&o)
    );
    let o = explain(Some(&proof), "/v1/other");
    assert_eq!((o.status.code(), stdout(&o)), (Some(3), "refuse 401 invalid_dpop_proof".to_string()));
    let o = explain(None, "/v1/orders");
    assert_eq!((o.status.code(), stdout(&o)), (Some(3), "refuse 401 dpop_required".to_string()));
    // A symmetric key cannot make a proof; a URL is required.
    let (hs, _) = keygen(&dir, "HS256", "hs");
    let o = cjwt(&["dpop", "--key", &hs, "--alg", "HS256", "--url", url, "--token", &t]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = cjwt(&["dpop", "--key", &holder, "--url", "api.example.com/x", "--token", &t]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn mint_binds_to_a_certificate_and_explain_takes_its_digest() {
    let dir = tmp("mtls");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let config = plugin(&dir, &jwks, json!({"sender_constraints": {"mtls": {"from": "peer"}}}));
    // A certificate (any DER will do for the binding): a fixed body in PEM armour.
    let der: Vec<u8> = (0u8..=255).collect();
    let body = base64_standard(&der);
    let cert = dir.join("client.pem");
    std::fs::write(&cert, format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")).unwrap();
    let o = cjwt(&[
        "mint",
        "--key",
        &pem,
        "--kid",
        "k1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--ttl",
        "5m",
        "--bind-cert",
        cert.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = stdout(&o);
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&der);
    assert_eq!(payload(&t)["cnf"]["x5t#S256"], cjwt_core::encoding::b64::encode(&digest));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let colons: String = digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    for (digest, want) in [
        (Some(hex.as_str()), "allow"),
        (Some(colons.as_str()), "allow"),
        (Some(&"00".repeat(32)), "refuse 401 certificate_mismatch"),
        (None, "refuse 401 certificate_required"),
    ] {
        let mut args = vec!["explain", "--config", &config, "--token", &t];
        if let Some(d) = digest {
            args.extend_from_slice(&["--cert-sha256", d]);
        }
        let o = cjwt(&args);
        assert_eq!(stdout(&o).lines().next(), Some(want), "{digest:?}: {}", stderr(&o));
    }
}

fn base64_standard(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `cjwt inspect … | head -0`: standard output closed before anything is
/// written ends the command quietly (exit 141, as for SIGPIPE), never a panic.
#[test]
fn a_closed_stdout_ends_quietly_without_a_panic() {
    let dir = tmp("epipe");
    let (pem, _) = keygen(&dir, "EdDSA", "k1");
    let token = stdout(&cjwt(&["mint", "--key", &pem, "--iss", "https://i", "--ttl", "1h"]));
    // The read end is closed before the process starts, so its first write
    // fails with EPIPE whatever the scheduling (closing it after spawn raced
    // the child's write into the pipe buffer).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_cjwt"))
        .args(["inspect", &token])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(141), "{}", stderr(&o));
}

/// SPEC §14: `cjwt txn-token` mints one, `inspect` shows its contexts,
/// `explain` decides it at a sidecar (from the `Txn-Token` header) and shows
/// the one a gateway would issue.
#[test]
fn txn_tokens_minted_inspected_and_explained() {
    let dir = tmp("txn");
    let (pem, jwks) = keygen(&dir, "ES256", "gw1");
    let mint = |extra: &[&str]| {
        let mut args =
            vec!["txn-token", "--key", &pem, "--kid", "gw1", "--trust-domain", "mesh.example", "--sub", "alice"];
        args.extend_from_slice(&["--scope", "orders.read", "--req-wl", "gw", "--req-ip", "192.0.2.7"]);
        args.extend_from_slice(extra);
        let o = cjwt(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let token = mint(&["--cnst", r#"{"ip": ["192.0.2.0/24"]}"#, "--tctx", "iss=https://idp.example"]);
    let shown = stdout(&cjwt(&["inspect", &token]));
    assert!(shown.contains("txn-token: txn="), "{shown}");
    assert!(shown.contains(r#"rctx.req_ip: "192.0.2.7""#), "{shown}");
    assert!(shown.contains(r#"tctx.cnst: {"ip":["192.0.2.0/24"]}"#), "{shown}");
    let sidecar = dir.join("sidecar.json");
    let cfg = json!({"providers": [{"name": "tts", "kind": "txn_token", "trust_domain": "mesh.example", "jwks": jwks}],
                     "default_rule": {"auth": "txn_token", "require": {"req_wl": ["gw"]}}});
    std::fs::write(&sidecar, cfg.to_string()).unwrap();
    let explain =
        |token: &str| cjwt(&["explain", "--config", sidecar.to_str().unwrap(), "--token", token, "--ip", "10.0.0.9"]);
    let o = explain(&token);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("note: a Txn-Token"), "{}", stdout(&o));
    let outside = mint(&["--cnst", r#"{"ip": ["198.51.100.0/24"]}"#]);
    assert_eq!(stdout(&explain(&outside)).lines().last(), Some("refuse 403 ip"));
    // Bound to its caller: decided with the caller's identity, or refused without one.
    let bound = dir.join("bound.json");
    let cfg = json!({"providers": [{"name": "tts", "kind": "txn_token", "trust_domain": "mesh.example", "jwks": jwks}],
                     "default_rule": {"auth": "txn_token", "require": {"caller": {"from": "xfcc", "trusted_hops": 1}}}});
    std::fs::write(&bound, cfg.to_string()).unwrap();
    let explain_bound = |caller: &[&str]| {
        let mut args = vec!["explain", "--config", bound.to_str().unwrap(), "--token", &token, "--ip", "10.0.0.9"];
        args.extend_from_slice(caller);
        stdout(&cjwt(&args)).lines().last().map(str::to_string)
    };
    assert_eq!(explain_bound(&["--caller", "gw"]).as_deref(), Some("allow"));
    assert_eq!(explain_bound(&["--caller", "spiffe://elsewhere"]).as_deref(), Some("refuse 401 caller_mismatch"));
    assert_eq!(explain_bound(&[]).as_deref(), Some("refuse 401 caller_unidentified"));
    assert!(!cjwt(&[
        "txn-token",
        "--key",
        &pem,
        "--trust-domain",
        "d",
        "--sub",
        "s",
        "--scope",
        "p",
        "--req-wl",
        "w",
        "--ttl",
        "301"
    ])
    .status
    .success());

    // The gateway: an access token in, a Txn-Token out.
    let (idp_pem, idp_jwks) = keygen(&dir, "EdDSA", "k1");
    let gateway = plugin(
        &dir,
        &idp_jwks,
        json!({"transaction_tokens": {"issue": {"trust_domain": "mesh.example", "workload": "gw", "scope": "orders.read",
                                               "key": {"file": pem}, "kid": "gw1"}}}),
    );
    let o = cjwt(&[
        "mint",
        "--key",
        &idp_pem,
        "--kid",
        "k1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--sub",
        "bob",
        "--ttl",
        "5m",
    ]);
    let access = stdout(&o);
    let o = cjwt(&["explain", "--config", &gateway, "--token", &access, "--ip", "192.0.2.9"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("forward: set txn-token: "), "{out}");
    let claims: Value =
        serde_json::from_str(out.lines().find_map(|l| l.strip_prefix("txn-token claims: ")).unwrap()).unwrap();
    assert_eq!((claims["sub"].as_str(), claims["rctx"]["req_ip"].as_str()), (Some("bob"), Some("192.0.2.9")));
}

#[test]
fn mint_an_mcp_agent_token_and_explain_mcp_requests() {
    let dir = tmp("mcp");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let config = plugin(&dir, &jwks, json!({}));
    let t = cjwt(&[
        "mint",
        "--key",
        &pem,
        "--kid",
        "k1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--ttl",
        "15m",
        "--mcp-tools",
        "get_order,search_orders",
        "--mcp-arg",
        "get_order.customer_id=42",
        "--mcp-arg",
        "get_order.customer_id=43",
        "--max-uses",
        "20",
    ]);
    assert!(t.status.success(), "{}", stderr(&t));
    let token = stdout(&t);
    let payload: Value =
        serde_json::from_slice(&cjwt_core::encoding::b64::decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap())
            .unwrap();
    assert_eq!(
        payload["cnst"]["mcp"],
        json!({"tools": ["get_order", "search_orders"], "args": {"get_order": {"customer_id": ["42", "43"]}}})
    );
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--config", &config, "--token", &token, "--method", "POST", "--path", "/mcp"];
        args.extend_from_slice(extra);
        stdout(&cjwt(&args))
    };
    let call = |tool: &str, id: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {"customer_id": id}}})
            .to_string()
    };
    assert_eq!(explain(&["--mcp-body", &call("get_order", "42")]).lines().next(), Some("allow"));
    assert_eq!(explain(&["--mcp-body", &call("get_order", "7")]), "refuse 403 mcp_argument");
    assert_eq!(explain(&["--mcp-body", &format!("[{}]", call("get_order", "42"))]), "refuse 403 mcp_not_parsed");
    assert_eq!(explain(&["--mcp-method", "tools/call", "--mcp-tool", "delete_order"]), "refuse 403 mcp_tool");
    assert_eq!(explain(&["--mcp-method", "initialize"]).lines().next(), Some("allow"));
    assert_eq!(explain(&["--mcp-method", "resources/read"]), "refuse 403 mcp_method");
    assert_eq!(explain(&[]), "refuse 403 mcp_not_parsed");
    let o = cjwt(&["mint", "--key", &pem, "--iss", "i", "--aud", "a", "--ttl", "1m", "--mcp-arg", "customer_id=42"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("TOOL.PATH=VALUE"), "{}", stderr(&o));
}

/// SPEC §16: `cjwt attenuate` derives narrower links offline, refuses to
/// widen or to sign for another holder; `cjwt inspect` shows the chain;
/// `cjwt explain` decides a chained request as the filter does.
#[test]
fn attenuate_inspect_and_explain_a_delegation_chain() {
    let dir = tmp("attenuate");
    let (pem, jwks) = keygen(&dir, "EdDSA", "k1");
    let (holder, _) = keygen(&dir, "ES256", "holder");
    let (helper, _) = keygen(&dir, "ES256", "helper");
    let (sub, _) = keygen(&dir, "EdDSA", "sub");
    let config = plugin(&dir, &jwks, json!({"sender_constraints": {"dpop": {}}}));
    let o = cjwt(&[
        "mint",
        "--key",
        &pem,
        "--kid",
        "k1",
        "--iss",
        "https://issuer.test",
        "--aud",
        "api",
        "--ttl",
        "10m",
        "--methods",
        "GET,POST",
        "--paths",
        "/v1/**",
        "--max-uses",
        "5",
        "--bind-key",
        &holder,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = stdout(&o);
    let attenuate = |token: &str, key: &str, next: &str, extra: &[&str]| {
        let mut args = vec!["attenuate", "--token", token, "--key", key, "--bind-key", next];
        args.extend_from_slice(extra);
        cjwt(&args)
    };
    let o = attenuate(&root, &holder, &helper, &["--methods", "GET", "--max-uses", "2", "--ttl", "5m"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let one = stdout(&o);
    assert_eq!(one.split('~').count(), 2);
    // Widening is refused: a method, more uses, a longer life; so is another holder's key.
    for (extra, what) in [
        (vec!["--methods", "GET,DELETE"], "methods"),
        (vec!["--max-uses", "3"], "max_uses"),
        (vec!["--ttl", "1h"], "exp"),
    ] {
        let o = attenuate(&one, &helper, &sub, &extra);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stdout(&o));
        assert!(stderr(&o).contains(what), "{what}: {}", stderr(&o));
    }
    let o = attenuate(&one, &holder, &sub, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("binds"), "{}", stderr(&o));
    let o = attenuate(&one, &helper, &sub, &["--paths", "/v1/orders/*", "--ttl", "1m"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let two = stdout(&o);
    // inspect: the root, then each link, linked as the proxy requires.
    let o = cjwt(&["inspect", &two]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    assert!(shown.contains("chain (not verified): 2 link(s)"), "{shown}");
    assert_eq!(shown.matches("parent_hash=ok signer_is_parent_holder=yes").count(), 2, "{shown}");
    // explain: the leaf's proof (over the root token) is allowed, the helper's is not.
    let root_only = two.split('~').next().unwrap();
    let url = "https://api.example.com/v1/orders/7";
    let proof_for = |key: &str, url: &str| {
        let o = cjwt(&["dpop", "--key", key, "--method", "GET", "--url", url, "--token", root_only]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let proof = |key: &str| proof_for(key, url);
    let explain = |credential: &str, proof: &str, method: &str, path: &str| {
        cjwt(&[
            "explain",
            "--config",
            &config,
            "--token",
            credential,
            "--host",
            "api.example.com",
            "--method",
            method,
            "--path",
            path,
            "--dpop",
            proof,
        ])
    };
    let o = explain(&two, &proof(&sub), "GET", "/v1/orders/7");
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("cjwt-chain"), "{}", stdout(&o));
    let o = explain(&two, &proof(&helper), "GET", "/v1/orders/7");
    assert_eq!(
        (o.status.code(), stdout(&o).lines().last().map(str::to_owned)),
        (Some(3), Some("refuse 401 dpop_key_mismatch".into()))
    );
    // The second link's path, narrower than the root's `/v1/**`: 403 `path`.
    let deeper = proof_for(&sub, "https://api.example.com/v1/orders/7/items");
    let o = explain(&two, &deeper, "GET", "/v1/orders/7/items");
    assert_eq!(
        (o.status.code(), stdout(&o).lines().last().map(str::to_owned)),
        (Some(4), Some("refuse 403 path".into()))
    );
}
