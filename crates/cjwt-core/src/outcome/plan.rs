//! What an adapter does with a decision, worked out once for both builds: the
//! header operations to apply before forwarding or the refusal to send, the
//! counters to bump, and the log line. An adapter executes a [`Plan`] with its
//! host's calls and decides nothing, so the wasm filter, the native module and
//! `cjwt explain` act alike by construction.

use crate::config::{Config, SpanField};
use crate::engine::{Decision, Denial, Outcome};
use crate::outcome::forward::{self, HeaderEdits};
use crate::outcome::metrics::Counter;
use crate::outcome::response::{refusal, refusal_with, DpopChallenge, Refusal};
use crate::outcome::Level;
use crate::reason::Reason;
use crate::request::host::Host;
use crate::request::view::RequestView;

/// The adapter's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Forward the request after these request-header operations, in order:
    /// `(name, None)` removes every value of `name`, `(name, Some(v))` replaces
    /// them with `v`. An adapter that cannot apply one must refuse with 503
    /// rather than forward a client-supplied value.
    Forward(Vec<(String, Option<String>)>),
    /// Answer locally; the request never reaches the upstream.
    Refuse(Refusal),
}

/// Everything an adapter does for one decided request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Forward or refuse.
    pub act: Act,
    /// Counters to increment by one.
    pub counters: Vec<Counter>,
    /// Log lines, in order: a refusal's (info), the usage store's failure
    /// (warn). Never the token.
    pub logs: Vec<(Level, String)>,
    /// The decision for Envoy's access log (SPEC §12): `(field, value)` with
    /// `field` one of `reason`, `sub`, `iss`, `rule`. The wasm filter sets them as
    /// filter state `cjwt.<field>` (`%FILTER_STATE(wasm.cjwt.reason:PLAIN)%`), the
    /// native module as dynamic metadata in namespace `cjwt`
    /// (`%DYNAMIC_METADATA(cjwt:reason)%`).
    pub audit: Vec<(&'static str, String)>,
    /// The decision's fields for the request's trace span (v3, issue 30), the
    /// ones `tracing.tags` names, in [`SpanField::ALL`] order: the native module
    /// sets each as the tag [`SpanField::tag`] on Envoy's active span; the wasm
    /// filter, which proxy-wasm gives no span, as the filter state
    /// [`SpanField::filter_state`] for the tracer's `custom_tags`.
    pub span: Vec<(SpanField, String)>,
}

/// The host calls that execute a [`Plan`] ([`Plan::execute`]): each method is
/// one call of the adapter's host, and none decides anything.
pub trait PlanHost {
    /// Increments `counter` by one.
    fn count(&mut self, counter: Counter);
    /// Writes `line` to the host's log at `level`.
    fn log(&mut self, level: Level, line: &str);
    /// Records one field of the decision for the access log ([`Plan::audit`]).
    fn audit(&mut self, field: &'static str, value: &str);
    /// Tags the request's trace span ([`Plan::span`]); called only with tags.
    fn span(&mut self, tags: &[(SpanField, String)]);
    /// Applies one request-header operation (`None` removes every value);
    /// `false` when the host could not.
    fn set_header(&mut self, name: &str, value: Option<&str>) -> bool;
    /// Answers the request locally with `refusal`; it never reaches the upstream.
    fn refuse(&mut self, refusal: &Refusal);
}

/// The proxy-wasm filter state an access-log field ([`Plan::audit`]) is set as:
/// `cjwt.<field>`, read as `%FILTER_STATE(wasm.cjwt.<field>:PLAIN)%` (SPEC §12).
pub fn audit_filter_state(field: &str) -> &'static str {
    match field {
        "reason" => "cjwt.reason",
        "sub" => "cjwt.sub",
        "iss" => "cjwt.iss",
        _ => "cjwt.rule",
    }
}

