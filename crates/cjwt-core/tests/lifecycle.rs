//! A request's lifecycle (lifecycle::request) driven step by step with a fake
//! clock and fake answers: what the adapters of both builds execute.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::engine::Engine;
use cjwt_core::jwks::parse::parse_remote_jwks;
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::{HostCrypto, PureRust};
use cjwt_core::lifecycle::background::{BackgroundHost, RemoteEnv};
use cjwt_core::lifecycle::refill::{Refill, RefillStep, Refills};
use cjwt_core::lifecycle::request::{Env, Event, FlowHost, Flowed, KeyWait, RequestFlow, Step, StoreCall};
use cjwt_core::mint::{mint, SigningKey};
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::{Act, Plan};
use cjwt_core::outcome::Level;
use cjwt_core::request::static_host::StaticHost;
use cjwt_core::sender::replay::NoReplayCache;
use cjwt_core::usage::etcd::EtcdReply;
use cjwt_core::usage::MemoryCounter;
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;
const NOW_MS: u64 = 1_800_000_000_000;

fn signing() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(Algorithm::EdDSA).unwrap())
}

fn token(extra: Value) -> String {
    let mut claims = json!({"iss": "https://idp.example.com", "sub": "alice", "aud": "orders-api", "iat": NOW - 60, "exp": NOW + 600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    mint(signing(), Some("k1"), &claims)
}

/// One provider whose keys are fetched (`remote`) or inline, and `extra` fields.
fn engine(remote: bool, extra: Value) -> Engine {
    let mut provider = json!({"name": "corp", "issuer": "https://idp.example.com", "audiences": ["orders-api"]});
    if remote {
        provider["remote_jwks"] = json!({"cluster": "idp", "path": "/jwks"});
    } else {
        provider["jwks"] = json!({"keys": [signing().public_jwk(Some("k1"))]});
    }
    let mut cfg = json!({"providers": [provider]});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap())
}

fn with_store() -> Value {
    // The JSON gateway: these tests read its bodies (the gRPC default: the test after them).
    json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd.local", "key_prefix": "mesh/uses/", "timeout_ms": 300,
        "api": "json"}}})
}

fn get(token: &str) -> StaticHost {
    StaticHost::get("/orders").bearer(token).at(NOW)
}

/// The adapter's remote, faked: answers every wait with the next of
/// `answers` (then `DoNotWait`), noting the provider asked for.
struct FakeRemote {
    answers: Vec<KeyWait>,
    asked: Vec<usize>,
}

impl FakeRemote {
    fn answering(answers: Vec<KeyWait>) -> FakeRemote {
        FakeRemote { answers, asked: vec![] }
    }

    fn wait_for_keys(&mut self, provider: usize) -> KeyWait {
        self.asked.push(provider);
        if self.answers.is_empty() {
            KeyWait::DoNotWait
        } else {
            self.answers.remove(0)
        }
    }
}

fn env<'a>(host: &'a StaticHost, keys: &'a Fetched, counter: &'a mut MemoryCounter) -> Env<'a> {
    Env { host, keys, crypto: &PureRust, counter, replay: Box::leak(Box::new(NoReplayCache)) }
}

/// What an adapter does on request headers: start, and answer `KeysMissing` from its remote.
fn start(flow: &mut RequestFlow, e: &mut Engine, host: &StaticHost, keys: &Fetched, remote: &mut FakeRemote) -> Step {
    let mut counter = MemoryCounter::default();
    let mut step = flow.start(e, env(host, keys, &mut counter), NOW_MS);
    while let Step::KeysMissing { provider } = step {
        let wait = remote.wait_for_keys(provider);
        step = flow.on_key_wait(e, env(host, keys, &mut counter), wait, NOW_MS);
    }
    step
}

fn no_remote() -> FakeRemote {
    FakeRemote::answering(vec![])
}

fn woken(flow: &mut RequestFlow, e: &mut Engine, host: &StaticHost, keys: &Fetched) -> Step {
    flow.on_keys(e, env(host, keys, &mut MemoryCounter::default()), NOW_MS)
}

fn acted(step: Step) -> Plan {
    match step {
        Step::Act(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn status(plan: &Plan) -> Option<u32> {
    match &plan.act {
        Act::Forward(_) => None,
        Act::Refuse(r) => Some(r.status),
    }
}

fn store_call(step: Step) -> StoreCall {
    match step {
        Step::AwaitStore(call) => call,
        other => panic!("expected a store call, got {other:?}"),
    }
}

fn fetched(e: &Engine) -> Fetched {
    let mut keys = Fetched::new(1);
    let body = json!({"keys": [signing().public_jwk(Some("k1"))]}).to_string();
    keys.set(0, parse_remote_jwks(e.config(), 0, body.as_bytes()).unwrap().keys);
    keys
}

#[test]
fn a_request_without_its_keys_waits_then_is_decided_with_the_keys_fetched() {
    let mut e = engine(true, json!({}));
    let host = get(&token(json!({})));
    let mut flow = RequestFlow::new();
    let mut remote = FakeRemote::answering(vec![KeyWait::Wait]);
    assert!(matches!(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut remote), Step::AwaitKeys));
    assert_eq!(remote.asked, [0]);
    // The fetch ended with the keys: decided again, without waiting.
    let keys = fetched(&e);
    let plan = acted(woken(&mut flow, &mut e, &host, &keys));
    assert_eq!(status(&plan), None, "{plan:?}");
    assert!(plan.counters.contains(&Counter::Allowed));
    // Woken once more (a late wake-up): nothing happens.
    assert!(matches!(woken(&mut flow, &mut e, &host, &keys), Step::Nothing));
}

#[test]
fn a_fetch_that_brought_no_keys_refuses_and_never_waits_twice() {
    let mut e = engine(true, json!({}));
    let host = get(&token(json!({})));
    let mut flow = RequestFlow::new();
    let mut remote = FakeRemote::answering(vec![KeyWait::Wait]);
    assert!(matches!(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut remote), Step::AwaitKeys));
    let plan = acted(woken(&mut flow, &mut e, &host, &Fetched::new(1)));
    assert_eq!(status(&plan), Some(401), "{plan:?}");
    assert!(plan.counters.contains(&Counter::DeniedBy(cjwt_core::reason::Reason::KeysUnavailable)));
    assert!(plan.counters.contains(&Counter::Denied));
    assert_eq!(plan.logs.len(), 1);
    assert_eq!(remote.asked, [0], "on_keys asks no remote");
}

#[test]
fn a_refusal_no_fetch_can_change_is_acted_on_at_once() {
    let mut e = engine(true, json!({}));
    let host = get(&token(json!({})));
    let mut remote = FakeRemote::answering(vec![KeyWait::DoNotWait]);
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &host, &Fetched::new(1), &mut remote));
    assert_eq!(status(&plan), Some(401));
    // Keys present but a wrong signature: no provider lacks keys, nobody is asked.
    let mut remote = no_remote();
    let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let forged =
        mint(&other, Some("k1"), &json!({"iss": "https://idp.example.com", "aud": "orders-api", "exp": NOW + 60}));
    let keys = fetched(&e);
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &get(&forged), &keys, &mut remote));
    assert_eq!(status(&plan), Some(401));
    assert!(remote.asked.is_empty());
}

