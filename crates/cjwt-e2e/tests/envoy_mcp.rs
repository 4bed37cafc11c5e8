//! MCP agent tokens (SPEC §15) against the real thing, for the build under test
//! (`CJWT_BUILD=wasm|native`): Envoy's MCP filter before cjwt, in front of an MCP
//! server built with the official Python SDK (PyPI `mcp`, streamable HTTP;
//! `crates/cjwt-e2e/mcp/server.py`), driven by the same SDK's client
//! (`crates/cjwt-e2e/mcp/client.py`). The server logs every tool call it runs: a
//! refused call is proved never to have reached it.
//! Requires `make build` and `make mcp-tools` (the SDK in the project virtualenv).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::encoding::b64;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint;
use cjwt_harness::envoy::{cluster, repo_root, send_with_body, Envoy, Options};
use cjwt_harness::*;
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python SDK's MCP server on a claimed port, logging the tool calls it runs.
struct McpServer {
    child: Child,
    port: u16,
    calls: PathBuf,
    _claim: cjwt_harness::claim::Claim,
}

impl McpServer {
    fn start(name: &str) -> McpServer {
        let dir = scratch(&format!("mcp-{name}"));
        let calls = dir.join("calls.log");
        std::fs::write(&calls, "").unwrap();
        let (port, claim) = cjwt_harness::claim::port();
        let child = Command::new(python())
            .arg(repo_root().join("crates/cjwt-e2e/mcp/server.py"))
            .arg(port.to_string())
            .arg(&calls)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .expect("the MCP server (make mcp-tools)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the MCP server did not listen: {}", dir.join("server.log").display());
            std::thread::sleep(Duration::from_millis(100));
        }
        McpServer { child, port, calls, _claim: claim }
    }

    /// The tool calls the server ran, one `<tool> <arguments>` line each.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls).unwrap().lines().map(str::to_owned).collect()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// Envoy with cjwt (`plugin`), the MCP filter before it when `with_filter`, routing to `server`.
fn envoy(plugin: &Value, server: &McpServer, with_filter: bool) -> Envoy {
    let mut edits =
        vec![("route: { cluster: upstream }".to_string(), "route: { cluster: mcp, timeout: 0s }".to_string())];
    if with_filter {
        edits.push(cjwt_harness::mcp::filter_edit());
    }
    Envoy::start(plugin, Options { edits, clusters: cluster("mcp", server.port), ..Options::default() })
}

/// Runs the SDK client: initialize, then `steps`; one JSON value per step, then the HTTP log.
fn client(envoy: &Envoy, token: &str, proofs: Option<&[String]>, steps: &Value) -> (Vec<Value>, Vec<(String, u16)>) {
    let url = format!("http://127.0.0.1:{}/mcp", envoy.port);
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("crates/cjwt-e2e/mcp/client.py")).arg(&url).arg(steps.to_string()).env("MCP_TOKEN", token);
    if let Some(proofs) = proofs {
        let path = scratch(&format!("mcp-proofs-{}", envoy.port)).join("proofs.json");
        std::fs::write(&path, serde_json::to_string(proofs).unwrap()).unwrap();
        cmd.env("MCP_DPOP_PROOFS", path);
    }
    let out = cmd.output().expect("the MCP client (make mcp-tools)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let http = lines
        .pop()
        .filter(|l| l.get("http").is_some())
        .unwrap_or_else(|| panic!("client output: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    let http = http["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_u64().unwrap() as u16))
        .collect();
    (lines, http)
}

fn token(extra: Value) -> String {
    mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra))
}

fn agent_constraints() -> Value {
    json!({"mcp": {"tools": ["get_order", "search_orders"], "args": {"get_order": {"customer_id": ["42"]}}}, "max_uses": 20})
}

