//! SPEC §11, natively: deny-lists (keyed on claims, checked on cache hits, a
//! new configuration revoking at once), Status List Tokens verified and decoded,
//! every reason of the section failing closed, and the list fetcher on a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{mint, mint_raw, SigningKey};
use cjwt_core::reason::Reason;
use cjwt_core::revocation::fetcher::{ListCommand, ListFetcher, ListOutcome, RETRY_SECONDS};
use cjwt_core::revocation::status_list::{encode_status_list, verify_status_list};
use cjwt_core::testing::*;
use cjwt_core::token::verify::{InlineOnly, KeyLookup};
use cjwt_core::usage::MemoryCounter;
use serde_json::{json, Value};

const ISS: &str = "https://idp.example.com";
const URI: &str = "https://idp.example.com/statuslists/1";

/// The reason and whether the cache answered.
fn decide(engine: &mut Engine, token: &str, keys: &dyn KeyLookup) -> (Option<Reason>, Option<bool>) {
    let host = StaticHost::get("/x").bearer(token);
    let outcome = engine.decide_with(
        &host,
        keys,
        &PureRust,
        &mut MemoryCounter::default(),
        &mut cjwt_core::sender::replay::NoReplayCache,
    );
    let reason = match outcome.decision {
        Decision::Allow { .. } => None,
        Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
    };
    (reason, outcome.cache_hit)
}

fn deny(jti: Value, subjects: Value) -> Value {
    json!({"revocation": {"jti": jti, "subjects": subjects}})
}

#[test]
fn a_listed_jti_or_subject_is_revoked_and_others_are_not() {
    let mut e = engine(deny(
        json!([{"iss": ISS, "jti": "leaked"}]),
        json!([{"iss": ISS, "sub": "build-bot", "issued_before": NOW - 100}]),
    ));
    for (name, extra, want) in [
        ("listed jti", json!({"jti": "leaked"}), Some(Reason::Revoked)),
        ("other jti", json!({"jti": "fine"}), None),
        ("no jti", json!({}), None),
        ("subject issued before", json!({"sub": "build-bot", "iat": NOW - 101}), Some(Reason::Revoked)),
        ("subject issued at the cut-off", json!({"sub": "build-bot", "iat": NOW - 100}), None),
        ("subject issued after", json!({"sub": "build-bot", "iat": NOW - 50}), None),
        ("subject without iat", json!({"sub": "build-bot", "iat": null}), Some(Reason::Revoked)),
        ("other subject", json!({"sub": "alice", "iat": NOW - 1000}), None),
    ] {
        assert_eq!(decide(&mut e, &eddsa(extra), &InlineOnly).0, want, "{name}");
    }
    // An expired token stays `expired`: the token checks come first.
    let expired = eddsa(json!({"jti": "leaked", "exp": NOW - 1000, "iat": NOW - 2000}));
    assert_eq!(decide(&mut e, &expired, &InlineOnly).0, Some(Reason::Expired));
}

#[test]
fn revocation_comes_before_require_and_constraints() {
    let mut e = engine(json!({
        "revocation": {"jti": [{"iss": ISS, "jti": "leaked"}]},
        "default_rule": {"require": {"roles_any": ["admin"]}}
    }));
    let t = eddsa(json!({"jti": "leaked", "cnst": {"methods": ["POST"]}}));
    assert_eq!(decide(&mut e, &t, &InlineOnly).0, Some(Reason::Revoked));
}

#[test]
fn a_cached_token_is_checked_on_every_request_and_a_new_configuration_revokes_at_once() {
    let t = eddsa(json!({"jti": "j-7", "sub": "svc"}));
    let mut before = engine(json!({}));
    assert_eq!(decide(&mut before, &t, &InlineOnly), (None, Some(false)));
    assert_eq!(decide(&mut before, &t, &InlineOnly), (None, Some(true)), "allowed and cached");
    // The update: a new configuration (what an adapter builds on every push).
    for update in [
        deny(json!([{"iss": ISS, "jti": "j-7"}]), json!([])),
        deny(json!([]), json!([{"iss": ISS, "sub": "svc", "issued_before": NOW}])),
    ] {
        let mut after = engine(update);
        assert_eq!(decide(&mut after, &t, &InlineOnly), (Some(Reason::Revoked), Some(false)));
        assert_eq!(
            decide(&mut after, &t, &InlineOnly),
            (Some(Reason::Revoked), Some(true)),
            "a cache hit is revoked too"
        );
    }
}