#[test]
fn keys_taken_over_from_another_worker_decide_again_a_bounded_number_of_times() {
    let mut e = engine(true, json!({}));
    let host = get(&token(json!({})));
    // Every takeover brings a set without the key: decided again three times, then refused.
    let mut remote = FakeRemote::answering(vec![KeyWait::DecideAgain; 10]);
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &host, &Fetched::new(1), &mut remote));
    assert_eq!(status(&plan), Some(401));
    assert_eq!(remote.asked, [0, 0, 0, 0]);
    // A takeover then a wait: the request waits.
    let mut remote = FakeRemote::answering(vec![KeyWait::DecideAgain, KeyWait::Wait]);
    let step = start(&mut RequestFlow::new(), &mut e, &host, &Fetched::new(1), &mut remote);
    assert!(matches!(step, Step::AwaitKeys));
}

#[test]
fn a_use_that_needs_two_store_calls_walks_them_within_the_deadline() {
    let mut e = engine(false, with_store());
    let host = get(&token(json!({"jti": "j1", "cnst": {"max_uses": 2}})));
    let mut flow = RequestFlow::new();
    let first = store_call(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut no_remote()));
    assert_eq!((first.cluster.as_str(), first.path.as_str(), first.timeout_ms), ("etcd", "/v3/kv/txn", 300));
    assert!(first.headers().contains(&(":authority", "etcd.local")));
    assert!(first.counts_use && !first.records_proof);
    assert!(flow.awaits_store());
    // The bucket's lease is missing: the grant, then the transaction again.
    let lease_missing = br#"{"error":"etcdserver: requested lease not found","code":5}"#;
    let grant = store_call(flow.on_store_answer(
        &e,
        &host,
        &mut MemoryCounter::default(),
        Some("400"),
        lease_missing,
        lease_missing.len(),
        NOW_MS + 100,
    ));
    assert_eq!((grant.path.as_str(), grant.timeout_ms), ("/v3/lease/grant", 200), "what is left of 300 ms");
    let id = serde_json::from_slice::<Value>(&grant.body).unwrap()["ID"].clone();
    let granted = json!({"ID": id, "TTL": "60"}).to_string();
    let txn = store_call(flow.on_store_answer(
        &e,
        &host,
        &mut MemoryCounter::default(),
        Some("200"),
        granted.as_bytes(),
        granted.len(),
        NOW_MS + 150,
    ));
    assert_eq!((txn.path.as_str(), txn.timeout_ms), ("/v3/kv/txn", 150));
    let counted = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    let plan = acted(flow.on_store_answer(
        &e,
        &host,
        &mut MemoryCounter::default(),
        Some("200"),
        counted,
        counted.len(),
        NOW_MS + 200,
    ));
    assert_eq!(status(&plan), None, "{plan:?}");
    assert!(plan.counters.contains(&Counter::UsageStoreOk) && plan.counters.contains(&Counter::Allowed));
    assert!(!flow.awaits_store());
    // An answer after the end: nothing.
    assert!(matches!(
        flow.on_store_answer(&e, &host, &mut MemoryCounter::default(), Some("200"), counted, counted.len(), NOW_MS),
        Step::Nothing
    ));
}

#[test]
fn the_store_deadline_covers_every_call_of_a_use() {
    let mut e = engine(false, with_store());
    let host = get(&token(json!({"jti": "j2", "cnst": {"max_uses": 2}})));
    let mut flow = RequestFlow::new();
    store_call(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut no_remote()));
    // The first answer came at the deadline: the next call is not sent.
    let lease_missing = br#"{"error":"etcdserver: requested lease not found","code":5}"#;
    let plan = acted(flow.on_store_answer(
        &e,
        &host,
        &mut MemoryCounter::default(),
        Some("400"),
        lease_missing,
        lease_missing.len(),
        NOW_MS + 300,
    ));
    assert_eq!(status(&plan), Some(503));
    assert!(plan.counters.contains(&Counter::UsageStoreFailed));
    assert_eq!(plan.logs[0], (Level::Warn, "cjwt: usage store unavailable: no answer within 300 ms".to_string()));
}

#[test]
fn a_lost_or_oversized_store_answer_is_unavailable_never_allowed() {
    let mut e = engine(false, with_store());
    let host = get(&token(json!({"jti": "j3", "cnst": {"max_uses": 2}})));
    let mut flow = RequestFlow::new();
    store_call(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut no_remote()));
    assert!(!flow.store_overdue(NOW_MS + 300 + 1000), "within the grace");
    assert!(flow.store_overdue(NOW_MS + 300 + 1001));
    let plan = acted(flow.on_store_failure(&e, &host, "no answer (the call was lost)"));
    assert_eq!(status(&plan), Some(503));
    let mut flow = RequestFlow::new();
    store_call(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut no_remote()));
    let counted = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    let plan = acted(flow.on_store_answer(
        &e,
        &host,
        &mut MemoryCounter::default(),
        Some("200"),
        counted,
        17 * 1024,
        NOW_MS + 10,
    ));
    assert_eq!(status(&plan), Some(503), "an answer over the limit is not read");
    assert!(plan.logs[0].1.contains("too large"), "{:?}", plan.logs);
    // Used up: 403 max_uses.
    let mut flow = RequestFlow::new();
    store_call(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut no_remote()));
    let exhausted =
        br#"{"header":{"revision":"7"},"succeeded":false,"responses":[{"response_txn":{"succeeded":false}}]}"#;
    let plan = acted(flow.on_store_answer(
        &e,
        &host,
        &mut MemoryCounter::default(),
        Some("200"),
        exhausted,
        exhausted.len(),
        NOW_MS + 10,
    ));
    assert_eq!(status(&plan), Some(403), "{plan:?}");
}

/// Counts one host verification per call, as Envoy's and ring's do.
struct CountingCrypto(std::cell::Cell<u64>);

impl HostCrypto for CountingCrypto {
    fn verify(&self, _: &cjwt_core::keys::key::VerificationKey, _: Algorithm, _: &[u8], _: &[u8]) -> Option<bool> {
        self.0.set(self.0.get() + 1);
        None
    }

    fn calls(&self) -> u64 {
        self.0.get()
    }
}