#[test]
fn an_agent_token_lists_and_calls_its_tools_and_nothing_else() {
    let server = McpServer::start("agent");
    let envoy = envoy(&config_json(json!({})), &server, true);
    let t = token(json!({"jti": "agent-1", "cnst": agent_constraints()}));
    let call = |tool: &str, args: Value| json!(["call", tool, args]);
    let mut steps = vec![
        json!(["list"]),
        json!(["ping"]),
        call("get_order", json!({"customer_id": "42"})),
        call("search_orders", json!({"query": "shoes"})),
        call("delete_order", json!({"order_id": "1"})),
        call("get_order", json!({"customer_id": "7"})),
    ];
    // 2 calls above count; 18 more reach max_uses (20), the 21st is refused.
    steps.extend((0..18).map(|i| call("get_order", json!({"customer_id": "42", "order_id": i.to_string()}))));
    steps.push(call("get_order", json!({"customer_id": "42", "order_id": "21st"})));
    let (results, http) = client(&envoy, &t, None, &Value::Array(steps));
    let summary: Vec<(bool, Option<u64>)> = results.iter().map(|r| (r["ok"] == true, r["status"].as_u64())).collect();
    assert_eq!(results[0]["step"], "initialize", "{results:?}");
    assert_eq!(summary[0], (true, Some(200)), "initialize works for an agent token: {results:?}");
    assert_eq!(results[1]["result"], json!(["delete_order", "get_order", "search_orders"]), "tools/list is allowed");
    assert!(summary[2].0, "ping: {:?}", results[2]);
    assert!(summary[3].0 && summary[4].0, "the two tools: {results:?}");
    assert_eq!(summary[5], (false, Some(403)), "a third tool is refused: {:?}", results[5]);
    assert_eq!(summary[6], (false, Some(403)), "an argument outside the allowed values: {:?}", results[6]);
    for (i, r) in summary.iter().enumerate().skip(7).take(18) {
        assert_eq!(*r, (true, Some(200)), "call {i}: {:?}", results[i]);
    }
    assert_eq!(summary[25], (false, Some(403)), "the 21st call: {:?}", results[25]);
    // The server saw the 20 allowed calls, and nothing refused.
    let calls = server.calls();
    assert_eq!(calls.len(), 20, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| !c.starts_with("delete_order") && !c.contains(r#""customer_id": "7""#) && !c.contains("21st")),
        "{calls:?}"
    );
    assert_eq!(envoy.stat("cjwt.denied.mcp_tool"), 1);
    assert_eq!(envoy.stat("cjwt.denied.mcp_argument"), 1);
    assert_eq!(envoy.stat("cjwt.denied.max_uses"), 1);
    // Every POST but the three refused was let through (initialize and the
    // initialized notification of each session included).
    let refused_posts = http.iter().filter(|(m, s)| m == "POST" && *s == 403).count();
    assert_eq!(refused_posts, 3, "{http:?}");
    assert!(http.iter().all(|(m, s)| m != "POST" || [200, 202, 403].contains(s)), "{http:?}");
    // The SDK's GET stream and its DELETE at the end of a session carry no JSON-RPC
    // message: refused (mcp_not_parsed), which the SDK tolerates.
    assert!(http.iter().filter(|(m, _)| m != "POST").all(|(_, s)| *s == 403), "{http:?}");
}

#[test]
fn without_the_mcp_filter_or_for_a_batch_an_mcp_token_is_refused() {
    let server = McpServer::start("fail-closed");
    let t = token(json!({"jti": "agent-2", "cnst": agent_constraints()}));
    // No MCP filter (missing, or after cjwt: the same to cjwt): nothing is let through.
    let bare = envoy(&config_json(json!({})), &server, false);
    let (results, _) = client(&bare, &t, None, &json!([["call", "get_order", {"customer_id": "42"}]]));
    assert_eq!((results[0]["ok"].as_bool(), results[0]["status"].as_u64()), (Some(false), Some(403)), "{results:?}");
    assert!(bare.stat("cjwt.denied.mcp_not_parsed") >= 1);
    assert_eq!(bare.stat("cjwt.allowed"), 0);
    // With the filter: a body past its size limit, a JSON-RPC batch, a non-JSON-RPC body,
    // a misspelt method and a tool name with a NUL.
    let envoy = envoy(&config_json(json!({})), &server, true);
    let auth = format!("Bearer {t}");
    let post = |body: &str| {
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        send_with_body("127.0.0.1", envoy.port, "POST", "/mcp", &headers, Some(body.as_bytes()))
    };
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","arguments":{"customer_id":"42"}}}"#;
    // Past the filter's size limit (8 KiB) it passes on a parse of the first bytes: the
    // second `name`, the one the server would take, was never seen.
    let pad = "x".repeat(9000);
    let smuggled = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"get_order","pad":"{pad}","name":"delete_order"}}}}"#
    );
    let cases = [
        (smuggled, "mcp_not_parsed"),
        (format!("[{call},{call}]"), "mcp_not_parsed"),
        (r#"{"hello":"world"}"#.to_string(), "mcp_not_parsed"),
        (r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"get_order"}}"#.to_string(), "mcp_method"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order\u0000"}}"#.to_string(),
            "mcp_tool",
        ),
    ];
    for (body, reason) in &cases {
        let r = post(body);
        assert_eq!((r.status, r.reason().as_deref()), (403, Some(*reason)), "{body}: {}", r.body);
    }
    assert!(server.calls().is_empty(), "{:?}", server.calls());
}

