//! Issuing at the edge, exchanged (SPEC §14): the gateway asks the trust
//! domain's Txn-Token Service for the Txn-Token of an allowed request with an
//! RFC 8693 token exchange (draft-ietf-oauth-transaction-tokens, "Txn-Token
//! Request"), and verifies the answer before the request goes on with it.
//! The call is sent by the adapter as it sends usage-store calls
//! ([`crate::lifecycle::request::Step::AwaitStore`]); nothing here touches a host.
//!
//! No answer is cached: a Txn-Token names one transaction (`txn`), so every
//! request is exchanged on its own.

use crate::config::{Config, ProviderKind};
use crate::encoding::json;
use crate::keys::host_crypto::HostCrypto;
use crate::reason::Reason;
use crate::request::view::RequestView;
use crate::token::verify::{verify_txn, KeyLookup, TokenText};
use crate::txn::enforce;
use serde_json::{json, Map, Value};

/// RFC 8693 §2.1 `grant_type`.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The draft's `requested_token_type` (and the answer's `issued_token_type`).
pub const TXN_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";
/// RFC 8693 §3: the inbound token is an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The request's media type (RFC 6749 §4.1.3, RFC 8693 §2.1).
pub const FORM: &str = "application/x-www-form-urlencoded";
/// The largest answer read (a Txn-Token is at most `max_token_bytes`, 16 KiB by default).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024;

/// One exchange to make: the form to post, and the subject whose Txn-Token
/// must come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The `application/x-www-form-urlencoded` body.
    pub body: String,
    /// The inbound token's `sub`: the answer must name the same.
    pub subject: String,
}

/// The exchange for an allowed request, as draft-ietf-oauth-transaction-tokens-10
/// §"Txn-Token Request" lists it: `audience` the trust domain, `scope` the
/// rule's `txn_scope` (or the default), `subject_token` the inbound token, and
/// `request_context` the JSON object `{"req_ip": ..., "region": ...}` (the
/// client address and region the decision was made with; `{}` when it has
/// none), form-encoded like every other parameter.
pub fn request(subject_token: &str, audience: &str, scope: &str, subject: &str, view: &RequestView<'_>) -> Pending {
    let mut context = Map::new();
    if let Some(ip) = view.client_ip() {
        context.insert("req_ip".into(), ip.to_string().into());
    }
    if let Some(region) = view.region() {
        context.insert("region".into(), region.into());
    }
    let context = Value::Object(context).to_string();
    let fields = [
        ("grant_type", GRANT_TYPE),
        ("audience", audience),
        ("requested_token_type", TXN_TOKEN_TYPE),
        ("subject_token", subject_token),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("scope", scope),
        ("request_context", context.as_str()),
    ];
    let body = fields.iter().map(|(k, v)| format!("{k}={}", form_encode(v))).collect::<Vec<_>>().join("&");
    Pending { body, subject: subject.to_string() }
}

/// `application/x-www-form-urlencoded` escaping: everything but RFC 3986's
/// unreserved characters is `%XX`.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why an exchange gave no Txn-Token: the reason the request is refused
/// with, and a line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `txn_service_unavailable` (no answer, or not a 200) or
    /// `txn_exchange_invalid` (an answer that is not a good Txn-Token).
    pub reason: Reason,
    /// What happened, for the log.
    pub why: String,
}

impl Failure {
    /// The service did not answer, or not with a 200.
    pub fn unavailable(why: impl Into<String>) -> Failure {
        Failure { reason: Reason::TxnServiceUnavailable, why: why.into() }
    }

    fn invalid(why: impl Into<String>) -> Failure {
        Failure { reason: Reason::TxnExchangeInvalid, why: why.into() }
    }
}

/// The service's answer (HTTP `status`, `body`), verified: a 200 whose JSON
/// says `issued_token_type` txn_token and whose `access_token` is a Txn-Token
/// signed with a key of the exchange's `kind: txn_token` provider (`typ`,
/// `iss` when the provider names one, the signature), with the claims the
/// draft requires, `aud` the trust domain, a lifetime within the provider's,
/// valid at `now`, and the same `sub` as the inbound token. Returns the
/// Txn-Token to set upstream.
pub fn verify_answer(
    config: &Config,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    status: Option<&str>,
    body: &[u8],
    pending: &Pending,
    now: i64,
) -> Result<String, Failure> {
    let Some(exchange) = config.txn_issue().and_then(|i| i.exchange.as_ref()) else {
        return Err(Failure::invalid("no exchange configured"));
    };
    match status {
        Some("200") => {}
        Some(other) => return Err(Failure::unavailable(format!("the service answered {other}"))),
        None => return Err(Failure::unavailable("the service answered without a status")),
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(Failure::invalid(format!("an answer of {} bytes", body.len())));
    }
    let answer = json::parse_object(body).map_err(|_| Failure::invalid("the answer is not a JSON object"))?;
    if answer.get("issued_token_type").and_then(Value::as_str) != Some(TXN_TOKEN_TYPE) {
        return Err(Failure::invalid("the answer's issued_token_type is not txn_token"));
    }
    // The draft: `token_type` MUST be `N_A` (RFC 8693 §2.2.1, a token that is
    // not an access token), and the answer MUST NOT carry a refresh token.
    if answer.get("token_type").and_then(Value::as_str) != Some("N_A") {
        return Err(Failure::invalid("the answer's token_type is not N_A"));
    }
    if answer.contains_key("refresh_token") {
        return Err(Failure::invalid("the answer carries a refresh_token"));
    }
    let Some(token) = answer.get("access_token").and_then(Value::as_str) else {
        return Err(Failure::invalid("the answer has no access_token"));
    };
    let Some(ProviderKind::TxnToken(domain)) = config.providers.get(exchange.provider).map(|p| &p.kind) else {
        return Err(Failure::invalid("no Txn-Token provider"));
    };
    let text = TokenText::admit(config, token.as_bytes()).map_err(|r| Failure::invalid(r.code()))?;
    let verified = verify_txn(config, keys, crypto, text, exchange.provider)
        .map_err(|r| Failure::invalid(format!("the Txn-Token is refused: {}", r.reason.code())))?;
    enforce::check_claims(domain, &verified, now, config.clock_skew_seconds)
        .map_err(|r| Failure::invalid(format!("the Txn-Token is refused: {}", r.code())))?;
    if verified.claims.get("sub").and_then(Value::as_str) != Some(pending.subject.as_str()) {
        return Err(Failure::invalid("the Txn-Token is about another subject"));
    }
    Ok(token.to_string())
}

/// An RFC 8693 §2.2.1 answer carrying `txn_token` (for the harness' service and tests).
pub fn answer(txn_token: &str) -> String {
    json!({"access_token": txn_token, "issued_token_type": TXN_TOKEN_TYPE, "token_type": "N_A"}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_escapes_all_but_unreserved() {
        assert_eq!(form_encode("a b+c/=&~._-Z9"), "a%20b%2Bc%2F%3D%26~._-Z9");
    }
}
