//! Issuing at the edge, self-issued (SPEC §14): the Txn-Token an allowed
//! request goes upstream with, signed with the gateway's key. It names the
//! transaction (`txn`, unique per request), the subject and purpose, the
//! gateway (`req_wl`), the request context the decision was made with
//! (`rctx`) and the original token's identity and the constraints that keep
//! their meaning downstream (`tctx`).

use crate::config::{Config, Rule, TxnIssue};
use crate::constraints;
use crate::encoding::b64;
use crate::keys::signing::TxnSigningKey;
use crate::reason::Reason;
use crate::request::view::RequestView;
use crate::sender;
use crate::token::claims::lookup_unambiguous;
use crate::token::verify::{VerifiedToken, TXN_TOKEN_TYP};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Transaction ids: 128 bits of SHA-256 over a per-engine random seed and a
/// counter, so unique per request without a random draw per request.
#[derive(Debug)]
pub struct TxnIds {
    seed: [u8; 16],
    next: u64,
}

impl TxnIds {
    /// Seeded from the standard library's per-process random keys (the
    /// host's random source: WASI `random_get` in the wasm VM, the OS natively).
    pub fn new() -> TxnIds {
        use std::hash::{BuildHasher, Hasher};
        let mut seed = [0u8; 16];
        for (i, half) in seed.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        TxnIds { seed, next: 0 }
    }

    /// The next id: 22 base64url characters.
    pub fn next_id(&mut self) -> String {
        self.next = self.next.wrapping_add(1);
        let digest = Sha256::new().chain_update(self.seed).chain_update(self.next.to_be_bytes()).finalize();
        b64::encode(digest.get(..16).unwrap_or_default())
    }
}

impl Default for TxnIds {
    fn default() -> TxnIds {
        TxnIds::new()
    }
}

/// The subject the Txn-Token names: the verified token's `sub` (a non-empty
/// string). A token without one is refused `claim` before anything is counted:
/// a Txn-Token must name its subject (the draft's `sub` is required).
pub fn subject(token: &VerifiedToken) -> Result<&str, Reason> {
    token.claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(Reason::Claim)
}

/// What the Txn-Token of one allowed request is made of, besides the configuration.
pub struct Issued<'r> {
    /// The verified external token.
    pub token: &'r VerifiedToken,
    /// The rule that allowed the request.
    pub rule: &'r Rule,
    /// The request, read as the decision read it.
    pub view: &'r RequestView<'r>,
    /// The transaction id.
    pub txn: String,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The signed Txn-Token (compact JWS); `txn_issue_failed` if the signer fails.
pub fn mint(config: &Config, issue: &TxnIssue, at: &Issued<'_>) -> Result<String, Reason> {
    let payload = claims(config, issue, at)?;
    let key = issue.key.as_ref().ok_or(Reason::TxnIssueFailed)?;
    sign(key, issue.kid.as_deref(), &payload).ok_or(Reason::TxnIssueFailed)
}

/// `payload` as a Txn-Token (`typ: txntoken+jwt`) signed with `key`, `kid` in
/// its header if given; `None` if the signer fails. The gateway and `cjwt
/// txn-token` both sign with this.
pub fn sign(key: &TxnSigningKey, kid: Option<&str>, payload: &Value) -> Option<String> {
    let mut header = json!({"alg": key.alg().name(), "typ": TXN_TOKEN_TYP});
    if let (Some(kid), Value::Object(h)) = (kid, &mut header) {
        h.insert("kid".into(), kid.into());
    }
    let input =
        format!("{}.{}", b64::encode(header.to_string().as_bytes()), b64::encode(payload.to_string().as_bytes()));
    let signature = key.sign(input.as_bytes())?;
    Some(format!("{input}.{}", b64::encode(&signature)))
}

/// The payload (see the module's documentation). `exp` is at most the
/// external token's: a Txn-Token never outlives the token it stands for.
pub fn claims(config: &Config, issue: &TxnIssue, at: &Issued<'_>) -> Result<Value, Reason> {
    let Issued { token, rule, view, txn, now } = at;
    let scope = rule.txn_scope.as_ref().or(issue.scope.as_ref()).ok_or(Reason::TxnIssueFailed)?;
    let exp = token
        .exp
        .map_or(now.saturating_add(issue.lifetime_seconds), |e| e.min(now.saturating_add(issue.lifetime_seconds)));
    let mut rctx = Map::new();
    if let Some(ip) = view.client_ip() {
        rctx.insert("req_ip".into(), ip.to_string().into());
    }
    rctx.insert("authn".into(), authn(config, token).into());
    if let Some(region) = view.region() {
        rctx.insert("region".into(), region.into());
    }
    let mut tctx = Map::new();
    tctx.insert("iss".into(), token.issuer().into());
    if let Some(jti) = &token.jti {
        tctx.insert("jti".into(), jti.as_str().into());
    }
    if let Some(cnst) = downstream_constraints(config, token) {
        tctx.insert("cnst".into(), Value::Object(cnst));
    }
    let mut out = Map::new();
    if let Some(iss) = &issue.issuer {
        out.insert("iss".into(), iss.as_str().into());
    }
    out.insert("aud".into(), issue.trust_domain.as_str().into());
    out.insert("txn".into(), txn.as_str().into());
    out.insert("sub".into(), subject(token)?.into());
    out.insert("iat".into(), (*now).into());
    out.insert("exp".into(), exp.into());
    out.insert("scope".into(), scope.as_str().into());
    out.insert("req_wl".into(), issue.workload.as_str().into());
    out.insert("rctx".into(), Value::Object(rctx));
    out.insert("tctx".into(), Value::Object(tctx));
    Ok(Value::Object(out))
}

/// How the caller authenticated: `dpop` or `mtls` for a token bound to a
/// proof key or a certificate (the binding was checked), else `bearer`.
fn authn(config: &Config, token: &VerifiedToken) -> &'static str {
    match sender::binding(&token.claims, &config.sender) {
        Ok(b) if b.jkt.is_some() => "dpop",
        Ok(b) if b.x5t.is_some() => "mtls",
        _ => "bearer",
    }
}

/// The external token's constraints that keep their meaning downstream
/// ([`constraints::Kind::downstream`] and the custom constraints), as written;
/// `None` when it carries none. `max_uses` was consumed here, at the edge.
fn downstream_constraints(config: &Config, token: &VerifiedToken) -> Option<Map<String, Value>> {
    let cnst = lookup_unambiguous(&token.claims, &config.constraints_claim).ok()??.as_object()?;
    let keeps = |name: &str| {
        constraints::kind(name)
            .map_or_else(|| config.custom_constraints.iter().any(|(n, _)| n == name), |k| k.downstream)
    };
    let kept: Map<String, Value> = cnst.iter().filter(|(k, _)| keeps(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_unique_per_request_and_per_engine() {
        let (mut a, mut b) = (TxnIds::new(), TxnIds::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(a.next_id()));
            assert!(seen.insert(b.next_id()));
        }
        assert!(seen.iter().all(|id| id.len() == 22));
    }
}
