//! A Txn-Token Service (draft-ietf-oauth-transaction-tokens, RFC 8693) for
//! the tests and the demo: `POST /token` with a token-exchange form is
//! answered with a Txn-Token signed with its key (`typ: txntoken+jwt`, `aud`
//! the trust domain, `sub` the subject token's, `scope` and `rctx` from the
//! request, a fresh `txn`), `GET /jwks` with its public key. It does not
//! verify the subject token (the gateway did, before asking); it refuses a
//! form that is not a Txn-Token exchange with 400 `invalid_request`. It can be
//! taken down ([`TxnService::set_down`]): it then closes every connection
//! without an answer.

use crate::http_server::{self, Answer};
use cjwt_core::encoding::b64;
use cjwt_core::mint::SigningKey;
use cjwt_core::txn::exchange;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The service's `kid`.
pub const KID: &str = "tts1";

/// A running Txn-Token Service on loopback (or on `0.0.0.0` with [`TxnService::start_on`]).
pub struct TxnService {
    pub port: u16,
    down: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
    key: &'static SigningKey,
}

impl TxnService {
    /// Signs with `key` (kid [`KID`]) for `trust_domain`, naming `workload`
    /// (the gateway that asks) as `req_wl`.
    pub fn start(key: &'static SigningKey, trust_domain: &str, workload: &str) -> TxnService {
        TxnService::start_on("127.0.0.1:0", key, trust_domain, workload)
    }

    /// Listening on `addr` (`0.0.0.0:0` for containers on a Docker network).
    pub fn start_on(addr: &str, key: &'static SigningKey, trust_domain: &str, workload: &str) -> TxnService {
        let down = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let (d, n, domain, workload) =
            (Arc::clone(&down), Arc::clone(&issued), trust_domain.to_string(), workload.to_string());
        // Down: every connection is closed without an answer.
        let port = http_server::start(addr, move |r| {
            if d.load(Ordering::SeqCst) {
                return None;
            }
            let (status, answer) = if r.path == "/jwks" {
                (200, json!({"keys": [key.public_jwk(Some(KID))]}).to_string())
            } else {
                match exchanged(&String::from_utf8_lossy(&r.body), key, &domain, &workload) {
                    Some(token) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        (200, exchange::answer(&token))
                    }
                    None => (400, json!({"error": "invalid_request"}).to_string()),
                }
            };
            Some(Answer::json(status, answer).with("cache-control", "no-store"))
        });
        TxnService { port, down, issued, key }
    }

    /// Down: every connection is closed without an answer. Up again with `false`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many Txn-Tokens it issued.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    /// Its JWKS (what `GET /jwks` answers).
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.public_jwk(Some(KID))]})
    }
}

/// The Txn-Token for a token-exchange form, or `None` when it is not one.
fn exchanged(form: &str, key: &SigningKey, domain: &str, workload: &str) -> Option<String> {
    let fields: Vec<(String, String)> =
        form.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), decode(v))).collect();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("grant_type")? != exchange::GRANT_TYPE
        || field("requested_token_type")? != exchange::TXN_TOKEN_TYPE
        || field("subject_token_type")? != exchange::ACCESS_TOKEN_TYPE
        || field("audience")? != domain
    {
        return None;
    }
    let subject: Value =
        serde_json::from_slice(&b64::decode(field("subject_token")?.split('.').nth(1)?.as_bytes())?).ok()?;
    let rctx: Value = match field("request_context") {
        Some(c) => serde_json::from_str(c).ok()?,
        None => json!({}),
    };
    let now = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    static TXN: AtomicUsize = AtomicUsize::new(0);
    let txn = format!("tts-{}-{}", std::process::id(), TXN.fetch_add(1, Ordering::SeqCst));
    let mut claims = json!({
        "aud": domain, "txn": txn, "sub": subject.get("sub")?, "scope": field("scope")?,
        "req_wl": workload, "iat": now, "exp": now + 60, "rctx": rctx,
        "tctx": {"iss": subject.get("iss")?}
    });
    if let Some(cnst) = subject.get("cnst") {
        // What keeps its meaning downstream, as the gateway would (no `max_uses`).
        let mut kept = cnst.clone();
        if let Some(o) = kept.as_object_mut() {
            o.remove("max_uses");
        }
        claims["tctx"]["cnst"] = kept;
    }
    Some(crate::txn_token(key, KID, &claims))
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3).unwrap_or_default()).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