#[test]
fn host_verifications_are_counted_in_the_plan_that_ends_the_request() {
    let mut e = engine(false, with_store());
    let host = get(&token(json!({"jti": "j4", "cnst": {"max_uses": 2}})));
    let crypto = CountingCrypto(std::cell::Cell::new(7));
    let mut flow = RequestFlow::new();
    let env = Env {
        host: &host,
        keys: &Fetched::new(1),
        crypto: &crypto,
        counter: &mut MemoryCounter::default(),
        replay: &mut NoReplayCache,
    };
    store_call(flow.start(&mut e, env, NOW_MS));
    let counted = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    let plan = acted(flow.on_store_answer(
        &e,
        &host,
        &mut MemoryCounter::default(),
        Some("200"),
        counted,
        counted.len(),
        NOW_MS + 10,
    ));
    assert_eq!(plan.counters.iter().filter(|c| **c == Counter::VerifyHost).count(), 1, "{:?}", plan.counters);
}

#[test]
fn the_span_gets_reason_rule_and_issuer_and_the_subject_only_when_configured() {
    use cjwt_core::config::SpanField;
    let tags = |plan: &Plan| plan.span.iter().map(|(f, v)| (f.tag(), v.clone())).collect::<Vec<_>>();
    let rules = json!({"rules": [{"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}}]});
    let mut e = engine(false, rules.clone());
    let keys = Fetched::new(1);
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &get(&token(json!({}))), &keys, &mut no_remote()));
    assert_eq!(status(&plan), None);
    assert_eq!(
        tags(&plan),
        [
            ("cjwt.reason", "allowed".to_string()),
            ("cjwt.rule", "default".to_string()),
            ("cjwt.issuer", "https://idp.example.com".to_string())
        ]
    );
    let admin = StaticHost::get("/admin/x").bearer(&token(json!({}))).at(NOW);
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &admin, &keys, &mut no_remote()));
    assert_eq!(status(&plan), Some(403));
    assert_eq!(
        tags(&plan),
        [
            ("cjwt.reason", "role".to_string()),
            ("cjwt.rule", "0".to_string()),
            ("cjwt.issuer", "https://idp.example.com".to_string())
        ]
    );
    // dry_run: forwarded, and the span says which refusal was let through.
    let mut dry = rules.clone();
    dry["mode"] = json!("dry_run");
    let mut d = engine(false, dry);
    let plan = acted(start(&mut RequestFlow::new(), &mut d, &admin, &keys, &mut no_remote()));
    assert_eq!(status(&plan), None);
    assert_eq!(tags(&plan)[0], ("cjwt.reason", "role".to_string()));
    // No token: no issuer to tag.
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &StaticHost::get("/x").at(NOW), &keys, &mut no_remote()));
    assert_eq!(tags(&plan), [("cjwt.reason", "missing_token".to_string()), ("cjwt.rule", "default".to_string())]);

    // Configured: the subject too, in the fixed order whatever the list's.
    let mut cfg = rules.clone();
    cfg["tracing"] = json!({"tags": ["subject", "reason"]});
    let mut e = engine(false, cfg);
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &get(&token(json!({}))), &keys, &mut no_remote()));
    assert_eq!(tags(&plan), [("cjwt.reason", "allowed".to_string()), ("cjwt.subject", "alice".to_string())]);
    assert_eq!(plan.span[1].0, SpanField::Subject);
    assert_eq!(SpanField::Subject.filter_state(), "cjwt.span.subject");

    // None at all.
    let mut cfg = rules;
    cfg["tracing"] = json!({"tags": []});
    let mut e = engine(false, cfg);
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &get(&token(json!({}))), &keys, &mut no_remote()));
    assert!(plan.span.is_empty());
    assert!(!plan.audit.is_empty(), "the access log keeps its fields");
}

/// The free deny path (issue 27 item 4): once the store said a token is spent,
/// its replays are refused 403 `max_uses` here until it expires, never asking
/// the store; other tokens still ask it.
#[test]
fn a_token_the_store_said_is_spent_is_refused_locally_until_it_expires() {
    let mut e = engine(false, with_store());
    let spent = token(json!({"jti": "spent-1", "cnst": {"max_uses": 1}}));
    let host = get(&spent);
    let mut counter = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    store_call(flow.start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
    let exhausted =
        br#"{"header":{"revision":"7"},"succeeded":false,"responses":[{"response_txn":{"succeeded":false}}]}"#;
    let plan =
        acted(flow.on_store_answer(&e, &host, &mut counter, Some("200"), exhausted, exhausted.len(), NOW_MS + 10));
    assert_eq!(status(&plan), Some(403));
    // Every replay: refused at once, no store call.
    for _ in 0..3 {
        let plan = acted(RequestFlow::new().start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS + 20));
        assert_eq!(status(&plan), Some(403), "{plan:?}");
        assert!(plan.counters.contains(&Counter::DeniedBy(cjwt_core::reason::Reason::MaxUses)));
        assert!(!plan.counters.contains(&Counter::UsageStoreOk));
    }
    // Another token still asks the store.
    let other = get(&token(json!({"jti": "spent-2", "cnst": {"max_uses": 1}})));
    store_call(RequestFlow::new().start(&mut e, env(&other, &Fetched::new(1), &mut counter), NOW_MS + 20));
    // A counted answer remembers nothing.
    let mut fresh = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    store_call(flow.start(&mut e, env(&other, &Fetched::new(1), &mut fresh), NOW_MS));
    let counted = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    acted(flow.on_store_answer(&e, &other, &mut fresh, Some("200"), counted, counted.len(), NOW_MS + 10));
    store_call(RequestFlow::new().start(&mut e, env(&other, &Fetched::new(1), &mut fresh), NOW_MS + 20));
}

/// Leased allowances in batches of 4, refilled in the background below `refill_below`.
fn allowance(refill_below: u64) -> Value {
    json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd.local", "key_prefix": "mesh/uses/",
        "timeout_ms": 300, "api": "json", "allowance": {"from_max_uses": 10, "batch": 4, "refill_below": refill_below}}}})
}

fn with_allowance() -> Value {
    allowance(0)
}

/// One request of `host` started at `now_ms`: its step, and the refill it started.
fn request(e: &mut Engine, host: &StaticHost, counter: &mut MemoryCounter, now_ms: u64) -> (Step, Option<Refill>) {
    let mut flow = RequestFlow::new();
    let step = flow.start(e, env(host, &Fetched::new(1), counter), now_ms);
    (step, flow.take_refill())
}

/// A request let through without the store.
fn local(step: Step) {
    let plan = acted(step);
    assert_eq!(status(&plan), None, "{plan:?}");
    assert!(!plan.counters.contains(&Counter::UsageStoreOk), "asked the store: {plan:?}");
}

const TAKEN_AT_9: &[u8] = br#"{"header":{"revision":"9"},"succeeded":true}"#;

