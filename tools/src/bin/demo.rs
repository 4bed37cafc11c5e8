//! `make run`: a real Envoy with cjwt (`CJWT_BUILD=native make run` for the native
//! module; the shipped envoy/envoy.yaml or envoy/envoy-native.yaml, unchanged but
//! for free ports) in front of an echo upstream. Mints demo tokens with the `cjwt`
//! command line and envoy/demo/demo-signing-key.pem, and shows which requests pass
//! and which are refused, and why. Then two more Envoys, gateways a and b, with
//! the same configuration plus DPoP, a deny-list and `max_uses` counted in one
//! local etcd (Debian's, `make etcd`): a DPoP-bound token with and without its
//! proof, a revoked token, a token counted across both gateways. Then a
//! Transaction Token chain: a gateway Envoy issuing Txn-Tokens, a workload
//! relaying the `Txn-Token` header, a sidecar Envoy enforcing it. Then an MCP
//! agent token: an Envoy running its MCP filter before cjwt, JSON-RPC tool calls
//! allowed and refused. Exits non-zero if any outcome differs from the expected one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// test and bench tooling: a failed setup stops loudly

// One line per demo request reads best with the arguments spelled out.
#![allow(clippy::too_many_arguments)]

use cjwt_harness::envoy;
use cjwt_harness::etcd::EtcdCluster;

use envoy::{Envoy, Options, Response};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://issuer.cjwt.example";

struct Demo {
    envoy: Envoy,
    failures: usize,
}

/// Runs the `cjwt` command line with `args` (printed as `shown`, so the commands
/// can be reused) and returns what it printed.
fn cjwt(args: &[&str], shown: &str) -> String {
    let cli = envoy::repo_root().join("target/release/cjwt");
    println!("  cjwt {shown}");
    let out = std::process::Command::new(&cli)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make run builds it)", cli.display()));
    if !out.status.success() {
        eprintln!("cjwt {} failed: {}", args.first().unwrap_or(&""), String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `cjwt mint` with the demo key and `args`.
fn mint(args: &[&str]) -> String {
    let key = envoy::repo_root().join("envoy/demo/demo-signing-key.pem").to_string_lossy().to_string();
    let common = ["--kid", "demo-1", "--iss", ISSUER, "--aud", "demo-api", "--sub", "alice", "--ttl", "15m"];
    let dir = demo_dir().to_string_lossy().to_string();
    let shown: Vec<String> =
        args.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.replace(&dir, "$DIR") }).collect();
    let mut all = vec!["mint", "--key", key.as_str()];
    all.extend(common);
    all.extend(args);
    cjwt(&all, &format!("mint --key envoy/demo/demo-signing-key.pem {} {}", common.join(" "), shown.join(" ")))
}

impl Demo {
    /// `cjwt mint` with the demo key and `args` (printed, so the commands can be reused).
    fn token(&self, args: &[&str]) -> String {
        mint(args)
    }

    /// Sends one request to the demo's Envoy and prints the outcome next to the expected one.
    fn show(
        &mut self,
        what: &str,
        source: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        expect: (u16, &str),
    ) {
        let ok = show_on(&self.envoy, what, source, method, path, token, extra, expect);
        if !ok {
            self.failures += 1;
        }
    }
}

/// Sends one request to `envoy` and prints the outcome next to the expected one;
/// whether it was the expected one.
fn show_on(
    envoy: &Envoy,
    what: &str,
    source: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    expect: (u16, &str),
) -> bool {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let before = envoy.upstream.count();
    let r: Response = envoy.request(source, method, path, &headers);
    let reached = envoy.upstream.count() > before;
    let outcome = match (r.status, r.reason()) {
        (200, _) => {
            let sub = envoy
                .upstream
                .last()
                .and_then(|x| x.header("x-cjwt-sub").map(str::to_owned))
                .unwrap_or_else(|| "-".into());
            format!("allowed   upstream saw x-cjwt-sub: {sub}")
        }
        (s, Some(reason)) => format!("refused   {s} {reason}"),
        (s, None) => format!("status {s}"),
    };
    let ok = r.status == expect.0
        && (expect.0 == 200 || r.reason().as_deref() == Some(expect.1))
        && reached == (expect.0 == 200);
    println!("{} {:<44} {:<6} {:<22} {:<10} {}", if ok { "ok " } else { "BAD" }, what, method, path, source, outcome);
    ok
}