/// A DPoP proof key (P-256), signing with the p256 crate directly.
fn proof(key: &p256::ecdsa::SigningKey, url: &str, token: &str, n: usize) -> String {
    let p = key.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64::encode(p.x().unwrap()), "y": b64::encode(p.y().unwrap())});
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let ath = b64::encode(&Sha256::digest(token.as_bytes()));
    let claims =
        json!({"htm": "POST", "htu": url, "iat": now(), "jti": format!("mcp-{}-{n}", std::process::id()), "ath": ath});
    let input =
        format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

#[test]
fn a_dpop_bound_agent_token_works_end_to_end() {
    let server = McpServer::start("dpop");
    let plugin = {
        let mut c = config_json(json!({}));
        c["sender_constraints"] = json!({"dpop": {"algorithms": ["ES256"]}});
        c
    };
    let envoy = envoy(&plugin, &server, true);
    let holder = p256::ecdsa::SigningKey::from_slice(&[21u8; 32]).unwrap();
    let p = holder.verifying_key().to_encoded_point(false);
    let jkt = b64::encode(&Sha256::digest(
        format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64::encode(p.x().unwrap()),
            b64::encode(p.y().unwrap())
        )
        .as_bytes(),
    ));
    let t = token(json!({"jti": "agent-3", "cnf": {"jkt": jkt}, "cnst": agent_constraints()}));
    let url = format!("http://127.0.0.1:{}/mcp", envoy.port);
    let proofs: Vec<String> = (0..16).map(|n| proof(&holder, &url, &t, n)).collect();
    let steps =
        json!([["list"], ["call", "get_order", {"customer_id": "42"}], ["call", "delete_order", {"order_id": "1"}]]);
    let (results, _) = client(&envoy, &t, Some(&proofs), &steps);
    let ok: Vec<bool> = results.iter().map(|r| r["ok"] == true).collect();
    assert_eq!(ok, vec![true, true, true, false], "{results:?}");
    assert_eq!(results[3]["status"].as_u64(), Some(403));
    assert_eq!(server.calls().len(), 1, "{:?}", server.calls());
    // The same token without its proofs is refused before MCP is looked at.
    let (results, _) = client(&envoy, &t, None, &json!([]));
    assert_eq!((results[0]["ok"].as_bool(), results[0]["status"].as_u64()), (Some(false), Some(401)), "{results:?}");
}

#[test]
fn a_401_leads_the_sdk_to_the_protected_resource_metadata() {
    let server = McpServer::start("discovery");
    let plugin = config_json(json!({"protected_resource": {
        "resource": "https://mcp.example.com/mcp",
        "authorization_servers": ["https://idp.example.com"],
        "scopes_supported": ["orders:read"],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA"]
    }}));
    let envoy = envoy(&plugin, &server, true);
    let out = Command::new(python())
        .arg(repo_root().join("crates/cjwt-e2e/mcp/discover.py"))
        .arg(format!("http://127.0.0.1:{}/mcp", envoy.port))
        .output()
        .expect("the discovery script (make mcp-tools)");
    let line: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["resource_metadata"], url, "{line}");
    assert_eq!(line["www_authenticate"], format!("Bearer realm=\"cjwt\", resource_metadata=\"{url}\""));
    let doc = &line["document"];
    assert_eq!(doc["resource"], "https://mcp.example.com/mcp", "{line}");
    assert_eq!(doc["authorization_servers"], json!(["https://idp.example.com/"]), "the SDK's URL form: {line}");
    assert_eq!(doc["scopes_supported"], json!(["orders:read"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA"]));
    assert!(server.calls().is_empty());
    assert_eq!(envoy.stat("cjwt.allowed"), 0, "the document is served by cjwt, not let through");
}