/// Background refill (issue 27 item 3): a spend that leaves fewer than
/// `refill_below` uses starts one batch that no request waits for; its uses
/// (all of them: no request spends one) join the allowance when it answers,
/// so a steady stream never waits for the store after the first request.
#[test]
fn a_leased_token_refills_in_the_background_and_no_request_waits() {
    let mut e = engine(false, allowance(2));
    let host = get(&token(json!({"jti": "refilled", "cnst": {"max_uses": 100}})));
    let mut counter = MemoryCounter::default();
    // The first request takes a batch of 4 and waits for it.
    let mut flow = RequestFlow::new();
    store_call(flow.start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
    let taken = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    acted(flow.on_store_answer(&e, &host, &mut counter, Some("200"), taken, taken.len(), NOW_MS + 10));
    assert!(flow.take_refill().is_none(), "a request batch is no refill");
    // 3 left: the first spend leaves 2 (no refill), the next leaves 1 (< 2: refill).
    let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 20);
    local(step);
    assert!(refill.is_none());
    let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 30);
    local(step);
    let mut refill = refill.expect("a refill below the mark");
    let call = refill.first();
    assert_eq!((call.cluster.as_str(), call.authority.as_str(), call.timeout_ms), ("etcd", "etcd.local", 300));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["compare"][0]["modRevision"], "7", "swaps on the key as the last batch wrote it");
    assert_eq!(body["success"][0]["requestPut"]["value"], "OA==", "4 + a batch of 4");
    // While it is out: the last use is spent, no second refill; then one use at a time.
    let (step, again) = request(&mut e, &host, &mut counter, NOW_MS + 40);
    local(step);
    assert!(again.is_none(), "one refill at a time");
    let (step, again) = request(&mut e, &host, &mut counter, NOW_MS + 50);
    let one: Value = serde_json::from_slice(&store_call(step).body).unwrap();
    assert_eq!(one["success"][0]["requestPut"]["value"], "MQ==", "one use");
    assert!(again.is_none());
    // The refill answers: its 4 uses join the allowance, none spent by it.
    assert!(!refill.overdue(NOW_MS + 60));
    assert_eq!(
        refill.on_answer(&mut counter, Some("200"), TAKEN_AT_9, TAKEN_AT_9.len(), NOW_MS + 60),
        RefillStep::Done(Counter::UsageStoreRefillOk, None)
    );
    // A steady stream from here never waits: each refill answers before the allowance is empty.
    let (mut refills, mut last_rev) = (0, 9u64);
    for i in 0..40u64 {
        let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 100 + i * 10);
        local(step);
        if let Some(mut r) = refill {
            refills += 1;
            let body: Value = serde_json::from_slice(&r.first().body).unwrap();
            assert_eq!(body["compare"][0]["modRevision"], last_rev.to_string(), "refill {refills}");
            last_rev += 1;
            let answer = format!(r#"{{"header":{{"revision":"{last_rev}"}},"succeeded":true}}"#);
            let step = r.on_answer(&mut counter, Some("200"), answer.as_bytes(), answer.len(), NOW_MS + 105 + i * 10);
            assert_eq!(step, RefillStep::Done(Counter::UsageStoreRefillOk, None));
        }
    }
    assert_eq!(refills, 10, "40 uses, a refill of 4 every 4 requests");
}

/// A refill whose answer never comes, or comes unusable, deposits nothing: its
/// uses (if the store counted them) are lost, never handed out; the note stands
/// until it times out, so the lost batch is not followed by another at once.
#[test]
fn a_refill_lost_or_failed_deposits_nothing_and_is_retried_after_the_timeout() {
    let mut e = engine(false, allowance(4));
    let host = get(&token(json!({"jti": "lost", "cnst": {"max_uses": 100}})));
    let mut counter = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    store_call(flow.start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
    let taken = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    acted(flow.on_store_answer(&e, &host, &mut counter, Some("200"), taken, taken.len(), NOW_MS + 10));
    // 3 left, below 4: the first spend refills.
    let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 20);
    local(step);
    let mut refill = refill.unwrap();
    // Its answer is lost: overdue once the deadline (300 ms) and the grace (1 s) passed.
    assert!(!refill.overdue(NOW_MS + 20 + 300 + 1000));
    assert!(refill.overdue(NOW_MS + 20 + 300 + 1001));
    let RefillStep::Done(Counter::UsageStoreRefillFailed, Some(line)) = refill.on_failure("no answer") else {
        panic!("a lost refill fails")
    };
    assert!(line.contains("no answer"), "{line}");
    // A late answer to it is refused, not deposited.
    let late = refill.on_answer(&mut counter, Some("200"), TAKEN_AT_9, TAKEN_AT_9.len(), NOW_MS + 2000);
    assert!(matches!(late, RefillStep::Done(Counter::UsageStoreRefillFailed, _)), "{late:?}");
    // The 2 left are spent; then one use at a time (the note stands), no refill.
    for i in 0..2 {
        let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 30 + i);
        local(step);
        assert!(refill.is_none());
    }
    let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 40);
    store_call(step);
    assert!(refill.is_none());
    // An unusable answer (no leader) deposits nothing either.
    let mut e2 = engine(false, allowance(4));
    let mut c2 = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    store_call(flow.start(&mut e2, env(&host, &Fetched::new(1), &mut c2), NOW_MS));
    acted(flow.on_store_answer(&e2, &host, &mut c2, Some("200"), taken, taken.len(), NOW_MS + 10));
    let (step, refill) = request(&mut e2, &host, &mut c2, NOW_MS + 20);
    local(step);
    let no_leader = br#"{"error":"etcdserver: no leader","code":14}"#;
    let step = refill.unwrap().on_answer(&mut c2, Some("503"), no_leader, no_leader.len(), NOW_MS + 30);
    assert!(matches!(step, RefillStep::Done(Counter::UsageStoreRefillFailed, Some(_))), "{step:?}");
    for i in 0..2 {
        local(request(&mut e2, &host, &mut c2, NOW_MS + 40 + i).0);
    }
    store_call(request(&mut e2, &host, &mut c2, NOW_MS + 50).0);
}

/// An adapter, faked for `RequestFlow::drive`: its remote, its store calls
/// (sent, or refused with `unsent`), the refills and plans handed to it.
struct FakeFlowHost<'a> {
    engine: &'a mut Engine,
    host: &'a StaticHost,
    keys: Fetched,
    counter: MemoryCounter,
    remote: FakeRemote,
    unsent: Option<&'static str>,
    sent: Vec<StoreCall>,
    refills: Vec<Refill>,
    plans: Vec<Plan>,
    failed: bool,
    now_ms: u64,
}

impl<'a> FakeFlowHost<'a> {
    fn new(engine: &'a mut Engine, host: &'a StaticHost, remote: FakeRemote) -> FakeFlowHost<'a> {
        FakeFlowHost {
            engine,
            host,
            keys: Fetched::new(1),
            counter: MemoryCounter::default(),
            remote,
            unsent: None,
            sent: vec![],
            refills: vec![],
            plans: vec![],
            failed: false,
            now_ms: NOW_MS,
        }
    }
}

