//! Holder attenuation (SPEC §16) through a real Envoy, for the build under
//! test (`CJWT_BUILD=wasm|native`): a root token bound to a holder key, links
//! derived offline as `cjwt attenuate` derives them (`chain::mint::attenuate`),
//! forged links where a test needs one `attenuate` refuses to sign, and the
//! leaf's DPoP proof. Envoy's MCP filter parses the tool calls the chain
//! narrows. Requires `make build` and the project virtualenv (`make envoy`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::chain::mint::{attenuate, split, LinkSpec};
use cjwt_core::encoding::b64;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::{dpop_proof, jkt, mint, mint_raw, SigningKey};
use cjwt_harness::envoy::{send_with_body, Envoy, Options};
use cjwt_harness::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn holder(n: u8) -> SigningKey {
    SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[n; 32]).unwrap())
}

fn config(extra: Value) -> Value {
    let mut cfg = config_json(extra);
    cfg["sender_constraints"] = json!({"dpop": {"algorithms": ["ES256", "EdDSA"]}});
    cfg["clock_skew_seconds"] = json!(0);
    cfg
}

fn root(cnst: Value) -> String {
    let extra =
        json!({"jti": format!("root-{}", std::process::id()), "cnf": {"jkt": jkt(&holder(1)).unwrap()}, "cnst": cnst});
    mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra))
}

/// `credential` with a link signed by holder `n`, binding holder `n + 1`, for
/// `ttl` seconds but never past its parent's `exp` (a parent made in an earlier
/// second with the same lifetime ends a second sooner).
fn link(credential: &str, n: u8, ttl: i64, cnst: Value) -> String {
    let parent = credential.rsplit('~').next().unwrap();
    let claims: Value =
        serde_json::from_slice(&b64::decode(parent.split('.').nth(1).unwrap().as_bytes()).unwrap()).unwrap();
    let now = now();
    let spec = LinkSpec {
        jti: format!("link-{n}-{}", std::process::id()),
        iat: now,
        exp: (now + ttl).min(claims["exp"].as_i64().unwrap()),
        constraints: (!cnst.is_null()).then_some(cnst),
        next_jkt: jkt(&holder(n + 1)).unwrap(),
    };
    attenuate(&holder(n), credential, &spec, "cnst", &[]).unwrap()
}

fn proof_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

/// The headers of a request with `credential` (root under `DPoP`, links in
/// `cjwt-chain`) and a proof by `prover` for `method` `path`.
fn headers(credential: &str, prover: &SigningKey, method: &str, path: &str) -> Vec<(String, String)> {
    let (root, links) = split(credential);
    let url = format!("http://api.example.com{path}");
    let proof = dpop_proof(prover, method, &url, Some(root), now(), &proof_id(), None).unwrap();
    let mut h = vec![("authorization".to_string(), format!("DPoP {root}")), ("dpop".to_string(), proof)];
    if let Some(links) = links {
        h.push(("cjwt-chain".to_string(), links.to_string()));
    }
    h
}

fn call(envoy: &Envoy, credential: &str, prover: &SigningKey, tool: &str) -> envoy::Response {
    let mut h = headers(credential, prover, "POST", "/mcp");
    h.push(("content-type".into(), "application/json".into()));
    h.push(("accept".into(), "application/json, text/event-stream".into()));
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    send_with_body("127.0.0.1", envoy.port, "POST", "/mcp", &h, Some(body.to_string().as_bytes()))
}

fn get(envoy: &Envoy, credential: &str, prover: &SigningKey) -> envoy::Response {
    let h = headers(credential, prover, "GET", "/v1/orders");
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    envoy.get("/v1/orders", &h)
}

fn outcome(r: &envoy::Response) -> (u16, Option<String>) {
    (r.status, r.reason())
}

