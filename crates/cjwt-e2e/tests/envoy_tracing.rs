//! The decision on the request's trace span (v3, issue 30), through a real
//! Envoy (CJWT_BUILD=wasm|native) tracing with its Zipkin tracer (JSON v2 over
//! HTTP) to a collector in the harness that keeps every span it is sent.
//!
//! The native module tags Envoy's active span itself (dynamic-module ABI
//! `http_get_active_span` / `http_span_set_tag`). proxy-wasm has no span call:
//! the wasm filter sets filter state `wasm.cjwt.span.<field>` and the tracer's
//! `custom_tags` read it (`value: "%FILTER_STATE(...:PLAIN)%"`), as README
//! "Tracing" tells operators to configure. Either way the tags are `cjwt.reason`,
//! `cjwt.rule`, `cjwt.issuer` and, only when `tracing.tags` names it,
//! `cjwt.subject`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint;
use cjwt_harness::envoy::{build, cluster, Build, Envoy, Options};
use cjwt_harness::zipkin::{tags_with_prefix, Collector, ENDPOINT};
use cjwt_harness::*;
use serde_json::{json, Value};
use std::time::Duration;

const ISSUER: &str = "https://idp.example.com";

fn token(extra: Value) -> String {
    bearer(&mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now(), extra)))
}

/// The `custom_tags` a wasm deployment adds (README "Tracing"); the native
/// module needs none.
fn custom_tags() -> String {
    let mut out = String::from("            custom_tags:\n");
    for field in ["reason", "rule", "issuer", "subject"] {
        out.push_str(&format!(
            "            - tag: cjwt.{field}\n              value: \"%FILTER_STATE(wasm.cjwt.span.{field}:PLAIN)%\"\n"
        ));
    }
    out
}

/// An Envoy with cjwt (`extra` merged into the test configuration) tracing every
/// request to `collector`; spans are sent one at a time.
fn start(extra: Value, collector: &Collector) -> Envoy {
    let tags = match build() {
        Build::Wasm => custom_tags(),
        Build::Native => String::new(),
    };
    let tracing = format!(
        "          stat_prefix: ingress\n          tracing:\n            random_sampling: {{ value: 100 }}\n{tags}            provider:\n              name: envoy.tracers.zipkin\n              typed_config:\n                \"@type\": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig\n                collector_cluster: zipkin\n                collector_endpoint: {ENDPOINT}\n                collector_endpoint_version: HTTP_JSON\n"
    );
    let runtime = "layered_runtime:\n  layers:\n  - name: flush-each-span\n    static_layer:\n      tracing.zipkin.min_flush_spans: 1\nstatic_resources:\n";
    let opts = Options {
        clusters: cluster("zipkin", collector.port),
        edits: vec![
            ("          stat_prefix: ingress\n".into(), tracing),
            ("static_resources:\n".into(), runtime.into()),
        ],
        ..Options::default()
    };
    Envoy::start(&config_json(extra), opts)
}

fn cjwt_tags(collector: &Collector, path: &str) -> Vec<(String, String)> {
    tags_with_prefix(&collector.span_for(path, Duration::from_secs(15)), "cjwt.")
}

/// One request: path, headers, the status, the `cjwt.*` tags its span carries.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, Vec<(String, String)>);

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    v.sort();
    v
}

fn rules() -> Value {
    json!({"rules": [
        {"match": {"path": "/open/**"}, "auth": "none"},
        {"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}}
    ]})
}

#[test]
fn allowed_and_refused_requests_carry_reason_rule_and_issuer_but_no_subject() {
    let collector = Collector::start();
    let envoy = start(rules(), &collector);
    let alice = token(json!({}));
    let ip = token(json!({"sub": "mallory", "cnst": {"ip": ["10.0.0.0/8"]}}));
    let forged = token(json!({"sub": "eve"})).replace('.', ".x");
    let cases: [Case<'_>; 6] = [
        (
            "/t/allowed",
            vec![("authorization", alice.as_str())],
            200,
            tags(&[("cjwt.reason", "allowed"), ("cjwt.rule", "default"), ("cjwt.issuer", ISSUER)]),
        ),
        ("/t/missing", vec![], 401, tags(&[("cjwt.reason", "missing_token"), ("cjwt.rule", "default")])),
        (
            "/t/ip",
            vec![("authorization", ip.as_str())],
            403,
            tags(&[("cjwt.reason", "ip"), ("cjwt.rule", "default"), ("cjwt.issuer", ISSUER)]),
        ),
        (
            "/admin/x",
            vec![("authorization", alice.as_str())],
            403,
            tags(&[("cjwt.reason", "role"), ("cjwt.rule", "1"), ("cjwt.issuer", ISSUER)]),
        ),
        (
            "/t/forged",
            vec![("authorization", forged.as_str())],
            401,
            // An unverified token gives no issuer (nor subject).
            vec![],
        ),
        ("/open/a", vec![], 200, tags(&[("cjwt.reason", "allowed"), ("cjwt.rule", "0")])),
    ];
    for (path, headers, status, _) in &cases {
        assert_eq!(envoy.get(path, headers).status, *status, "{path}");
    }
    for (path, _, _, want) in &cases {
        let got = cjwt_tags(&collector, path);
        if want.is_empty() {
            assert_eq!(got.len(), 2, "{path}: reason and rule only: {got:?}");
            assert!(got.iter().any(|(k, _)| k == "cjwt.reason") && got.iter().any(|(k, _)| k == "cjwt.rule"));
        } else {
            assert_eq!(&got, want, "{path}");
        }
    }
    let all = serde_json::to_string(&collector.spans()).unwrap();
    assert!(!all.contains("cjwt.subject"), "the subject is not tagged unless configured: {all}");
    assert!(!all.contains("mallory") && !all.contains("eve"), "no subject in any span: {all}");
}

#[test]
fn the_subject_is_tagged_when_configured_and_nothing_when_no_tag_is() {
    let collector = Collector::start();
    let mut cfg = rules();
    cfg["tracing"] = json!({"tags": ["reason", "rule", "issuer", "subject"]});
    let envoy = start(cfg, &collector);
    let alice = token(json!({}));
    assert_eq!(envoy.get("/t/subject", &[("authorization", alice.as_str())]).status, 200);
    assert_eq!(envoy.get("/admin/subject", &[("authorization", alice.as_str())]).status, 403);
    assert_eq!(
        cjwt_tags(&collector, "/t/subject"),
        tags(&[
            ("cjwt.reason", "allowed"),
            ("cjwt.rule", "default"),
            ("cjwt.issuer", ISSUER),
            ("cjwt.subject", "alice")
        ])
    );
    assert_eq!(
        cjwt_tags(&collector, "/admin/subject"),
        tags(&[("cjwt.reason", "role"), ("cjwt.rule", "1"), ("cjwt.issuer", ISSUER), ("cjwt.subject", "alice")])
    );

    // `tags: []`: the span carries nothing of cjwt's, the request is still traced.
    let quiet = Collector::start();
    let mut cfg = rules();
    cfg["tracing"] = json!({"tags": []});
    let envoy = start(cfg, &quiet);
    assert_eq!(envoy.get("/t/quiet", &[("authorization", alice.as_str())]).status, 200);
    assert_eq!(envoy.get("/t/quiet-refused", &[]).status, 401);
    assert_eq!(cjwt_tags(&quiet, "/t/quiet"), vec![]);
    assert_eq!(cjwt_tags(&quiet, "/t/quiet-refused"), vec![]);
}