impl Plan {
    /// Executes the plan on `host` in the one order both builds follow: the
    /// counters, the log lines, the access-log fields, the span's tags, then
    /// the header operations and forward, or the refusal. A header operation
    /// the host cannot apply stops the request with 503: it is never forwarded
    /// with a client-supplied value intact. Returns whether the request goes
    /// upstream.
    pub fn execute(self, host: &mut impl PlanHost) -> bool {
        for counter in &self.counters {
            host.count(*counter);
        }
        for (level, line) in &self.logs {
            host.log(*level, line);
        }
        for (field, value) in &self.audit {
            host.audit(field, value);
        }
        if !self.span.is_empty() {
            host.span(&self.span);
        }
        match self.act {
            Act::Forward(ops) => {
                for (name, value) in &ops {
                    if !host.set_header(name, value.as_deref()) {
                        host.log(Level::Error, "cjwt: could not rewrite request headers; refusing");
                        host.refuse(&unavailable());
                        return false;
                    }
                }
                true
            }
            Act::Refuse(refusal) => {
                host.refuse(&refusal);
                false
            }
        }
    }
}

/// The provider whose keys are missing, when the decision is a refusal that a key
/// fetch could change (`unknown_key`, `keys_unavailable`): an adapter that can
/// fetch keys may pause the request, fetch, and decide again instead of acting.
pub fn awaits_keys(decision: &Decision) -> Option<usize> {
    match decision {
        Decision::Deny(d) | Decision::DryRunDeny(d) => d.provider,
        Decision::Allow { .. } => None,
    }
}

/// The longest `sub` or `iss` written to the access log; a longer one is left out.
pub const AUDIT_MAX_BYTES: usize = 256;

/// The access-log fields of a decided request: `reason` is `allowed` or the
/// reason code (in `dry_run`, the code of the refusal that was let through);
/// `sub` and `iss` come from the verified token only (never from an unverified
/// one), and only when printable and at most [`AUDIT_MAX_BYTES`]; `rule` is the
/// index of the deciding rule or `default`.
pub fn audit(outcome: &Outcome) -> Vec<(&'static str, String)> {
    let reason = match &outcome.decision {
        Decision::Allow { .. } => "allowed",
        Decision::Deny(d) | Decision::DryRunDeny(d) => d.reason.code(),
    };
    let mut fields = Vec::with_capacity(4);
    fields.push(("reason", reason.to_string()));
    if let Some(token) = &outcome.verified {
        let sub = token.claims.get("sub").and_then(|v| v.as_str());
        for (field, value) in [("sub", sub), ("iss", Some(token.issuer()))] {
            let printable = |v: &&str| v.len() <= AUDIT_MAX_BYTES && v.bytes().all(|b| b >= 0x20 && b != 0x7f);
            if let Some(v) = value.filter(|v| !v.is_empty()).filter(printable) {
                fields.push((field, v.to_string()));
            }
        }
    }
    match outcome.rule {
        Some(Some(i)) => fields.push(("rule", i.to_string())),
        Some(None) => fields.push(("rule", "default".to_string())),
        None => {}
    }
    fields
}