/// Three links narrow tools, uses and time: each holder passes on less, the
/// leaf's calls count at every level, and the leaf's short life ends its chain
/// while the shorter chains above it still work within what they have left.
#[test]
fn a_three_link_chain_across_tools_uses_and_time() {
    // Envoy's MCP filter before cjwt, as the MCP suite and the demo put it.
    let edits = vec![cjwt_harness::mcp::filter_edit()];
    let envoy = Envoy::start(&config(json!({})), Options { edits, ..Options::default() });
    let r = root(json!({"mcp": {"tools": ["get_order", "search_orders", "delete_order"]}, "max_uses": 10}));
    let one = link(&r, 1, 300, json!({"mcp": {"tools": ["get_order", "search_orders"]}, "max_uses": 5}));
    let two = link(&one, 2, 300, json!({"mcp": {"tools": ["get_order"]}, "max_uses": 3}));
    let three = link(&two, 3, 4, json!({"max_uses": 2}));
    let leaf = holder(4);
    let ok = (200, None);
    assert_eq!(outcome(&call(&envoy, &three, &leaf, "get_order")), ok);
    // Tools the chain dropped: refused, nothing counted.
    assert_eq!(outcome(&call(&envoy, &three, &leaf, "search_orders")), (403, Some("mcp_tool".into())));
    assert_eq!(outcome(&call(&envoy, &three, &leaf, "delete_order")), (403, Some("mcp_tool".into())));
    assert_eq!(outcome(&call(&envoy, &three, &leaf, "get_order")), ok);
    // The leaf's two uses are spent.
    assert_eq!(outcome(&call(&envoy, &three, &leaf, "get_order")), (403, Some("max_uses".into())));
    // Link 2 has one use left (the leaf spent two of its three).
    assert_eq!(outcome(&call(&envoy, &two, &holder(3), "get_order")), ok);
    assert_eq!(outcome(&call(&envoy, &two, &holder(3), "get_order")), (403, Some("max_uses".into())));
    // Link 1 allows search_orders, and has 2 of its 5 left.
    assert_eq!(outcome(&call(&envoy, &one, &holder(2), "search_orders")), ok);
    assert_eq!(outcome(&call(&envoy, &one, &holder(2), "delete_order")), (403, Some("mcp_tool".into())));
    assert_eq!(outcome(&call(&envoy, &one, &holder(2), "get_order")), ok);
    assert_eq!(outcome(&call(&envoy, &one, &holder(2), "get_order")), (403, Some("max_uses".into())));
    // The root's holder: 5 of 10 spent through the chain; delete_order is still its own.
    assert_eq!(outcome(&call(&envoy, &r, &holder(1), "delete_order")), ok);
    // Time: the leaf's link lives 4 s.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(outcome(&call(&envoy, &three, &leaf, "get_order")), (401, Some("chain_expired".into())));
    assert_eq!(envoy.upstream.count(), 6, "only the allowed calls went upstream");
    assert_eq!(envoy.stat("cjwt.denied.chain_expired"), 1);
    assert_eq!(envoy.stat("cjwt.denied.max_uses"), 3);
}

/// A link signed by hand: `signer` signs `claims` under `header`.
fn forged(signer: &SigningKey, header: Value, claims: Value) -> String {
    mint_raw(signer, &header.to_string(), &claims.to_string())
}

fn link_header(signer: &SigningKey) -> Value {
    json!({"typ": "cjwt-link+jwt", "alg": signer.alg().name(), "jwk": signer.public_jwk(None)})
}