impl FlowHost for FakeFlowHost<'_> {
    fn with_env(&mut self, step: &mut dyn FnMut(&mut Engine, Env<'_>) -> Step) -> Option<Step> {
        (!self.failed).then(|| step(self.engine, env(self.host, &self.keys, &mut self.counter)))
    }

    fn wait_for_keys(&mut self, provider: usize) -> KeyWait {
        self.remote.wait_for_keys(provider)
    }

    fn send(&mut self, call: &StoreCall) -> Result<(), String> {
        self.sent.push(call.clone());
        self.unsent.map_or(Ok(()), |why| Err(why.to_string()))
    }

    fn refill(&mut self, refill: Refill) {
        self.refills.push(refill);
    }

    fn act(&mut self, plan: Plan) -> bool {
        let allowed = status(&plan).is_none();
        self.plans.push(plan);
        allowed
    }

    fn fail(&mut self) {
        self.failed = true;
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// What both adapters do with a request, driven by the core: it waits for its
/// keys, is decided again when they come, a late wake-up does nothing; a use
/// sent to the store pauses it until the answer, a call that cannot be sent
/// refuses it at once (503), a lost answer too; a host that cannot run the
/// flow refuses it.
#[test]
fn drive_takes_every_step_an_adapter_would_and_stops_where_the_host_waits() {
    let mut e = engine(true, json!({}));
    let host = get(&token(json!({})));
    let mut flow = RequestFlow::new();
    let mut h = FakeFlowHost::new(&mut e, &host, FakeRemote::answering(vec![KeyWait::Wait]));
    assert_eq!(flow.drive(Event::Start, &mut h), Flowed::Paused);
    assert_eq!((h.remote.asked.as_slice(), h.plans.len()), (&[0][..], 0));
    assert!(!flow.allowed(), "paused: body and trailers held");
    h.keys = fetched(h.engine);
    assert_eq!(flow.drive(Event::Keys, &mut h), Flowed::Allowed);
    assert!(flow.allowed());
    assert!(h.plans[0].counters.contains(&Counter::Allowed));
    assert_eq!(flow.drive(Event::Keys, &mut h), Flowed::Nothing, "woken twice");
    // The usage store: paused for the call, then its answer acts.
    let mut e = engine(false, with_store());
    let host = get(&token(json!({"jti": "driven", "cnst": {"max_uses": 1}})));
    let mut h = FakeFlowHost::new(&mut e, &host, no_remote());
    let mut flow = RequestFlow::new();
    assert_eq!(flow.drive(Event::Start, &mut h), Flowed::Paused);
    assert_eq!(h.sent.len(), 1);
    assert_eq!(flow.drive(Event::Lost("no answer"), &mut h), Flowed::Refused);
    assert_eq!(status(&h.plans[0]), Some(503));
    assert!(!flow.allowed());
    assert_eq!(flow.drive(Event::Lost("no answer"), &mut h), Flowed::Nothing, "acted on already");
    // A call that cannot be sent: refused at once, with the host's reason in the log.
    let mut flow = RequestFlow::new();
    h.unsent = Some("cluster \"etcd\": callout not started");
    assert_eq!(flow.drive(Event::Start, &mut h), Flowed::Refused);
    assert_eq!(status(&h.plans[1]), Some(503));
    assert!(h.plans[1].logs.iter().any(|(_, l)| l.contains("callout not started")), "{:?}", h.plans[1].logs);
    // A host that cannot run the flow: refused.
    let mut flow = RequestFlow::new();
    h.failed = true;
    assert_eq!(flow.drive(Event::Start, &mut h), Flowed::Refused);
    assert_eq!(h.plans.len(), 2, "no plan: the host refused it itself");
}

/// `drive` hands out the background refill a decision starts.
#[test]
fn drive_hands_out_the_refill_a_decision_starts() {
    let mut e = engine(false, allowance(4));
    let host = get(&token(json!({"jti": "driven-refill", "cnst": {"max_uses": 100}})));
    let mut h = FakeFlowHost::new(&mut e, &host, no_remote());
    let mut flow = RequestFlow::new();
    assert_eq!(flow.drive(Event::Start, &mut h), Flowed::Paused, "the first batch is waited for");
    let taken = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    let reply = EtcdReply::http(Some("200"), taken);
    h.now_ms = NOW_MS + 10;
    assert_eq!(flow.drive(Event::Reply(&reply, taken.len()), &mut h), Flowed::Allowed);
    assert!(h.refills.is_empty());
    h.now_ms = NOW_MS + 20;
    assert_eq!(RequestFlow::new().drive(Event::Start, &mut h), Flowed::Allowed, "spent locally");
    assert_eq!(h.refills.len(), 1, "3 left, below 4: a refill");
    assert_eq!(h.sent.len(), 1, "the refill is not the request's call");
}

/// A leased token `jti` that took its batch at `NOW_MS` and spent a use at
/// `NOW_MS + 20`: the refill that spend started (`allowance(4)`: 3 left, below 4).
fn started_refill(e: &mut Engine, counter: &mut MemoryCounter, jti: &str) -> Refill {
    let host = get(&token(json!({"jti": jti, "cnst": {"max_uses": 100}})));
    let mut flow = RequestFlow::new();
    store_call(flow.start(e, env(&host, &Fetched::new(1), counter), NOW_MS));
    let taken = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    acted(flow.on_store_answer(e, &host, counter, Some("200"), taken, taken.len(), NOW_MS + 10));
    let (step, refill) = request(e, &host, counter, NOW_MS + 20);
    local(step);
    refill.expect("a refill below the mark")
}

/// The registry of background refills both adapters keep (`Refills`): calls
/// due, then in flight by the host's token; an answer matched by its token
/// (another token is no refill's), a swap that lost a race makes the next
/// call due, a call not sent or never answered ends failed, and each end is
/// handed out once for the adapter to count and log.
#[test]
fn the_refills_registry_matches_answers_by_token_and_settles_calls_lost_or_not_sent() {
    let mut e = engine(false, allowance(4));
    let mut counter = MemoryCounter::default();
    let mut refills = Refills::default();
    refills.queue(started_refill(&mut e, &mut counter, "answered"));
    refills.queue(started_refill(&mut e, &mut counter, "lost"));
    refills.queue(started_refill(&mut e, &mut counter, "unsent"));
    let due = refills.take_due();
    assert_eq!(due.len(), 3);
    assert!(refills.take_due().is_empty(), "handed out once");
    assert!(due.iter().all(|d| d.call().cluster == "etcd" && d.call().timeout_ms == 300));
    let mut due = due.into_iter();
    refills.sent(due.next().unwrap(), Ok(11), NOW_MS + 20);
    refills.sent(due.next().unwrap(), Ok(12), NOW_MS + 20);
    refills.sent(due.next().unwrap(), Err("cluster \"etcd\": callout not started".into()), NOW_MS + 20);
    let ended = refills.take_ended();
    assert!(
        matches!(&ended[..], [(Counter::UsageStoreRefillFailed, Some(l))] if l.contains("callout not started")),
        "{ended:?}"
    );
    assert!(refills.awaits(11) && refills.awaits(12) && !refills.awaits(13));
    assert_eq!(refills.len(), 2);
    // Another token is no refill's answer.
    let reply = |body: &'static [u8]| EtcdReply::http(Some("200"), body);
    assert!(!refills.on_reply(13, &mut counter, &reply(TAKEN_AT_9), TAKEN_AT_9.len(), NOW_MS + 30));
    // A swap that lost a race (another Envoy moved the count to 3): the next call is due, within what is left.
    let moved = br#"{"header":{"revision":"12"},"responses":[{"response_range":{"header":{},"kvs":[{"key":"eA==","value":"Mw==","mod_revision":"12","create_revision":"2","version":"3"}]}}]}"#;
    assert!(refills.on_reply(11, &mut counter, &reply(moved), moved.len(), NOW_MS + 50));
    assert!(refills.take_ended().is_empty());
    let next = refills.take_due();
    assert!(matches!(&next[..], [d] if d.call().timeout_ms == 270), "{next:?}");
    refills.sent(next.into_iter().next().unwrap(), Ok(21), NOW_MS + 50);
    assert!(refills.on_reply(21, &mut counter, &reply(TAKEN_AT_9), TAKEN_AT_9.len(), NOW_MS + 60));
    assert_eq!(refills.take_ended(), [(Counter::UsageStoreRefillOk, None)]);
    // The lost one: overdue once its deadline (300 ms) and the grace (1 s) passed; a late answer is for no one.
    refills.overdue(NOW_MS + 20 + 300 + 1000);
    assert!(refills.take_ended().is_empty(), "within the grace");
    refills.overdue(NOW_MS + 20 + 300 + 1001);
    let ended = refills.take_ended();
    assert!(matches!(&ended[..], [(Counter::UsageStoreRefillFailed, Some(l))] if l.contains("no answer")), "{ended:?}");
    assert!(!refills.on_reply(12, &mut counter, &reply(TAKEN_AT_9), TAKEN_AT_9.len(), NOW_MS + 2000));
    assert!(refills.is_empty());
}

/// An adapter's main context, faked for the background driver's refills: no
/// remote source; its calls numbered from 1 (or refused with `refused`; none
/// outside the `main` context), what it logged and counted.
struct FakeMain {
    refills: Refills,
    main: bool,
    refused: Option<&'static str>,
    sent: Vec<StoreCall>,
    logs: Vec<(Level, String)>,
    counts: Vec<Counter>,
    main_woken: usize,
    now_ms: u64,
}

impl BackgroundHost for FakeMain {
    type Waiter = ();

    fn with_remote<R>(&mut self, _: impl FnOnce(RemoteEnv<'_, ()>) -> R) -> Option<R> {
        None
    }

    fn with_refills<R>(&mut self, step: impl FnOnce(&mut Refills) -> R) -> Option<R> {
        Some(step(&mut self.refills))
    }

    fn callout(
        &mut self,
        cluster: &str,
        _: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<Result<u64, String>> {
        if !self.main {
            return None;
        }
        self.sent.push(StoreCall {
            cluster: cluster.into(),
            authority: String::new(),
            path: String::new(),
            body: body.to_vec(),
            content_type: "",
            timeout_ms,
            records_proof: false,
            counts_use: true,
        });
        Some(self.refused.map_or(Ok(self.sent.len() as u64), |why| Err(why.to_string())))
    }

    fn log(&mut self, level: Level, line: &str) {
        self.logs.push((level, line.to_string()));
    }

    fn count(&mut self, counter: Counter) {
        self.counts.push(counter);
    }

    fn wake(&mut self, (): ()) {}

    fn wake_main(&mut self) {
        self.main_woken += 1;
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// The background driver's refills, as both adapters run them: queued from a
/// stream (the main context woken, nothing sent there), sent from the main
/// context, an answer deposits the batch and is counted, another token is no
/// refill's, a call refused is counted and logged with the cluster, and a call
/// never answered is settled on the tick.
#[test]
fn the_background_driver_sends_refills_from_the_main_context_and_counts_and_logs_their_end() {
    let mut e = engine(false, allowance(4));
    let mut counter = MemoryCounter::default();
    let mut h = FakeMain {
        refills: Refills::default(),
        main: false,
        refused: None,
        sent: vec![],
        logs: vec![],
        counts: vec![],
        main_woken: 0,
        now_ms: NOW_MS + 20,
    };
    h.queue_refill(started_refill(&mut e, &mut counter, "answered"));
    h.send_refills();
    assert_eq!((h.main_woken, h.sent.len(), h.refills.len()), (1, 0, 1), "a stream sends nothing");
    h.main = true;
    h.send_refills();
    assert!(matches!(&h.sent[..], [c] if c.cluster == "etcd" && c.timeout_ms == 300 && !c.body.is_empty()));
    let reply = EtcdReply::http(Some("200"), TAKEN_AT_9);
    assert!(!h.refill_answered(7, &mut counter, &reply, TAKEN_AT_9.len()), "no refill's token");
    assert!(h.refill_answered(1, &mut counter, &reply, TAKEN_AT_9.len()));
    assert_eq!((h.counts.as_slice(), h.logs.len()), (&[Counter::UsageStoreRefillOk][..], 0));
    assert!(h.refills.is_empty());
    // Refused by the host: ended at once, counted, logged with the cluster.
    h.refused = Some("callout not started");
    h.queue_refill(started_refill(&mut e, &mut counter, "refused"));
    h.send_refills();
    assert_eq!(h.counts.last(), Some(&Counter::UsageStoreRefillFailed));
    assert_eq!(h.logs, [(Level::Warn, "cjwt: refill failed: cluster \"etcd\": callout not started".to_string())]);
    // Never answered: settled on the tick once its deadline and the grace passed.
    h.refused = None;
    h.queue_refill(started_refill(&mut e, &mut counter, "lost"));
    h.send_refills();
    h.refills_tick();
    assert_eq!(h.refills.len(), 1, "still due");
    h.now_ms += 300 + 1001;
    h.refills_tick();
    assert!(h.refills.is_empty());
    assert!(h.logs.last().is_some_and(|(_, l)| l.contains("no answer")), "{:?}", h.logs);
}

/// A refill that finds the token used up across the mesh marks the allowance
/// dry: the uses left are spent, then each request asks the store, which
/// answers `max_uses`, and the free deny path remembers it.
#[test]
fn a_refill_that_finds_the_token_used_up_spends_what_is_left_and_takes_no_batch_again() {
    let mut e = engine(false, allowance(4));
    let host = get(&token(json!({"jti": "dry", "cnst": {"max_uses": 10}})));
    let mut counter = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    store_call(flow.start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
    let taken = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    acted(flow.on_store_answer(&e, &host, &mut counter, Some("200"), taken, taken.len(), NOW_MS + 10));
    let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 20);
    local(step);
    let mut refill = refill.unwrap();
    // Other Envoys took the rest: the swap finds the count at the limit (10).
    let moved = br#"{"header":{"revision":"12"},"responses":[{"response_range":{"header":{},"kvs":[{"key":"eA==","value":"MTA=","mod_revision":"12","create_revision":"2","version":"3"}]}}]}"#;
    assert_eq!(
        refill.on_answer(&mut counter, Some("200"), moved, moved.len(), NOW_MS + 30),
        RefillStep::Done(Counter::UsageStoreRefillOk, None)
    );
    for i in 0..2 {
        let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 40 + i);
        local(step);
        assert!(refill.is_none(), "dry: no refill");
    }
    // Empty and dry: long after any timeout, a use at a time, never a batch.
    let (step, refill) = request(&mut e, &host, &mut counter, NOW_MS + 60_000);
    let one: Value = serde_json::from_slice(&store_call(step).body).unwrap();
    assert_eq!(one["success"][0]["requestPut"]["value"], "MQ==", "one use");
    assert!(refill.is_none());
}

/// Leased allowances (issue 27 item 3): a token with room takes a batch of 4
/// in one call; the next 3 requests are let through without the store; while
/// a batch is being taken other requests ask for one use each; a token below
/// the threshold is counted a use at a time.
#[test]
fn a_token_with_room_takes_a_batch_and_spends_it_locally() {
    let mut e = engine(false, with_allowance());
    let host = get(&token(json!({"jti": "many", "cnst": {"max_uses": 100}})));
    let mut counter = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    let call = store_call(flow.start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    // The key `mesh/uses/allow/` + 32 hex digits, base64.
    assert!(body["failure"][0]["requestRange"]["key"].as_str().unwrap().starts_with("bWVzaC91c2VzL2FsbG93Lz"));
    assert_eq!(body["success"][0]["requestPut"]["value"], "NA==", "a batch of 4");
    // Meanwhile: one use only.
    let one = store_call(RequestFlow::new().start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
    let one: Value = serde_json::from_slice(&one.body).unwrap();
    assert_eq!(one["success"][0]["requestPut"]["value"], "MQ==", "one use");
    let taken = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    let plan = acted(flow.on_store_answer(&e, &host, &mut counter, Some("200"), taken, taken.len(), NOW_MS + 10));
    assert_eq!(status(&plan), None, "{plan:?}");
    for _ in 0..3 {
        let plan = acted(RequestFlow::new().start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS + 20));
        assert_eq!(status(&plan), None, "{plan:?}");
        assert!(!plan.counters.contains(&Counter::UsageStoreOk));
    }
    // Spent: the next one takes a batch again.
    let again = store_call(RequestFlow::new().start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS + 30));
    let again: Value = serde_json::from_slice(&again.body).unwrap();
    // It swaps on the key as the last batch wrote it (count 4 at revision 7): one round trip.
    assert_eq!(again["compare"][0]["target"], "MOD");
    assert_eq!(again["compare"][0]["modRevision"], "7");
    assert_eq!(again["success"][0]["requestPut"]["value"], "OA==", "4 + a batch of 4");
    // Below the threshold: a use at a time, in the per-use key.
    let few = get(&token(json!({"jti": "few", "cnst": {"max_uses": 9}})));
    let call = store_call(RequestFlow::new().start(&mut e, env(&few, &Fetched::new(1), &mut counter), NOW_MS));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["failure"][0]["requestTxn"]["compare"][0]["target"], "VERSION");
}

#[test]
fn the_protected_resource_metadata_is_served_and_named_in_every_401() {
    let pr = json!({"protected_resource": {
        "resource": "https://api.example.com/mcp",
        "authorization_servers": ["https://idp.example.com"],
        "scopes_supported": ["orders:read"],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256"]
    }});
    let mut e = engine(false, pr);
    let url = "https://api.example.com/.well-known/oauth-protected-resource/mcp";
    let keys = Fetched::new(1);
    // The document, to anyone, before any decision: no token needed, nothing counted.
    for method in ["GET", "HEAD"] {
        let host = StaticHost::request(method, "/.well-known/oauth-protected-resource/mcp").at(NOW);
        let plan = acted(start(&mut RequestFlow::new(), &mut e, &host, &keys, &mut no_remote()));
        let Act::Refuse(r) = &plan.act else { panic!("{plan:?}") };
        assert_eq!(r.status, 200);
        let doc: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            doc,
            json!({"resource": "https://api.example.com/mcp", "authorization_servers": ["https://idp.example.com"],
                   "scopes_supported": ["orders:read"], "bearer_methods_supported": ["header"],
                   "dpop_signing_alg_values_supported": ["ES256"]})
        );
        assert!(plan.counters.is_empty());
    }
    // Any other request is decided; a 401 names the document, a 403 does not.
    let missing =
        acted(start(&mut RequestFlow::new(), &mut e, &StaticHost::get("/mcp").at(NOW), &keys, &mut no_remote()));
    let Act::Refuse(r) = &missing.act else { panic!("{missing:?}") };
    assert_eq!(r.status, 401);
    assert_eq!(r.headers[0].1, format!("Bearer realm=\"cjwt\", resource_metadata=\"{url}\""));
    let post = StaticHost::request("POST", "/.well-known/oauth-protected-resource/mcp").at(NOW);
    assert_eq!(status(&acted(start(&mut RequestFlow::new(), &mut e, &post, &keys, &mut no_remote()))), Some(401));
    let expired = get(&token(json!({"exp": NOW - 3600})));
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &expired, &keys, &mut no_remote()));
    let Act::Refuse(r) = &plan.act else { panic!("{plan:?}") };
    assert!(r.headers[0].1.ends_with(&format!(", resource_metadata=\"{url}\"")), "{}", r.headers[0].1);
    let forbidden = get(&token(json!({"cnst": {"methods": ["POST"]}})));
    let plan = acted(start(&mut RequestFlow::new(), &mut e, &forbidden, &keys, &mut no_remote()));
    let Act::Refuse(r) = &plan.act else { panic!("{plan:?}") };
    assert_eq!(r.status, 403);
    assert!(!r.headers[0].1.contains("resource_metadata"));
    // A resource at the origin's root: the well-known path alone; bad URLs refused.
    let root = engine(
        false,
        json!({"protected_resource": {"resource": "https://api.example.com", "authorization_servers": ["https://idp"]}}),
    );
    assert_eq!(root.config().protected_resource().unwrap().path, "/.well-known/oauth-protected-resource");
    let with = |pr: Value| {
        let cfg = json!({"providers": [{"name": "corp", "issuer": "https://idp.example.com",
            "jwks": {"keys": [signing().public_jwk(Some("k1"))]}}], "protected_resource": pr});
        Config::from_json(cfg.to_string().as_bytes())
    };
    assert!(with(json!({"resource": "https://x", "authorization_servers": ["https://idp"]})).is_ok());
    for bad in [
        json!({"resource": "ftp://x", "authorization_servers": ["https://idp"]}),
        json!({"resource": "https://x/a?b", "authorization_servers": ["https://idp"]}),
        json!({"resource": "https://x/\"", "authorization_servers": ["https://idp"]}),
        json!({"resource": "https://x", "authorization_servers": []}),
        json!({"resource": "https://x", "authorization_servers": ["idp"]}),
        json!({"resource": "https://x", "authorization_servers": ["https://idp"], "extra": 1}),
    ] {
        assert!(with(bad.clone()).is_err(), "{bad}");
    }
}

/// A leased token the store said is spent (a one-use ask of this Envoy found
/// it used up while a refill was out) still spends what this Envoy holds —
/// those uses were counted — and is refused here, without the store, once the
/// allowance is empty.
#[test]
fn a_spent_leased_token_spends_what_is_held_then_is_refused_without_the_store() {
    use cjwt_core::usage::{UsageCounter, UsageId};
    let mut e = engine(false, allowance(0));
    let host = get(&token(json!({"jti": "held", "cnst": {"max_uses": 100}})));
    let mut counter = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    store_call(flow.start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
    let taken = br#"{"header":{"revision":"7"},"succeeded":true}"#;
    acted(flow.on_store_answer(&e, &host, &mut counter, Some("200"), taken, taken.len(), NOW_MS + 10));
    counter.mark_spent(&UsageId::new("https://idp.example.com", "held"), NOW + 600, NOW);
    for i in 0..3 {
        local(request(&mut e, &host, &mut counter, NOW_MS + 20 + i).0);
    }
    let plan = acted(request(&mut e, &host, &mut counter, NOW_MS + 30).0);
    assert_eq!(status(&plan), Some(403), "{plan:?}");
    assert!(plan.counters.contains(&Counter::DeniedBy(cjwt_core::reason::Reason::MaxUses)));
    assert!(!plan.counters.contains(&Counter::UsageStoreOk), "refused without the store");
}

/// The default API (issue 27 item 2): gRPC calls (`te: trailers`, a gRPC
/// frame), the lease missing as a trailers-only `grpc-status` 5, granted, the
/// transaction once more, counted from the message alone (as the native
/// callout, which shows no trailers, passes it).
#[test]
fn a_use_over_grpc_by_default_walks_the_same_steps() {
    use cjwt_core::usage::etcd::EtcdReply;
    use cjwt_core::usage::grpc::{self, pb};
    let store = json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd.local", "timeout_ms": 300}}});
    let mut e = engine(false, store);
    let host = get(&token(json!({"jti": "g1", "cnst": {"max_uses": 2}})));
    let mut flow = RequestFlow::new();
    let first = store_call(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut no_remote()));
    assert_eq!((first.path.as_str(), first.content_type), (grpc::TXN_PATH, grpc::CONTENT_TYPE));
    assert!(first.is_grpc() && first.headers().contains(&("te", "trailers")));
    assert!(grpc::unframe(&first.body).is_ok());
    let missing = EtcdReply {
        status: Some("200"),
        grpc_status: Some("5"),
        grpc_message: Some("etcdserver: requested lease not found"),
        body: b"",
    };
    let grant = store_call(flow.on_store_reply(&e, &host, &mut MemoryCounter::default(), &missing, 0, NOW_MS + 10));
    assert_eq!(grant.path, grpc::LEASE_GRANT_PATH);
    use prost::Message as _;
    let asked = pb::LeaseGrantRequest::decode(grpc::unframe(&grant.body).unwrap()).unwrap();
    let granted = grpc::frame(&pb::LeaseGrantResponse {
        header: Some(pb::ResponseHeader { revision: 3, ..Default::default() }),
        id: asked.id,
        ttl: asked.ttl,
        error: String::new(),
    });
    let reply = EtcdReply { status: Some("200"), grpc_status: Some("0"), body: &granted, ..Default::default() };
    let txn =
        store_call(flow.on_store_reply(&e, &host, &mut MemoryCounter::default(), &reply, granted.len(), NOW_MS + 20));
    assert_eq!(txn.body, first.body);
    let counted = grpc::frame(&pb::TxnResponse {
        header: Some(pb::ResponseHeader { revision: 4, ..Default::default() }),
        succeeded: true,
        responses: vec![],
    });
    let reply = EtcdReply { status: Some("200"), body: &counted, ..Default::default() };
    let plan = acted(flow.on_store_reply(&e, &host, &mut MemoryCounter::default(), &reply, counted.len(), NOW_MS + 30));
    assert_eq!(status(&plan), None, "{plan:?}");
    // A gRPC error after an answer that looked counted: unavailable.
    let mut flow = RequestFlow::new();
    store_call(start(&mut flow, &mut e, &host, &Fetched::new(1), &mut no_remote()));
    let reply = EtcdReply {
        status: Some("200"),
        grpc_status: Some("14"),
        grpc_message: Some("etcdserver: no leader"),
        body: &counted,
    };
    let plan = acted(flow.on_store_reply(&e, &host, &mut MemoryCounter::default(), &reply, counted.len(), NOW_MS + 30));
    assert_eq!(status(&plan), Some(503), "{plan:?}");
}

/// A background refill speaks the store's configured API, as the request's own
/// calls do (gRPC by default): a refill sent over the JSON gateway to a gRPC
/// cluster would fail every time.
#[test]
fn a_refill_speaks_the_configured_api() {
    use cjwt_core::usage::grpc;
    for (api, path) in [(None, grpc::TXN_PATH), (Some("json"), "/v3/kv/txn")] {
        let mut store = json!({"cluster": "etcd", "authority": "etcd.local", "key_prefix": "mesh/uses/",
            "timeout_ms": 300, "allowance": {"from_max_uses": 10, "batch": 4, "refill_below": 2}});
        if let Some(api) = api {
            store["api"] = json!(api);
        }
        let mut e = engine(false, json!({"usage_store": {"etcd": store}}));
        let host = get(&token(json!({"jti": format!("api-{path}"), "cnst": {"max_uses": 100}})));
        let mut counter = MemoryCounter::default();
        let mut flow = RequestFlow::new();
        let first = store_call(flow.start(&mut e, env(&host, &Fetched::new(1), &mut counter), NOW_MS));
        assert_eq!(first.path, path);
        // As if that batch was taken: 3 uses held, the key last written at revision 7.
        use cjwt_core::usage::UsageCounter;
        let use_id = cjwt_core::usage::UsageId::new("https://idp.example.com", &format!("api-{path}"));
        counter.deposit_allowance(&use_id, 3, Some((4, 7)), NOW + 600, NOW_MS);
        let (mut refill, mut asked) = (None, 0);
        while refill.is_none() && asked < 4 {
            let (_, r) = request(&mut e, &host, &mut counter, NOW_MS + 20 + asked);
            refill = r;
            asked += 1;
        }
        let refill = refill.expect("a refill below the mark");
        assert_eq!(refill.first().path, path, "api {api:?}");
    }
}
