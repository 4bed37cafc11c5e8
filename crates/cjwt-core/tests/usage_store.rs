//! The mesh-wide usage count (SPEC §8 v2) as the core decides it: with
//! `usage_store`, a request allowed but for its use waits for the store
//! (`pending_use`), and [`settle`] turns the store's answer into the decision;
//! nothing is counted locally, nothing but an allowed request waits, and an
//! outcome nobody settled is never forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::{settle, Decision, Engine, Outcome};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint;
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::{plan, Act};
use cjwt_core::reason::Reason;
use cjwt_core::testing::*;
use cjwt_core::usage::etcd::{Step, UseAnswer};
use serde_json::{json, Value};

fn store() -> Value {
    // The JSON gateway (the fallback): these tests read its JSON bodies; the
    // gRPC encodings are tested in usage::grpc, the default in lifecycle.rs.
    json!({"etcd": {"cluster": "etcd", "authority": "etcd", "key_prefix": "mesh/uses/", "timeout_ms": 300, "api": "json"}})
}

fn engine(extra: Value) -> Engine {
    let mut cfg = config_json(extra);
    cfg["usage_store"] = store();
    Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap())
}

fn token(extra: Value) -> String {
    mint(key(Algorithm::EdDSA), Some("k1"), &claims(extra))
}

fn decide(e: &mut Engine, host: &StaticHost) -> Outcome {
    cjwt_core::testing::decide_inline(e, host)
}

#[test]
fn only_an_allowed_request_with_max_uses_waits_and_nothing_is_counted_here() {
    let mut e = engine(json!({}));
    let once = token(json!({"jti": "j1", "cnst": {"max_uses": 1, "methods": ["GET"]}}));
    // Every decision of a max_uses token waits: the count is the store's, not this Envoy's.
    for _ in 0..3 {
        let o = decide(&mut e, &StaticHost::get("/x").bearer(&once));
        assert!(matches!(o.decision, Decision::Allow { .. }), "{:?}", o.decision);
        let call = o.pending_use.expect("waits for the store");
        assert_eq!(call.first().path, "/v3/kv/txn");
        let body: Value = serde_json::from_slice(&call.first().body).unwrap();
        assert_eq!(body["failure"][0]["requestTxn"]["compare"][0]["version"], "1");
    }
    // Refused for another reason: nothing to count, nothing waits.
    let o = decide(&mut e, &StaticHost::request("POST", "/x").bearer(&once));
    assert!(matches!(o.decision, Decision::Deny(ref d) if d.reason == Reason::Method));
    assert!(o.pending_use.is_none());
    // No max_uses: decided at once.
    let plain = decide(&mut e, &StaticHost::get("/x").bearer(&token(json!({}))));
    assert!(matches!(plain.decision, Decision::Allow { .. }) && plain.pending_use.is_none());
}

#[test]
fn a_token_no_lease_can_cover_is_refused_not_uncounted() {
    let mut e = engine(json!({"require_expiration": false}));
    let forever = token(json!({"jti": "j1", "exp": null, "cnst": {"max_uses": 3}}));
    let o = decide(&mut e, &StaticHost::get("/x").bearer(&forever));
    assert!(matches!(o.decision, Decision::Deny(ref d) if d.reason == Reason::MaxUses), "{:?}", o.decision);
    assert!(o.pending_use.is_none());
}