fn main() {
    println!(
        "Starting Envoy {} with cjwt ({:?} build, {}) ...",
        envoy::envoy_binary().display(),
        envoy::build(),
        envoy::shipped_config()
    );
    let envoy = Envoy::try_start(None, Options::default()).unwrap_or_else(|log| {
        eprintln!("Envoy did not start:\n{log}");
        std::process::exit(1);
    });
    println!(
        "Envoy listens on 127.0.0.1:{}, admin on :{}, echo upstream on :{}\n",
        envoy.port, envoy.admin, envoy.upstream.port
    );
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut d = Demo { envoy, failures: 0 };
    let hhmm = |offset: i64| {
        let t = (now + offset).rem_euclid(86_400);
        format!("{:02}:{:02}", t / 3600, (t % 3600) / 60)
    };

    println!("Minting demo tokens with the cjwt command line:");
    let plain = d.token(&[]);
    let ip = d.token(&["--ip", "127.0.0.2/32"]);
    let methods = d.token(&["--methods", "GET,HEAD", "--paths", "/v1/orders/**"]);
    let (w_now, w_later) =
        (format!("{}-{} UTC", hhmm(-3600), hhmm(3600)), format!("{}-{} UTC", hhmm(7200), hhmm(10800)));
    let window_now = d.token(&["--window", &w_now]);
    let window_later = d.token(&["--window", &w_later]);
    let eu = d.token(&["--region", "eu-west-1"]);
    let us = d.token(&["--region", "us-east-1"]);
    let tenant = d.token(&["--constraint", "tenant=acme"]);
    let twice = d.token(&["--max-uses", "2"]);
    let admin = d.token(&["--roles", "admin"]);
    let expired = d.token(&["--claim", &format!("exp={}", now - 3600), "--claim", &format!("iat={}", now - 7200)]);
    let future = d.token(&["--claim", r#"cnst={"geo": ["eu"]}"#]);
    println!();
    let mut forged = plain.clone();
    forged.truncate(forged.rfind('.').unwrap_or(0));
    forged.push_str(".AAAA");

    println!("    {:<44} {:<6} {:<22} {:<10} outcome", "token", "method", "path", "from");
    d.show("no token, /healthz (rule: auth none)", "127.0.0.1", "GET", "/healthz", None, &[], (200, ""));
    d.show("no token", "127.0.0.1", "GET", "/v1/orders/7", None, &[], (401, "missing_token"));
    d.show(
        "valid, no constraints",
        "127.0.0.1",
        "GET",
        "/v1/orders/7",
        Some(&plain),
        &[("x-cjwt-sub", "mallory")],
        (200, ""),
    );
    d.show("forged signature", "127.0.0.1", "GET", "/v1/orders/7", Some(&forged), &[], (401, "bad_signature"));
    d.show("expired an hour ago", "127.0.0.1", "GET", "/v1/orders/7", Some(&expired), &[], (401, "expired"));
    d.show("ip: 127.0.0.2/32", "127.0.0.2", "GET", "/v1/orders/7", Some(&ip), &[], (200, ""));
    d.show("ip: 127.0.0.2/32", "127.0.0.3", "GET", "/v1/orders/7", Some(&ip), &[], (403, "ip"));
    d.show("methods GET,HEAD; paths /v1/orders/**", "127.0.0.1", "GET", "/v1/orders/7", Some(&methods), &[], (200, ""));
    d.show(
        "methods GET,HEAD; paths /v1/orders/**",
        "127.0.0.1",
        "DELETE",
        "/v1/orders/7",
        Some(&methods),
        &[],
        (403, "method"),
    );
    d.show(
        "methods GET,HEAD; paths /v1/orders/**",
        "127.0.0.1",
        "GET",
        "/v1/users/1",
        Some(&methods),
        &[],
        (403, "path"),
    );
    d.show("window: now +/- 1h UTC", "127.0.0.1", "GET", "/v1/orders/7", Some(&window_now), &[], (200, ""));
    d.show("window: in 2h to 3h UTC", "127.0.0.1", "GET", "/v1/orders/7", Some(&window_later), &[], (403, "window"));
    d.show("region eu-west-1 (Envoy node: eu-west-1)", "127.0.0.1", "GET", "/v1/orders/7", Some(&eu), &[], (200, ""));
    d.show(
        "region us-east-1 (Envoy node: eu-west-1)",
        "127.0.0.1",
        "GET",
        "/v1/orders/7",
        Some(&us),
        &[],
        (403, "region"),
    );
    d.show(
        "tenant acme, x-tenant-id: acme",
        "127.0.0.1",
        "GET",
        "/v1/orders/7",
        Some(&tenant),
        &[("x-tenant-id", "acme")],
        (200, ""),
    );
    d.show(
        "tenant acme, x-tenant-id: globex",
        "127.0.0.1",
        "GET",
        "/v1/orders/7",
        Some(&tenant),
        &[("x-tenant-id", "globex")],
        (403, "custom"),
    );
    d.show("max_uses 2 (use 1)", "127.0.0.1", "GET", "/v1/orders/7", Some(&twice), &[], (200, ""));
    d.show("max_uses 2 (use 2)", "127.0.0.1", "GET", "/v1/orders/7", Some(&twice), &[], (200, ""));
    d.show("max_uses 2 (use 3)", "127.0.0.1", "GET", "/v1/orders/7", Some(&twice), &[], (403, "max_uses"));
    d.show("no admin role, /admin (rule)", "127.0.0.1", "GET", "/admin/users", Some(&plain), &[], (403, "role"));
    d.show("roles [admin], /admin (rule)", "127.0.0.1", "GET", "/admin/users", Some(&admin), &[], (200, ""));
    d.show(
        "constraint cjwt does not know (geo)",
        "127.0.0.1",
        "GET",
        "/v1/orders/7",
        Some(&future),
        &[],
        (403, "unknown_constraint"),
    );

    let stats = d.envoy.stats();
    println!("\nEnvoy /stats (cjwt.*, non-zero):");
    for (name, value) in stats.iter().filter(|(_, v)| **v > 0) {
        println!("  {name}: {value}");
    }
    d.failures += v2();
    d.failures += v3();
    d.failures += mcp();
    if d.failures > 0 {
        eprintln!("\n{} outcome(s) differ from what was expected; Envoy log: {}", d.failures, d.envoy.dir.display());
        std::process::exit(1);
    }
    println!("\nAll outcomes as expected. Stopping the Envoys, their upstreams and etcd.");
}

/// The etcd cluster of `envoy` (`etcd`) has every member healthy: until then
/// Envoy has no host to ask and answers 503 `usage_unavailable`.
fn wait_store_healthy(envoy: &Envoy) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, clusters) = envoy.admin_get("/clusters");
        let flags: Vec<&str> =
            clusters.lines().filter(|l| l.starts_with("etcd::") && l.contains("::health_flags::")).collect();
        if !flags.is_empty() && flags.iter().all(|l| l.ends_with("::healthy")) {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("Envoy never saw etcd healthy:\n{clusters}");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Gateways a and b: the shipped plugin configuration plus DPoP, a deny-list
/// and `max_uses` counted in one local etcd. Returns how many outcomes differ
/// from the expected ones.
fn v2() -> usize {
    println!(
        "\nv2: gateways a and b, the same configuration plus DPoP (sender_constraints), a deny-list \
         (revocation) and max_uses counted in one local etcd (usage_store) ..."
    );
    let etcd = EtcdCluster::start(1);
    let mut plugin = envoy::shipped_plugin_config();
    plugin["sender_constraints"] = json!({"dpop": {}});
    plugin["revocation"] = json!({"jti": [{"iss": ISSUER, "jti": "demo-revoked"}]});
    plugin["usage_store"] = json!({"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 2000}});
    println!("  added to the plugin configuration:");
    for field in ["sender_constraints", "revocation", "usage_store"] {
        println!("    \"{field}\": {}", plugin[field]);
    }
    let text = serde_json::to_string_pretty(&plugin).unwrap();
    let start = || {
        let opts = Options { clusters: etcd.envoy_cluster("etcd"), ..Options::default() };
        Envoy::try_start(Some(&text), opts).unwrap_or_else(|log| {
            eprintln!("Envoy did not start:\n{log}");
            std::process::exit(1);
        })
    };
    let (a, b) = (start(), start());
    wait_store_healthy(&a);
    wait_store_healthy(&b);
    let (host, port) = etcd.endpoint(0);
    println!("Gateway a listens on 127.0.0.1:{}, gateway b on :{}, etcd on {host}:{port}\n", a.port, b.port);

    println!("Minting: a client key, a token bound to it and a proof for one request, a revoked token, a counted one:");
    let dir = demo_dir();
    let dir_text = dir.to_string_lossy().to_string();
    cjwt(
        &["keygen", "--alg", "ES256", "--kid", "holder", "--out", &dir_text],
        "keygen --alg ES256 --kid holder --out $DIR",
    );
    let holder = dir.join("holder.pem").to_string_lossy().to_string();
    let bound = mint(&["--bind-key", &holder]);
    let url = "http://api.example.com/v1/orders/7";
    let proof = cjwt(
        &["dpop", "--key", &holder, "--method", "GET", "--url", url, "--token", &bound],
        &format!("dpop --key $DIR/holder.pem --method GET --url {url} --token <the bound token>"),
    );
    let revoked = mint(&["--jti", "demo-revoked"]);
    let counted = mint(&["--max-uses", "2"]);
    remove_dir(&dir);
    println!();

    let dpop = format!("DPoP {bound}");
    let with_proof = [("authorization", dpop.as_str()), ("dpop", proof.as_str())];
    let o = "/v1/orders/7";
    let l = "127.0.0.1";
    println!("    {:<44} {:<6} {:<22} {:<10} outcome", "token (gateway)", "method", "path", "from");
    let outcomes = [
        show_on(&a, "DPoP-bound, with its proof (a)", l, "GET", o, None, &with_proof, (200, "")),
        show_on(&a, "DPoP-bound, the same proof again (a)", l, "GET", o, None, &with_proof, (401, "dpop_replay")),
        show_on(&a, "DPoP-bound, sent as Bearer, no proof (a)", l, "GET", o, Some(&bound), &[], (401, "dpop_required")),
        show_on(&a, "jti on the deny-list (a)", l, "GET", o, Some(&revoked), &[], (401, "revoked")),
        show_on(&a, "max_uses 2, counted in etcd: use 1 (a)", l, "GET", o, Some(&counted), &[], (200, "")),
        show_on(&b, "max_uses 2, counted in etcd: use 2 (b)", l, "GET", o, Some(&counted), &[], (200, "")),
        show_on(&a, "max_uses 2, counted in etcd: use 3 (a)", l, "GET", o, Some(&counted), &[], (403, "max_uses")),
        show_on(&b, "max_uses 2, counted in etcd: use 4 (b)", l, "GET", o, Some(&counted), &[], (403, "max_uses")),
    ];
    outcomes.iter().filter(|ok| !**ok).count()
}

/// The gateway's Txn-Token key variable (both builds read it from the environment).
const TXN_KEY_ENV: &str = "CJWT_DEMO_TXN_KEY";

/// One request through the Transaction Token chain (client → gateway →
/// workload → sidecar → service), printed as the others; whether the outcome
/// and where it stopped were the expected ones.
fn show_chain(
    entry: &Envoy,
    service: &Envoy,
    what: &str,
    source: &str,
    path: &str,
    headers: &[(&str, &str)],
    expect: (u16, &str),
) -> bool {
    let before = service.upstream.count();
    let r = entry.request(source, "GET", path, headers);
    let reached = service.upstream.count() > before;
    let outcome = match (r.status, r.reason()) {
        (200, _) => {
            let txn = service.upstream.last().and_then(|x| x.header("txn-token").map(str::to_owned));
            let sub = txn
                .as_deref()
                .and_then(|t| t.split('.').nth(1))
                .and_then(|p| cjwt_core::encoding::b64::decode(p.as_bytes()))
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
                .and_then(|p| p["sub"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".into());
            format!("allowed   the service saw a Txn-Token for sub: {sub}")
        }
        (s, Some(reason)) => format!("refused   {s} {reason}"),
        (s, None) => format!("status {s}"),
    };
    let ok = r.status == expect.0
        && (expect.0 == 200 || r.reason().as_deref() == Some(expect.1))
        && reached == (expect.0 == 200);
    println!("{} {:<44} {:<6} {:<22} {:<10} {}", if ok { "ok " } else { "BAD" }, what, "GET", path, source, outcome);
    ok
}

/// Transaction Tokens (SPEC §14): a gateway (the shipped configuration plus
/// `transaction_tokens.issue`), a workload that passes on `Txn-Token` only,
/// and a sidecar that requires one. Returns how many outcomes differ from the
/// expected ones.
fn v3() -> usize {
    use cjwt_core::keys::algorithm::Algorithm;
    println!(
        "\nv3: Transaction Tokens: a gateway issuing a Txn-Token for every request it allows, a workload \
         passing it on, a sidecar requiring it (trust domain demo.mesh) ..."
    );
    let key = cjwt_core::mint::SigningKey::generate(Algorithm::ES256).unwrap();
    let sidecar_cfg = json!({
        "providers": [{"name": "gateway", "kind": "txn_token", "trust_domain": "demo.mesh",
                       "jwks": {"keys": [key.public_jwk(Some("gw1"))]}}],
        "default_rule": {"auth": "txn_token", "require": {"req_wl": ["gateway.demo.mesh"]}}
    });
    let sidecar = Envoy::try_start(Some(&sidecar_cfg.to_string()), Options::default()).unwrap_or_else(|log| {
        eprintln!("Envoy did not start:\n{log}");
        std::process::exit(1);
    });
    let relay = envoy::Relay::start(sidecar.port);
    let mut plugin = envoy::shipped_plugin_config();
    plugin["transaction_tokens"] = json!({"issue": {"trust_domain": "demo.mesh", "workload": "gateway.demo.mesh",
        "scope": "demo", "key": {"env": TXN_KEY_ENV}, "kid": "gw1"}});
    println!(
        "  gateway, added to the plugin configuration:\n    \"transaction_tokens\": {}",
        plugin["transaction_tokens"]
    );
    println!("  sidecar: {sidecar_cfg}");
    let mut edits = vec![("route: { cluster: upstream }".to_string(), "route: { cluster: relay }".to_string())];
    if envoy::build() == envoy::Build::Wasm {
        // The wasm VM sees only the environment variables its vm_config names.
        edits.push((
            "runtime: envoy.wasm.runtime.v8".to_string(),
            format!("runtime: envoy.wasm.runtime.v8\n                  environment_variables: {{ host_env_keys: [{TXN_KEY_ENV}] }}"),
        ));
    }
    let opts = Options {
        edits,
        clusters: envoy::cluster("relay", relay.port),
        env: vec![(TXN_KEY_ENV.to_string(), key.to_pem().unwrap())],
        ..Options::default()
    };
    let gateway = Envoy::try_start(Some(&serde_json::to_string_pretty(&plugin).unwrap()), opts).unwrap_or_else(|log| {
        eprintln!("Envoy did not start:\n{log}");
        std::process::exit(1);
    });
    println!("Gateway on 127.0.0.1:{}, workload on :{}, sidecar on :{}\n", gateway.port, relay.port, sidecar.port);
    let ip = mint(&["--ip", "127.0.0.2/32"]);
    println!();
    let auth = format!("Bearer {ip}");
    let with = [("authorization", auth.as_str())];
    let o = "/v1/orders/7";
    println!("    {:<44} {:<6} {:<22} {:<10} outcome", "token (entry)", "method", "path", "from");
    let outcomes = [
        show_chain(&gateway, &sidecar, "ip 127.0.0.2/32, gateway then sidecar", "127.0.0.2", o, &with, (200, "")),
        show_chain(&gateway, &sidecar, "ip 127.0.0.2/32, gateway then sidecar", "127.0.0.3", o, &with, (403, "ip")),
        show_chain(
            &sidecar,
            &sidecar,
            "the external token straight to the sidecar",
            "127.0.0.2",
            o,
            &with,
            (401, "missing_txn_token"),
        ),
    ];
    outcomes.iter().filter(|ok| !**ok).count()
}

/// One JSON-RPC `tools/call` of `tool` with `arguments`, POSTed to `envoy`'s
/// `/mcp` with `token`, printed as the others; whether the outcome and whether
/// it reached the upstream were the expected ones.
fn show_tool_call(
    envoy: &Envoy,
    what: &str,
    token: &str,
    tool: &str,
    arguments: serde_json::Value,
    expect: (u16, &str),
) -> bool {
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
            .to_string();
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let before = envoy.upstream.count();
    let r = envoy::send_with_body("127.0.0.1", envoy.port, "POST", "/mcp", &headers, Some(body.as_bytes()));
    let reached = envoy.upstream.count() > before;
    let outcome = match (r.status, r.reason()) {
        (200, _) => {
            let sub = envoy
                .upstream
                .last()
                .and_then(|x| x.header("x-cjwt-sub").map(str::to_owned))
                .unwrap_or_else(|| "-".into());
            format!("allowed   upstream saw x-cjwt-sub: {sub}")
        }
        (s, Some(reason)) => format!("refused   {s} {reason}"),
        (s, None) => format!("status {s}"),
    };
    let ok = r.status == expect.0
        && (expect.0 == 200 || r.reason().as_deref() == Some(expect.1))
        && reached == (expect.0 == 200);
    println!(
        "{} {:<44} {:<6} {:<22} {:<10} {}",
        if ok { "ok " } else { "BAD" },
        what,
        "POST",
        "/mcp",
        "127.0.0.1",
        outcome
    );
    ok
}

/// MCP agent tokens (SPEC §15): an Envoy running the MCP filter, then cjwt (the
/// shipped configuration), in front of the echo upstream; an agent token's
/// `tools/call`s allowed and refused. Returns how many outcomes differ from the
/// expected ones.
fn mcp() -> usize {
    println!(
        "\nv3: an MCP agent token: Envoy's MCP filter (envoy.filters.http.mcp, request_storage_mode \
         DYNAMIC_METADATA_AND_FILTER_STATE) before cjwt, JSON-RPC POSTs to /mcp ..."
    );
    let edits = vec![cjwt_harness::mcp::filter_edit()];
    let envoy = Envoy::try_start(None, Options { edits, ..Options::default() }).unwrap_or_else(|log| {
        eprintln!("Envoy did not start:\n{log}");
        std::process::exit(1);
    });
    println!("Envoy with the MCP filter listens on 127.0.0.1:{}\n", envoy.port);
    let agent = mint(&["--mcp-tools", "get_order,search_orders", "--mcp-arg", "get_order.customer_id=42"]);
    println!();
    println!("    {:<44} {:<6} {:<22} {:<10} outcome", "token: tools/call (JSON-RPC body)", "method", "path", "from");
    let outcomes = [
        show_tool_call(
            &envoy,
            "mcp: get_order {customer_id: \"42\"}",
            &agent,
            "get_order",
            json!({"customer_id": "42"}),
            (200, ""),
        ),
        show_tool_call(
            &envoy,
            "mcp: delete_order {order_id: \"1\"}",
            &agent,
            "delete_order",
            json!({"order_id": "1"}),
            (403, "mcp_tool"),
        ),
        show_tool_call(
            &envoy,
            "mcp: get_order {customer_id: \"7\"}",
            &agent,
            "get_order",
            json!({"customer_id": "7"}),
            (403, "mcp_argument"),
        ),
    ];
    outcomes.iter().filter(|ok| !**ok).count()
}

/// Where the demo writes the client's key (removed once the tokens are minted).
fn demo_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cjwt-demo-{}", std::process::id()))
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