/// P-256's group order n, big-endian.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA,
    0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// `n - s`, big-endian (s < n).
fn negate(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[test]
fn a_re_encoded_ecdsa_signature_is_another_token_text_and_still_revoked() {
    let es = key(Algorithm::ES256);
    let cfg = json!({"providers": [{"name": "corp", "issuer": ISS, "jwks": {"keys": [es.public_jwk(Some("e1"))]}}],
        "revocation": {"jti": [{"iss": ISS, "jti": "leaked"}]}});
    let mut e = Engine::new(Config::from_json(cfg.to_string().as_bytes()).unwrap());
    let t = mint(es, Some("e1"), &claims(json!({"jti": "leaked"})));
    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = b64::decode(sig.as_bytes()).unwrap();
    let mut twin = sig[..32].to_vec();
    twin.extend(negate(&sig[32..]));
    let twin = format!("{input}.{}", b64::encode(&twin));
    assert_ne!(twin, t);
    let mut plain =
        Engine::new(Config::from_json(json!({"providers": cfg["providers"]}).to_string().as_bytes()).unwrap());
    assert_eq!(decide(&mut plain, &twin, &InlineOnly).0, None, "the (r, n - s) twin verifies without a deny-list");
    assert_eq!(decide(&mut e, &t, &InlineOnly).0, Some(Reason::Revoked));
    assert_eq!(decide(&mut e, &twin, &InlineOnly).0, Some(Reason::Revoked), "keyed on claims, not on the token text");
}

#[test]
fn revocation_entries_are_validated_at_load_with_the_field_named() {
    for (revocation, field) in [
        (json!({"jti": [{"iss": "https://else", "jti": "x"}]}), "revocation.jti[0].iss"),
        (json!({"jti": [{"iss": ISS, "jti": ""}]}), "revocation.jti[0].jti"),
        (json!({"jti": [{"iss": ISS, "jti": "a"}, {"iss": ISS, "jti": "a"}]}), "revocation.jti[1]"),
        (json!({"jti": [{"iss": ISS}]}), "revocation.jti[0].jti"),
        (json!({"subjects": [{"iss": ISS, "sub": "s"}]}), "revocation.subjects[0].issued_before"),
        (json!({"subjects": [{"iss": ISS, "sub": "", "issued_before": 1}]}), "revocation.subjects[0].sub"),
        (json!({"subjects": [{"iss": ISS, "sub": "s", "issued_before": "1"}]}), "revocation.subjects[0].issued_before"),
        (
            json!({"subjects": [{"iss": ISS, "sub": "s", "issued_before": 1}, {"iss": ISS, "sub": "s", "issued_before": 2}]}),
            "revocation.subjects[1]",
        ),
        (json!({"jti": [], "extra": 1}), "revocation.extra"),
    ] {
        let e = Config::from_json(config_json(json!({"revocation": revocation})).to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{revocation}: {e}");
    }
    let ok = Config::from_json(config_json(deny(json!([]), json!([]))).to_string().as_bytes()).unwrap();
    assert!(ok.revocation().is_empty());
}

// ---- Status lists ----

fn list_config(extra: Value) -> Value {
    let mut s = json!({"uri": URI, "provider": "corp", "cluster": "idp", "path": "/statuslists/1"});
    if let (Value::Object(b), Value::Object(e)) = (&mut s, extra) {
        b.extend(e);
    }
    config_json(json!({"status_lists": [s]}))
}

/// A Status List Token signed by `signer` (the provider's key: EdDSA `k1`).
fn list_token(signer: &SigningKey, header: Value, claims: Value) -> String {
    mint_raw(signer, &header.to_string(), &claims.to_string())
}

fn header() -> Value {
    json!({"alg": "EdDSA", "kid": "k1", "typ": "statuslist+jwt"})
}

fn list_claims(statuses: &[u8], bits: u8) -> Value {
    json!({"sub": URI, "iat": NOW - 10, "exp": NOW + 3600, "ttl": 600, "status_list": encode_status_list(bits, statuses).unwrap()})
}

fn store_with(config: &Config, token: &str) -> Fetched {
    let mut store = Fetched::new(config.provider_count());
    let list = verify_status_list(config, 0, &store, &PureRust, token.as_bytes(), NOW).unwrap();
    store.set_status_list(0, list).unwrap();
    store
}

fn with_status(idx: u64, uri: &str) -> String {
    eddsa(json!({"status": {"status_list": {"idx": idx, "uri": uri}}}))
}

#[test]
fn a_token_is_decided_by_its_entry_in_the_list() {
    let config = Config::from_json(list_config(json!({})).to_string().as_bytes()).unwrap();
    let statuses = [0u8, 1, 2, 3, 0];
    let store = store_with(&config, &list_token(key(Algorithm::EdDSA), header(), list_claims(&statuses, 2)));
    let mut e = Engine::new(config);
    // 5 entries of 2 bits: one byte and a half; the rest of the second byte is padding (0).
    for (idx, want) in [
        (0, None),
        (1, Some(Reason::Revoked)),
        (2, Some(Reason::Suspended)),
        (3, Some(Reason::Revoked)),
        (4, None),
        (8, Some(Reason::Revoked)),
        (1_000_000, Some(Reason::Revoked)),
    ] {
        assert_eq!(decide(&mut e, &with_status(idx, URI), &store).0, want, "idx {idx}");
    }
    assert_eq!(decide(&mut e, &with_status(0, "https://elsewhere/1"), &store).0, Some(Reason::UnknownStatusList));
    let other = eddsa(json!({"status": {"other_mechanism": {"x": 1}}}));
    assert_eq!(decide(&mut e, &other, &store).0, Some(Reason::UnknownStatusList));
    let malformed = eddsa(json!({"status": {"status_list": {"idx": "0", "uri": URI}}}));
    assert_eq!(decide(&mut e, &malformed, &store).0, Some(Reason::MalformedToken));
    // No list fetched yet: fail closed.
    assert_eq!(decide(&mut e, &with_status(0, URI), &InlineOnly).0, Some(Reason::StatusUnavailable));
    // A token without `status` needs no list.
    assert_eq!(decide(&mut e, &eddsa(json!({})), &InlineOnly).0, None);
}

#[test]
fn a_status_claim_without_configured_lists_is_unknown() {
    let mut e = engine(json!({}));
    assert_eq!(decide(&mut e, &with_status(0, URI), &InlineOnly).0, Some(Reason::UnknownStatusList));
}

#[test]
fn a_list_is_used_until_its_exp_or_ttl_then_status_is_unavailable() {
    let config = Config::from_json(list_config(json!({})).to_string().as_bytes()).unwrap();
    let skew = config.clock_skew_seconds();
    // (exp, ttl, expires at)
    for (exp, ttl, until) in [
        (Some(NOW + 3600), Some(600), NOW + 600),
        (Some(NOW + 100), Some(600), NOW + 100 + skew),
        (Some(NOW + 100), None, NOW + 100 + skew),
        (None, Some(600), NOW + 600),
    ] {
        let mut claims = list_claims(&[0], 1);
        claims["exp"] = exp.map_or(Value::Null, Value::from);
        claims["ttl"] = ttl.map_or(Value::Null, Value::from);
        if exp.is_none() {
            claims.as_object_mut().unwrap().remove("exp");
        }
        if ttl.is_none() {
            claims.as_object_mut().unwrap().remove("ttl");
        }
        let store = store_with(&config, &list_token(key(Algorithm::EdDSA), header(), claims));
        let mut e = Engine::new(Config::from_json(list_config(json!({})).to_string().as_bytes()).unwrap());
        let t = mint(
            key(Algorithm::EdDSA),
            Some("k1"),
            &claims_at(until, json!({"status": {"status_list": {"idx": 0, "uri": URI}}})),
        );
        let mut at = |now: i64| e_decide(&mut e, &StaticHost::get("/x").bearer(&t).at(now), &store);
        assert_eq!(at(until - 1), None, "exp {exp:?} ttl {ttl:?}: valid a second before");
        assert_eq!(at(until), Some(Reason::StatusUnavailable), "exp {exp:?} ttl {ttl:?}: unavailable at {until}");
    }
}

fn e_decide(e: &mut Engine, host: &StaticHost, keys: &dyn KeyLookup) -> Option<Reason> {
    match e
        .decide_with(
            host,
            keys,
            &PureRust,
            &mut MemoryCounter::default(),
            &mut cjwt_core::sender::replay::NoReplayCache,
        )
        .decision
    {
        Decision::Allow { .. } => None,
        Decision::Deny(d) | Decision::DryRunDeny(d) => Some(d.reason),
    }
}

#[test]
fn a_list_is_refused_unless_it_is_exactly_what_was_configured() {
    let config = Config::from_json(list_config(json!({"max_bytes": 1024})).to_string().as_bytes()).unwrap();
    let k = key(Algorithm::EdDSA);
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let good = list_claims(&[0, 1], 1);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let bomb = bomb_lst();
    for (token, why) in [
        (list_token(&stranger, header(), good.clone()), "signature"),
        (list_token(k, json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}), good.clone()), "`typ`"),
        (list_token(k, json!({"alg": "EdDSA", "kid": "k1"}), good.clone()), "`typ`"),
        (list_token(k, header(), with(&|c| c["sub"] = json!("https://idp.example.com/statuslists/2"))), "`sub`"),
        (list_token(k, header(), with(&|c| c["exp"] = json!(NOW - 61))), "expired"),
        (list_token(k, header(), with(&|c| c["iat"] = json!(NOW + 1000))), "future"),
        (list_token(k, header(), with(&|c| drop(c.as_object_mut().unwrap().remove("iat")))), "`iat`"),
        (
            list_token(
                k,
                header(),
                with(&|c| {
                    let o = c.as_object_mut().unwrap();
                    o.remove("exp");
                    o.remove("ttl");
                }),
            ),
            "neither `exp` nor `ttl`",
        ),
        (list_token(k, header(), with(&|c| c["ttl"] = json!(0))), "`ttl`"),
        (list_token(k, header(), with(&|c| c["status_list"]["bits"] = json!(3))), "`bits`"),
        (list_token(k, header(), with(&|c| c["status_list"]["lst"] = json!(bomb))), "inflates past max_bytes"),
        (
            list_token(k, header(), with(&|c| c["status_list"] = json!(encode_status_list(8, &[0; 2000]).unwrap()))),
            "inflates past max_bytes",
        ),
        (
            list_token(k, header(), with(&|c| drop(c.as_object_mut().unwrap().remove("status_list")))),
            "no `status_list`",
        ),
        ("garbage".to_string(), "not a compact JWS"),
        ("a".repeat(200_000), "at most"),
    ] {
        let store = Fetched::new(1);
        let e = verify_status_list(&config, 0, &store, &PureRust, token.as_bytes(), NOW).unwrap_err();
        assert!(e.contains(why), "want {why:?} in {e:?}");
    }
    let store = Fetched::new(1);
    let ok = format!("{}\n", list_token(k, header(), good));
    assert_eq!(verify_status_list(&config, 0, &store, &PureRust, ok.as_bytes(), NOW).unwrap().len(), 8);
}