/// The claims of a first link under `root`, with `extra` laid over (a `null` removes a member).
fn link_claims(root: &str, extra: Value) -> Value {
    let input = &root[..root.rfind('.').unwrap()];
    let mut c = json!({
        "iss": jkt(&holder(1)).unwrap(), "jti": format!("forged-{}", proof_id()), "iat": now(), "exp": now() + 300,
        "par_hash": b64::encode(&Sha256::digest(input.as_bytes())), "del_depth": 1,
        "cnf": {"jkt": jkt(&holder(2)).unwrap()}
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

/// Every refusal of a chain, with its own reason, its status and challenge,
/// in both builds alike; none reaches the upstream.
#[test]
fn every_chain_refusal_has_its_own_reason() {
    let revoked_jti = format!("revoked-{}", std::process::id());
    let envoy = Envoy::start(
        &config(json!({
            "attenuation": {"max_depth": 2, "max_bytes": 2048},
            "revocation": {"jti": [{"iss": "https://idp.example.com", "jti": revoked_jti}]}
        })),
        Options::default(),
    );
    let r = root(json!({"methods": ["GET"]}));
    let h1 = holder(1);
    let with = |link: &str| format!("{r}~{link}");
    let good = forged(&h1, link_header(&h1), link_claims(&r, json!({})));
    let resp = get(&envoy, &with(&good), &holder(2));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(
        envoy.upstream.last().unwrap().header("cjwt-chain").is_some(),
        "the chain goes upstream as sent (cjwt removes only the credential it reads, when configured)"
    );

    // One character inside the signature changed (all its six bits are the
    // signature's: the last one's low bits are padding, which a strict decoder
    // refuses as malformed rather than as a wrong signature).
    let mut bad_sig = good.clone().into_bytes();
    let at = bad_sig.len() - 10;
    bad_sig[at] = if bad_sig[at] == b'A' { b'B' } else { b'A' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
    let stranger = holder(9);
    let other_root = root(json!({"methods": ["GET", "POST"]}));
    let deep = link(&link(&link(&r, 1, 300, json!({})), 2, 300, json!({})), 3, 300, json!({}));
    let cases: Vec<(&str, String, SigningKey, u16, &str)> = vec![
        ("broken signature", with(&bad_sig), holder(2), 401, "chain_signature"),
        (
            "signed by another key",
            with(&forged(&stranger, link_header(&stranger), link_claims(&r, json!({"iss": jkt(&stranger).unwrap()})))),
            holder(2),
            401,
            "chain_key",
        ),
        (
            "the bound key's jwk, another key's signature",
            with(&forged(&stranger, link_header(&h1), link_claims(&r, json!({})))),
            holder(2),
            401,
            "chain_signature",
        ),
        (
            "spliced from another root",
            with(&forged(&h1, link_header(&h1), link_claims(&other_root, json!({})))),
            holder(2),
            401,
            "chain_parent",
        ),
        (
            "widens methods",
            with(&forged(&h1, link_header(&h1), link_claims(&r, json!({"cnst": {"methods": ["GET", "POST"]}})))),
            holder(2),
            401,
            "chain_widens",
        ),
        (
            "outlives its parent",
            with(&forged(&h1, link_header(&h1), link_claims(&r, json!({"exp": now() + 7200})))),
            holder(2),
            401,
            "chain_widens",
        ),
        (
            "expired",
            with(&forged(&h1, link_header(&h1), link_claims(&r, json!({"iat": now() - 600, "exp": now() - 60})))),
            holder(2),
            401,
            "chain_expired",
        ),
        (
            "no cnf",
            with(&forged(&h1, link_header(&h1), link_claims(&r, json!({"cnf": null})))),
            holder(2),
            401,
            "chain_malformed",
        ),
        ("three links, max_depth 2", deep, holder(4), 401, "chain_depth"),
        ("larger than max_bytes", with(&format!("{good}~{}", "A".repeat(2100))), holder(2), 401, "chain_size"),
        (
            "a revoked link",
            with(&forged(&h1, link_header(&h1), link_claims(&r, json!({"jti": revoked_jti})))),
            holder(2),
            401,
            "revoked",
        ),
        ("a proof by the root's holder, not the leaf's", with(&good), holder(1), 401, "dpop_key_mismatch"),
        ("a proof by a stranger", with(&good), holder(9), 401, "dpop_key_mismatch"),
    ];
    for (name, credential, prover, status, reason) in &cases {
        let resp = get(&envoy, credential, prover);
        assert_eq!(outcome(&resp), (*status, Some(reason.to_string())), "case: {name}: {}", resp.body);
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains(&format!("error_description=\"{reason}\"")), "case: {name}: {challenge}");
    }
    // No proof at all: the leaf must prove possession.
    let full = with(&good);
    let (root_text, links) = split(&full);
    let resp =
        envoy.get("/v1/orders", &[("authorization", &format!("DPoP {root_text}")), ("cjwt-chain", links.unwrap())]);
    assert_eq!(outcome(&resp), (401, Some("invalid_dpop_proof".into())));
    // The root's constraints still hold under a chain that adds none.
    let h = headers(&with(&good), &holder(2), "DELETE", "/v1/orders");
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let resp = cjwt_harness::envoy::send("127.0.0.1", envoy.port, "DELETE", "/v1/orders", &h);
    assert_eq!(outcome(&resp), (403, Some("method".into())));
    assert_eq!(envoy.upstream.count(), 1, "only the good chain went upstream");
    for (_, _, _, _, reason) in &cases {
        assert!(envoy.stat(&format!("cjwt.denied.{reason}")) >= 1, "{reason} counted");
    }
}

/// Issue 29, decision 117: with a mesh-wide `usage_store`, a chain whose root
/// and link both have `max_uses` counts each level in etcd. Two Envoys (one
/// on etcd's gRPC API, one on its JSON gateway) share one etcd: the link's 3
/// uses hold across both, also under a concurrent burst; each accepted request
/// counted one use of the link's key and one of the root's, and a refused one
/// none of the root's (the link, counted first, was exhausted).
#[test]
fn two_counting_levels_are_counted_mesh_wide() {
    use cjwt_core::usage::UsageId;
    use cjwt_harness::said;
    use std::time::Duration;
    let etcd = cjwt_harness::etcd::EtcdCluster::start(1);
    let replica = |api: &str, clusters: String| {
        let store = json!({"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 2000, "api": api}});
        let envoy = Envoy::start(
            &config(json!({"usage_store": store})),
            Options { concurrency: 2, clusters, ..Options::default() },
        );
        said::wait_until("the etcd members healthy in Envoy", Duration::from_secs(10), || {
            let (_, clusters) = envoy.admin_get("/clusters");
            let flags: Vec<&str> =
                clusters.lines().filter(|l| l.starts_with("etcd::") && l.contains("::health_flags::")).collect();
            !flags.is_empty() && flags.iter().all(|l| l.ends_with("::healthy"))
        });
        envoy
    };
    let (a, b) = (replica("grpc", etcd.envoy_cluster("etcd")), replica("json", etcd.envoy_cluster_json("etcd")));
    let r = root(json!({"max_uses": 10}));
    let one = link(&r, 1, 300, json!({"max_uses": 3}));
    let helper = holder(2);
    // The store keys: the root's (iss, jti), the link's (iss, hash of its signing input).
    let iss = claims_at(now(), json!({}))["iss"].as_str().unwrap().to_string();
    let root_key = format!("cjwt/uses/{}", UsageId::new(&iss, &format!("root-{}", std::process::id())).hex());
    let text = one.split('~').nth(1).unwrap();
    let input = &text[..text.rfind('.').unwrap()];
    let link_name = format!("link:{}", b64::encode(&Sha256::digest(input.as_bytes())));
    let link_key = format!("cjwt/uses/{}", UsageId::new(&iss, &link_name).hex());
    let version = |key: &str| {
        let keys = etcd.keys_under(b"cjwt/uses/");
        keys.iter().find(|(k, _, _)| k == key.as_bytes()).map_or(0, |(_, v, lease)| {
            assert!(*lease > 0, "{key} is leased");
            *v
        })
    };
    // One use through each Envoy.
    assert_eq!(outcome(&get(&a, &one, &helper)), (200, None));
    assert_eq!(outcome(&get(&b, &one, &helper)), (200, None));
    assert_eq!((version(&link_key), version(&root_key)), (2, 2), "each level counted once per request");
    // A burst of 8 to both at once: the link's last use goes to exactly one.
    let requests: Vec<(u16, Vec<(String, String)>)> =
        (0..8).map(|i| ([a.port, b.port][i % 2], headers(&one, &helper, "GET", "/v1/orders"))).collect();
    let threads: Vec<_> = requests
        .into_iter()
        .map(|(port, h)| {
            std::thread::spawn(move || {
                let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                let r = envoy::send("127.0.0.1", port, "GET", "/v1/orders", &h);
                (r.status, r.reason())
            })
        })
        .collect();
    let said: Vec<said::Said> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(said::count(&said, 200, None), 1, "{:?}", said::tally(&said));
    assert_eq!(said::count(&said, 403, Some("max_uses")), 7, "{:?}", said::tally(&said));
    assert_eq!((version(&link_key), version(&root_key)), (3, 3), "the root counts only what the link let through");
    // Spent on both Envoys; the root's holder still has 7 of its 10.
    assert_eq!(outcome(&get(&a, &one, &helper)), (403, Some("max_uses".into())));
    assert_eq!(outcome(&get(&b, &one, &helper)), (403, Some("max_uses".into())));
    assert_eq!(outcome(&get(&b, &r, &holder(1))), (200, None));
    assert_eq!(version(&root_key), 4);
    assert_eq!(a.upstream.count() + b.upstream.count(), 4, "only the allowed requests went upstream");
    assert_eq!(a.stat("cjwt.usage_store.failed") + b.stat("cjwt.usage_store.failed"), 0);
}

/// SEC-16.12: a root bound by `cnf.jwk` (the holder's public key itself)
/// starts a chain as one bound by `cnf.jkt`; a `cnf.jwk` carrying a private
/// key, or beside a `cnf.jkt` naming another key, binds nothing: 401
/// `unsupported_binding`, never forwarded.
#[test]
fn a_root_bound_by_cnf_jwk_and_its_forgeries() {
    let envoy = Envoy::start(&config(json!({})), Options::default());
    let root_with = |cnf: Value| {
        let extra =
            json!({"jti": format!("root-jwk-{}", std::process::id()), "cnf": cnf, "cnst": {"methods": ["GET"]}});
        mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra))
    };
    let r = root_with(json!({"jwk": holder(1).public_jwk(None)}));
    let one = link(&r, 1, 300, json!({"paths": ["/v1/**"]}));
    assert_eq!(outcome(&get(&envoy, &one, &holder(2))), (200, None));
    assert_eq!(outcome(&get(&envoy, &r, &holder(1))), (200, None));
    let mut private = holder(1).public_jwk(None);
    private["d"] = json!(b64::encode(&[1u8; 32]));
    let before = envoy.upstream.count();
    for cnf in [json!({"jwk": private}), json!({"jwk": holder(1).public_jwk(None), "jkt": jkt(&holder(4)).unwrap()})] {
        let forged = root_with(cnf.clone());
        assert_eq!(outcome(&get(&envoy, &forged, &holder(1))), (401, Some("unsupported_binding".into())), "{cnf}");
    }
    assert_eq!(envoy.upstream.count(), before, "a refused request reached the upstream");
}