/// The span tags of a decided request: the [`audit`] fields that
/// `tracing.tags` names (`sub` and `iss` only from a verified token, printable
/// and at most [`AUDIT_MAX_BYTES`]).
pub fn span_tags(config: &Config, audit: &[(&'static str, String)]) -> Vec<(SpanField, String)> {
    config
        .span_fields
        .iter()
        .filter_map(|field| {
            let name = match field {
                SpanField::Reason => "reason",
                SpanField::Rule => "rule",
                SpanField::Issuer => "iss",
                SpanField::Subject => "sub",
            };
            audit.iter().find(|(f, _)| *f == name).map(|(_, v)| (*field, v.clone()))
        })
        .collect()
}

/// The plan for a decided request. An outcome still waiting for the usage
/// store ([`Outcome::pending_use`]: the adapter did not ask it) is refused with
/// 503 `usage_unavailable`, never forwarded.
pub fn plan(config: &Config, outcome: &Outcome, host: &dyn Host) -> Plan {
    // Read through the view, as the decision was (request/view.rs).
    let request = &RequestView::for_config(host, config);
    if outcome.pending_use.is_some() {
        let reason = Reason::UsageUnavailable;
        let audit = vec![("reason", reason.code().to_string())];
        return Plan {
            act: Act::Refuse(refusal(reason, &config.realm, config.detail)),
            counters: vec![Counter::Denied, Counter::DeniedBy(reason)],
            logs: vec![(
                Level::Info,
                format!("cjwt: denied reason={} status={} (usage store not asked)", reason.code(), reason.status()),
            )],
            span: span_tags(config, &audit),
            audit,
        };
    }
    let audit = audit(outcome);
    let span = span_tags(config, &audit);
    let mut counters = Vec::with_capacity(4);
    match outcome.cache_hit {
        Some(true) => counters.push(Counter::CacheHit),
        Some(false) => counters.push(Counter::CacheMiss),
        None => {}
    }
    match outcome.store_ok {
        Some(true) => counters.push(Counter::UsageStoreOk),
        Some(false) => counters.push(Counter::UsageStoreFailed),
        None => {}
    }
    match &outcome.decision {
        Decision::Allow { token, credential } => {
            counters.push(Counter::Allowed);
            let mut edits = forward::edits(&config.forward, token.as_deref(), credential.as_ref(), request);
            strip_proof(config, &mut edits, request);
            attach_txn_token(config, outcome.issued.as_deref(), &mut edits, request);
            Plan { act: Act::Forward(header_operations(&edits, request)), counters, logs: Vec::new(), audit, span }
        }
        Decision::DryRunDeny(denial) => {
            counters.push(Counter::DryRunDenied(denial.reason));
            let mut edits = forward::edits(&config.forward, None, denial.credential.as_ref(), request);
            strip_proof(config, &mut edits, request);
            attach_txn_token(config, None, &mut edits, request);
            Plan {
                act: Act::Forward(header_operations(&edits, request)),
                counters,
                logs: vec![(Level::Info, log_line(denial, true))],
                audit,
                span,
            }
        }
        Decision::Deny(denial) => {
            counters.push(Counter::Denied);
            counters.push(Counter::DeniedBy(denial.reason));
            Plan {
                act: Act::Refuse(deny(config, denial.reason, request)),
                counters,
                logs: vec![(Level::Info, log_line(denial, false))],
                audit,
                span,
            }
        }
    }
}

/// The refusal for `reason`: with `dpop` configured, the DPoP reasons carry its
/// `algs` and `use_dpop_nonce` the nonce current at the request's time.
fn deny(config: &Config, reason: Reason, request: &RequestView<'_>) -> Refusal {
    let Some(dpop) = &config.sender.dpop else {
        return refusal(reason, &config.realm, config.detail);
    };
    let nonce = match (&dpop.nonce, reason) {
        (Some(key), Reason::UseDpopNonce) => Some(crate::sender::nonce::current(key, request.now())),
        _ => None,
    };
    let challenge = DpopChallenge { algs: &dpop.algs, nonce: nonce.as_deref() };
    refusal_with(reason, &config.realm, config.detail, Some(challenge))
}

/// `cjwt: denied reason=<code> status=<status> token=<fingerprint>`.
fn log_line(denial: &Denial, dry_run: bool) -> String {
    let mode = if dry_run { " (dry_run: allowed)" } else { "" };
    let fp = denial.fingerprint.as_deref().unwrap_or("-");
    format!("cjwt: denied reason={} status={} token={fp}{mode}", denial.reason.code(), denial.reason.status())
}

/// With `dpop` configured, the proof never goes upstream (SPEC §10): `dpop` is
/// removed from every forwarded request that carries one (a request without
/// one costs no header operation).
fn strip_proof(config: &Config, edits: &mut HeaderEdits, request: &RequestView<'_>) {
    let name = crate::sender::DPOP_HEADER;
    if config.sender.dpop.is_some()
        && request.header_values(name).next().is_some()
        && !edits.remove.iter().any(|h| h == name)
    {
        edits.remove.push(name.to_string());
    }
}

/// With `transaction_tokens.issue` (SPEC §14) the gateway is the only source
/// of Txn-Tokens: a client's `txn-token` is removed from every forwarded
/// request, and the Txn-Token signed for an allowed one is set in its place.
fn attach_txn_token(config: &Config, issued: Option<&str>, edits: &mut HeaderEdits, request: &RequestView<'_>) {
    let name = crate::txn::HEADER;
    if config.txn_issue.is_none() {
        return;
    }
    match issued {
        Some(token) => edits.set.push((name.to_string(), token.to_string())),
        None if request.header_values(name).next().is_some() && !edits.remove.iter().any(|h| h == name) => {
            edits.remove.push(name.to_string());
        }
        None => {}
    }
}

/// Header edits as set/remove operations on the request as received: client
/// copies removed, verified values set, then the token stripped from `:path` or
/// from the `cookie` header(s) (joined into one, or removed when nothing is left).
pub fn header_operations(edits: &HeaderEdits, request: &RequestView<'_>) -> Vec<(String, Option<String>)> {
    let mut ops: Vec<(String, Option<String>)> = edits.remove.iter().map(|n| (n.clone(), None)).collect();
    ops.extend(edits.set.iter().map(|(n, v)| (n.clone(), Some(v.clone()))));
    if let Some(path) = &edits.path {
        ops.push((":path".to_string(), Some(path.clone())));
    }
    if let Some(cookie) = &edits.drop_cookie {
        let kept: Vec<String> = request
            .header_values("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter_map(|v| forward::remove_cookie(v, cookie))
            .collect();
        ops.push(("cookie".to_string(), if kept.is_empty() { None } else { Some(kept.join("; ")) }));
    }
    ops
}

/// 503 when cjwt cannot decide or act safely (a broken clock, a header Envoy
/// would not rewrite, an internal error): the request never reaches the upstream.
pub fn unavailable() -> Refusal {
    Refusal {
        status: 503,
        headers: vec![("content-type", "application/json".to_string())],
        body: "{\"error\":\"unavailable\"}".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that records its calls and refuses header operations when told to.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        header_fails: bool,
    }

    impl PlanHost for Recorder {
        fn count(&mut self, counter: Counter) {
            self.calls.push(format!("count {}", counter.name()));
        }
        fn log(&mut self, level: Level, line: &str) {
            self.calls.push(format!("log {level:?} {line}"));
        }
        fn audit(&mut self, field: &'static str, value: &str) {
            self.calls.push(format!("audit {field}={value}"));
        }
        fn span(&mut self, tags: &[(SpanField, String)]) {
            self.calls.push(format!("span {}", tags.len()));
        }
        fn set_header(&mut self, name: &str, value: Option<&str>) -> bool {
            self.calls.push(format!("header {name}={value:?}"));
            !self.header_fails
        }
        fn refuse(&mut self, refusal: &Refusal) {
            self.calls.push(format!("refuse {}", refusal.status));
        }
    }

    fn forward(ops: Vec<(String, Option<String>)>) -> Plan {
        Plan {
            act: Act::Forward(ops),
            counters: vec![Counter::Allowed],
            logs: vec![(Level::Info, "line".into())],
            audit: vec![("reason", "allowed".into())],
            span: Vec::new(),
        }
    }

    #[test]
    fn a_plan_runs_in_one_order_and_forwards_after_every_header_operation() {
        let mut host = Recorder::default();
        let ops = vec![("x-cjwt-sub".to_string(), Some("alice".to_string())), ("authorization".to_string(), None)];
        assert!(forward(ops).execute(&mut host));
        assert_eq!(
            host.calls,
            [
                "count cjwt.allowed",
                "log Info line",
                "audit reason=allowed",
                "header x-cjwt-sub=Some(\"alice\")",
                "header authorization=None"
            ]
        );
    }

    #[test]
    fn a_header_operation_the_host_cannot_apply_refuses_503_and_never_forwards() {
        let mut host = Recorder { header_fails: true, ..Recorder::default() };
        let ops = vec![("authorization".to_string(), None), ("x-cjwt-sub".to_string(), Some("alice".to_string()))];
        assert!(!forward(ops).execute(&mut host));
        assert_eq!(
            host.calls.get(3..).unwrap(),
            ["header authorization=None", "log Error cjwt: could not rewrite request headers; refusing", "refuse 503"]
        );
    }

    #[test]
    fn a_refusal_is_sent_and_never_forwarded() {
        let mut host = Recorder::default();
        let plan = Plan { act: Act::Refuse(unavailable()), ..forward(Vec::new()) };
        assert!(!plan.execute(&mut host));
        assert_eq!(host.calls.last().map(String::as_str), Some("refuse 503"));
    }
}