/// A compression bomb: 16 MiB of zeros as a `lst` of about 16 KiB.
fn bomb_lst() -> String {
    encode_status_list(8, &vec![0u8; 16 << 20]).unwrap()["lst"].as_str().unwrap().to_string()
}

#[test]
fn status_list_settings_are_validated_at_load_with_the_field_named() {
    for (extra, field) in [
        (json!({"uri": ""}), "status_lists[0].uri"),
        (json!({"provider": "nobody"}), "status_lists[0].provider"),
        (json!({"cluster": ""}), "status_lists[0].cluster"),
        (json!({"path": "statuslists/1"}), "status_lists[0].path"),
        (json!({"refresh_seconds": 0}), "status_lists[0].refresh_seconds"),
        (json!({"timeout_ms": 50}), "status_lists[0].timeout_ms"),
        (json!({"max_bytes": 0}), "status_lists[0].max_bytes"),
        (json!({"max_bytes": 17_000_000}), "status_lists[0].max_bytes"),
        (json!({"extra": 1}), "status_lists[0].extra"),
    ] {
        let e = Config::from_json(list_config(extra.clone()).to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{extra}: {e}");
    }
    let mut two = list_config(json!({}));
    let first = two["status_lists"][0].clone();
    two["status_lists"].as_array_mut().unwrap().push(first);
    assert_eq!(Config::from_json(two.to_string().as_bytes()).unwrap_err().field, "status_lists[1].uri");
    let c = Config::from_json(list_config(json!({})).to_string().as_bytes()).unwrap();
    let s = &c.status_lists()[0];
    assert_eq!((s.authority.as_str(), s.refresh_seconds, s.timeout_ms, s.max_bytes), ("idp", 300, 2000, 1 << 20));
}

// ---- The list fetcher, on a fake clock ----

struct Sim {
    config: Config,
    fetcher: ListFetcher,
    store: Fetched,
    next_token: u32,
    now: i64,
}

impl Sim {
    fn new(extra: Value) -> Sim {
        let config = Config::from_json(list_config(extra).to_string().as_bytes()).unwrap();
        let fetcher = ListFetcher::new(&config);
        let store = Fetched::new(config.provider_count());
        Sim { config, fetcher, store, next_token: 0, now: NOW }
    }

    /// Advances the clock, runs the tick, dispatches; returns the tokens dispatched and what was given up.
    fn tick(&mut self, seconds: i64) -> (Vec<u32>, Vec<ListOutcome>) {
        self.now += seconds;
        let mut tokens = Vec::new();
        let mut gave_up = Vec::new();
        for c in self.fetcher.on_tick(self.now) {
            match c {
                ListCommand::Dispatch(r) => {
                    assert_eq!(r.headers()[3], ("accept", "application/statuslist+jwt"));
                    self.next_token += 1;
                    self.fetcher.on_dispatched(r.list, self.next_token);
                    tokens.push(self.next_token);
                }
                ListCommand::GaveUp(_, o) => gave_up.push(o),
            }
        }
        (tokens, gave_up)
    }

    fn answer(&mut self, token: u32, status: Option<&str>, body: &str) -> Option<ListOutcome> {
        self.fetcher
            .on_response(token, status, body.as_bytes(), self.now, &self.config, &PureRust, &mut self.store)
            .map(|(_, o)| o)
    }

    fn entry(&self, idx: u64) -> Option<u8> {
        self.store.status_list(0).filter(|l| l.valid_at(self.now)).and_then(|l| l.get(idx))
    }
}

fn signed(statuses: &[u8], now: i64, ttl: i64) -> String {
    let claims = json!({"sub": URI, "iat": now, "exp": now + 3600, "ttl": ttl, "status_list": encode_status_list(1, statuses).unwrap()});
    list_token(key(Algorithm::EdDSA), header(), claims)
}

#[test]
fn the_fetcher_loads_refreshes_and_keeps_the_last_good_list_until_it_expires() {
    let mut sim = Sim::new(json!({"refresh_seconds": 60, "timeout_ms": 1000}));
    let (tokens, _) = sim.tick(0);
    assert_eq!(tokens.len(), 1, "fetched at once");
    let r = sim.request_path();
    assert_eq!(r, ("idp".to_string(), "/statuslists/1".to_string(), "idp".to_string()));
    let out = sim.answer(tokens[0], Some("200"), &signed(&[0, 0], sim.now, 300)).unwrap();
    assert!(matches!(out, ListOutcome::Loaded { entries: 8, bits: 1, .. }), "{out:?}");
    assert_eq!(sim.entry(1), Some(0));
    assert_eq!(sim.tick(59).0.len(), 0, "not due before refresh_seconds");
    let (tokens, _) = sim.tick(1);
    assert_eq!(tokens.len(), 1, "due after refresh_seconds");
    // Revoked mid-run: the next refresh publishes it.
    let now = sim.now;
    sim.answer(tokens[0], Some("200"), &signed(&[0, 1], now, 300)).unwrap();
    assert_eq!(sim.entry(1), Some(1));
    // Failures keep the last good list and retry after RETRY_SECONDS.
    for (status, body, why) in [
        (Some("500"), String::new(), "HTTP status 500"),
        (None, String::new(), "HTTP status none"),
        (Some("200"), "garbage".to_string(), "not a compact JWS"),
    ] {
        let (tokens, _) = sim.tick(60);
        assert_eq!(tokens.len(), 1, "{why}");
        match sim.answer(tokens[0], status, &body).unwrap() {
            ListOutcome::Refused { reason } => assert!(reason.contains(why), "{reason}"),
            other => panic!("{why}: {other:?}"),
        }
        assert_eq!(sim.entry(1), Some(1), "{why}: the last good list stays");
        assert_eq!(sim.tick(RETRY_SECONDS - 1).0.len(), 0, "{why}");
        let (tokens, _) = sim.tick(1);
        assert_eq!(tokens.len(), 1, "{why}: retried after {RETRY_SECONDS} s");
        sim.answer(tokens[0], Some("500"), "").unwrap();
        sim.now -= RETRY_SECONDS; // keep the list's clock in reach of the next case
    }
    // Until the list's own ttl (300 s after it was fetched) ends: then unavailable.
    sim.now = now + 300;
    assert_eq!(sim.entry(1), None, "expired: no entry is trusted");
    assert_eq!(sim.store.status_list(0).map(|l| l.valid_at(sim.now)), Some(false));
}

impl Sim {
    fn request_path(&self) -> (String, String, String) {
        let s = &self.config.status_lists()[0];
        (s.cluster.clone(), s.path.clone(), s.authority.clone())
    }
}

#[test]
fn a_call_that_never_answers_is_given_up_and_a_late_or_unknown_answer_ignored() {
    let mut sim = Sim::new(json!({"timeout_ms": 2000}));
    let (tokens, _) = sim.tick(0);
    assert_eq!(sim.tick(4), (vec![], vec![]), "kept for timeout + 2 s");
    let (retry, gave_up) = sim.tick(1);
    assert_eq!(gave_up, vec![ListOutcome::NeverAnswered]);
    assert_eq!(retry.len(), 1, "a new call at once");
    assert!(sim.answer(tokens[0], Some("200"), &signed(&[0], sim.now, 60)).is_none(), "late answer ignored");
    assert!(sim.answer(999, Some("200"), &signed(&[0], sim.now, 60)).is_none());
    assert!(sim.fetcher.owns(retry[0]) && !sim.fetcher.owns(tokens[0]));
    assert!(sim.answer(retry[0], Some("200"), &signed(&[0], sim.now, 60)).unwrap().ok());
}

#[test]
fn a_call_that_cannot_be_dispatched_is_retried_after_five_seconds() {
    let mut sim = Sim::new(json!({}));
    let Some(ListCommand::Dispatch(r)) = sim.fetcher.on_tick(sim.now).pop() else { panic!("no call") };
    assert_eq!(sim.fetcher.on_dispatch_failed(r.list, sim.now), ListOutcome::NotDispatched);
    assert_eq!(sim.tick(RETRY_SECONDS - 1).0.len(), 0);
    assert_eq!(sim.tick(1).0.len(), 1);
    let none = Config::from_json(config_json(json!({})).to_string().as_bytes()).unwrap();
    assert!(!ListFetcher::new(&none).has_lists());
}

#[test]
fn a_last_good_copy_handed_on_serves_no_longer_than_the_original() {
    use cjwt_core::revocation::status_list::{shared_name, verify_fetched, LastGood};
    let config = Config::from_json(list_config(json!({})).to_string().as_bytes()).unwrap();
    // Fetched at NOW with ttl 600 (exp in an hour): usable until NOW + 600, whoever reads it.
    let body = signed(&[0, 1], NOW, 600);
    let stored = LastGood { fetched_at: NOW, body: body.as_bytes() }.encode();
    let last = LastGood::decode(&stored).unwrap();
    assert_eq!((last.fetched_at, last.body), (NOW, body.as_bytes()));
    assert!(LastGood::decode(&[1, 2, 3]).is_none());
    let store = Fetched::new(1);
    let later = verify_fetched(&config, 0, &store, &PureRust, last.body, last.fetched_at, NOW + 500).unwrap();
    assert_eq!(later.expires_at(), NOW + 600, "ttl counts from the fetch, not from the hand-over");
    let e = verify_fetched(&config, 0, &store, &PureRust, last.body, last.fetched_at, NOW + 600).unwrap_err();
    assert!(e.contains("expired"), "{e}");
    // The name follows what identifies the list.
    let name = shared_name(&config, 0).unwrap();
    assert!(name.starts_with("cjwt.status_list."));
    let moved = Config::from_json(list_config(json!({"path": "/other"})).to_string().as_bytes()).unwrap();
    assert_ne!(shared_name(&moved, 0), Some(name.clone()));
    let again = Config::from_json(list_config(json!({"refresh_seconds": 5})).to_string().as_bytes()).unwrap();
    assert_eq!(shared_name(&again, 0), Some(name));
    assert_eq!(shared_name(&config, 1), None);
}

/// Two fetchers of one Envoy: the one that holds the fetch loads the list; the
/// other waits for it (nothing counted), takes it over with its version, and is
/// next due `refresh_seconds` after that fetch; a fetch held elsewhere that
/// brings nothing is due again (after its deadline, or at once when given back).
#[test]
fn a_list_fetched_elsewhere_is_taken_over_and_a_lost_fetch_is_due_again() {
    let mut sim = Sim::new(json!({"refresh_seconds": 60}));
    let commands = sim.fetcher.on_tick(sim.now);
    let [ListCommand::Dispatch(r)] = commands.as_slice() else { panic!("{commands:?}") };
    sim.fetcher.on_fetching_elsewhere(r.list, sim.now + 5);
    assert!(sim.fetcher.is_elsewhere(0));
    assert_eq!(sim.tick(1), (vec![], vec![]), "nothing while the other fetcher holds it");
    let fetched_at = sim.now;
    sim.fetcher.adopted(0, fetched_at);
    assert_eq!((sim.fetcher.version(0), sim.fetcher.is_elsewhere(0)), (fetched_at, false));
    assert_eq!(sim.tick(59), (vec![], vec![]));
    assert_eq!(sim.tick(1).0.len(), 1, "due 60 s after the other fetcher's fetch");

    let mut lost = Sim::new(json!({}));
    assert_eq!(lost.fetcher.on_tick(lost.now).len(), 1);
    lost.fetcher.on_fetching_elsewhere(0, lost.now + 3);
    assert_eq!(lost.tick(3), (vec![], vec![]));
    let (tokens, gave_up) = lost.tick(1);
    assert_eq!((tokens.len(), gave_up.clone()), (1, vec![ListOutcome::NotFetchedElsewhere]));
    assert!(!gave_up[0].counted());

    let mut back = Sim::new(json!({}));
    assert_eq!(back.fetcher.on_tick(back.now).len(), 1);
    back.fetcher.on_fetching_elsewhere(0, back.now + 30);
    assert_eq!(back.fetcher.on_elsewhere_ended(0, back.now), Some(ListOutcome::NotFetchedElsewhere));
    assert_eq!(back.fetcher.on_elsewhere_ended(0, back.now), None);
    assert_eq!(back.tick(RETRY_SECONDS - 1), (vec![], vec![]));
    assert_eq!(back.tick(1).0.len(), 1);
}

/// Issue 24 item 4: an older Status List Token, still unexpired (a stale cache
/// in front of the issuer), served after a newer one never replaces it: the
/// refresh fails, the newer list stays, and a hand-over keeps the same rule.
#[test]
fn an_older_list_never_replaces_a_newer_one() {
    let mut sim = Sim::new(json!({"refresh_seconds": 60, "timeout_ms": 1000}));
    let v1 = signed(&[0, 0, 0, 0], NOW - 120, 3600);
    let v2 = signed(&[0, 0, 0, 1], NOW, 3600);
    let (tokens, _) = sim.tick(0);
    assert!(matches!(sim.answer(tokens[0], Some("200"), &v2), Some(ListOutcome::Loaded { .. })));
    assert_eq!(sim.entry(3), Some(1), "v2 revokes entry 3");
    let (tokens, _) = sim.tick(60);
    match sim.answer(tokens[0], Some("200"), &v1) {
        Some(ListOutcome::Refused { reason }) => assert!(reason.contains("rollback"), "{reason}"),
        other => panic!("v1 after v2: {other:?}"),
    }
    assert_eq!(sim.entry(3), Some(1), "v2 stays in use");
    // A failed refresh: retried after RETRY_SECONDS, not refresh_seconds.
    assert_eq!(sim.tick(RETRY_SECONDS).0.len(), 1);
    // The same list again (same `iat`) and a newer one are accepted.
    let mut store = Fetched::new(1);
    let config = &sim.config;
    let list = |body: &str| verify_status_list(config, 0, &Fetched::new(1), &PureRust, body.as_bytes(), NOW).unwrap();
    store.set_status_list(0, list(&v2)).unwrap();
    store.set_status_list(0, list(&v2)).unwrap();
    let e = store.set_status_list(0, list(&v1)).unwrap_err();
    assert!(e.contains("rollback"), "{e}");
    assert_eq!(store.status_list(0).and_then(|l| l.get(3)), Some(1));
    let v3 = signed(&[0, 0, 0, 0], NOW + 1, 3600);
    let v3_list = verify_status_list(config, 0, &Fetched::new(1), &PureRust, v3.as_bytes(), NOW + 1).unwrap();
    store.set_status_list(0, v3_list).unwrap();
    assert_eq!(store.status_list(0).and_then(|l| l.get(3)), Some(0), "a newer list is taken");
}