/// (mode, store answer, want: None = forwarded as allowed, Some(reason) with the
/// status and whether it is forwarded anyway (dry run), store counter)
#[test]
fn the_store_answer_decides() {
    type Case = (&'static str, UseAnswer, Option<(Reason, u32, bool)>, Counter);
    let cases: Vec<Case> = vec![
        ("enforce", UseAnswer::Counted, None, Counter::UsageStoreOk),
        ("enforce", UseAnswer::Exhausted, Some((Reason::MaxUses, 403, false)), Counter::UsageStoreOk),
        (
            "enforce",
            UseAnswer::Unavailable("timeout".into()),
            Some((Reason::UsageUnavailable, 503, false)),
            Counter::UsageStoreFailed,
        ),
        ("dry_run", UseAnswer::Counted, None, Counter::UsageStoreOk),
        ("dry_run", UseAnswer::Exhausted, Some((Reason::MaxUses, 403, true)), Counter::UsageStoreOk),
        (
            "dry_run",
            UseAnswer::Unavailable("reset".into()),
            Some((Reason::UsageUnavailable, 503, true)),
            Counter::UsageStoreFailed,
        ),
    ];
    let t = token(json!({"jti": "j1", "cnst": {"max_uses": 2}}));
    for (mode, answer, want, store_counter) in cases {
        let mut e = engine(json!({"mode": mode}));
        let host = StaticHost::get("/x").bearer(&t);
        let o = decide(&mut e, &host);
        assert!(o.pending_use.is_some());
        let o = settle(e.config().mode(), o, &answer);
        assert!(o.pending_use.is_none());
        let p = plan(e.config(), &o, &host);
        assert!(p.counters.contains(&store_counter), "{mode} {answer:?}: {:?}", p.counters);
        let reason = p.audit.iter().find(|(f, _)| *f == "reason").map(|(_, v)| v.clone()).unwrap();
        match (want, &p.act) {
            (None, Act::Forward(_)) => {
                assert_eq!(reason, "allowed");
                assert!(p.counters.contains(&Counter::Allowed));
            }
            (Some((r, _, true)), Act::Forward(_)) => {
                assert_eq!(reason, r.code(), "{mode} {answer:?}");
                assert!(p.counters.contains(&Counter::DryRunDenied(r)));
            }
            (Some((r, status, false)), Act::Refuse(refusal)) => {
                assert_eq!((refusal.status, reason.as_str()), (status, r.code()), "{mode} {answer:?}");
                assert!(p.counters.contains(&Counter::DeniedBy(r)));
                assert!(refusal.body.contains(r.code()));
            }
            (want, act) => panic!("{mode} {answer:?}: want {want:?}, got {act:?}"),
        }
    }
}

#[test]
fn an_outcome_nobody_settled_is_never_forwarded() {
    let mut e = engine(json!({}));
    let host = StaticHost::get("/x").bearer(&token(json!({"jti": "j1", "cnst": {"max_uses": 1}})));
    let o = decide(&mut e, &host);
    assert!(matches!(o.decision, Decision::Allow { .. }) && o.pending_use.is_some());
    match plan(e.config(), &o, &host).act {
        Act::Refuse(r) => assert_eq!((r.status, r.body.contains("usage_unavailable")), (503, true)),
        Act::Forward(_) => panic!("forwarded without the store's answer"),
    }
}

/// The same (`iss`, `jti`) in two tokens (re-minted, or re-encoded signatures)
/// is one key in the store; another `jti` is another key.
#[test]
fn the_store_key_is_the_token_identity() {
    let mut e = engine(json!({}));
    let mut body = |t: &str| {
        let o = decide(&mut e, &StaticHost::get("/x").bearer(t));
        let first = o.pending_use.unwrap().first();
        let v: Value = serde_json::from_slice(&first.body).unwrap();
        v["compare"][0]["key"].as_str().unwrap().to_string()
    };
    let a = body(&token(json!({"jti": "j1", "cnst": {"max_uses": 1}})));
    let a2 = body(&token(json!({"jti": "j1", "sub": "bob", "cnst": {"max_uses": 5}})));
    let b = body(&token(json!({"jti": "j2", "cnst": {"max_uses": 1}})));
    assert_eq!(a, a2);
    assert_ne!(a, b);
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.decode(&a).unwrap();
    assert!(key.starts_with(b"mesh/uses/"), "{}", String::from_utf8_lossy(&key));
}

/// The walk an adapter makes, end to end on recorded etcd answers.
#[test]
fn an_adapter_walk_from_decision_to_settlement() {
    let mut e = engine(json!({}));
    let host = StaticHost::get("/x").bearer(&token(json!({"jti": "j1", "cnst": {"max_uses": 1}})));
    let mut o = decide(&mut e, &host);
    let mut call = o.pending_use.take().unwrap();
    let missing = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
    let Step::Send(grant) = call.on_answer(Some("404"), missing) else { panic!("grant expected") };
    assert_eq!(grant.path, "/v3/lease/grant");
    let exists = br#"{"error":"etcdserver: lease already exists","code":9}"#;
    let Step::Send(_) = call.on_answer(Some("412"), exists) else { panic!("retry expected") };
    let counted =
        br#"{"header":{"revision":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
    let Step::Done(answer) = call.on_answer(Some("200"), counted) else { panic!("done expected") };
    let o = settle(e.config().mode(), o, &answer);
    assert!(matches!(plan(e.config(), &o, &host).act, Act::Forward(_)));
}
