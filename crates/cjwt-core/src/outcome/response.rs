//! The refusal response of SPEC §4: status, `www-authenticate`, JSON body.
//! Nothing from the request is ever echoed.

use crate::reason::{Class, Reason};

/// A local reply to send instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status of the reason ([`Reason::status`]): 401 or 403.
    pub status: u32,
    /// (lowercase name, value) pairs: `www-authenticate` and `content-type`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body: `{"error": …}`, with `"reason"` when `response.detail`.
    pub body: String,
}

impl Refusal {
    /// 503 when cjwt cannot decide or act safely (a broken clock, a header
    /// Envoy would not rewrite, an internal error).
    pub fn unavailable() -> Refusal {
        crate::outcome::plan::unavailable()
    }
}

/// Builds the refusal for `reason`. `detail` adds the reason code to the body and
/// to `error_description`. A 503 (the request could not be decided now) carries
/// `retry-after: 1` and no challenge: the credential is not at fault.
pub fn refusal(reason: Reason, realm: &str, detail: bool) -> Refusal {
    refusal_with(reason, realm, detail, None)
}

/// What a DPoP challenge adds (SPEC §10): the accepted proof algorithms and,
/// for `use_dpop_nonce`, the nonce to use.
#[derive(Debug, Clone, Copy)]
pub struct DpopChallenge<'a> {
    /// The `algs` parameter: accepted algorithms, space-separated.
    pub algs: &'a str,
    /// The current nonce, sent as `dpop-nonce` with `use_dpop_nonce`.
    pub nonce: Option<&'a str>,
}

/// [`refusal`], with the `DPoP` challenge of SPEC §10 for the DPoP reasons:
/// `DPoP realm="<realm>", error="<invalid_dpop_proof|use_dpop_nonce>",
/// error_description="<reason>", algs="<algorithms>"`, and a `dpop-nonce`
/// header with `use_dpop_nonce`. Other reasons get the Bearer form.
pub fn refusal_with(reason: Reason, realm: &str, detail: bool, dpop: Option<DpopChallenge<'_>>) -> Refusal {
    if reason.class() == Class::Unavailable {
        let error = reason.oauth_error().unwrap_or("temporarily_unavailable");
        let body = if detail {
            format!("{{\"error\":\"{error}\",\"reason\":\"{}\"}}", reason.code())
        } else {
            format!("{{\"error\":\"{error}\"}}")
        };
        return Refusal {
            status: reason.status(),
            headers: vec![("retry-after", "1".to_string()), ("content-type", "application/json".to_string())],
            body,
        };
    }
    if matches!(reason.class(), Class::DpopProof | Class::DpopNonce) {
        let error = reason.oauth_error().unwrap_or("invalid_dpop_proof");
        let mut challenge = format!("DPoP realm=\"{realm}\", error=\"{error}\"");
        if detail {
            challenge.push_str(&format!(", error_description=\"{}\"", reason.code()));
        }
        if let Some(d) = dpop.filter(|d| !d.algs.is_empty()) {
            challenge.push_str(&format!(", algs=\"{}\"", d.algs));
        }
        let body = if detail {
            format!("{{\"error\":\"{error}\",\"reason\":\"{}\"}}", reason.code())
        } else {
            format!("{{\"error\":\"{error}\"}}")
        };
        let mut headers = vec![("www-authenticate", challenge), ("content-type", "application/json".to_string())];
        if let Some(nonce) = dpop.and_then(|d| d.nonce).filter(|_| reason.class() == Class::DpopNonce) {
            headers.push(("dpop-nonce", nonce.to_string()));
        }
        return Refusal { status: reason.status(), headers, body };
    }
    let challenge = match reason.oauth_error() {
        None => format!("Bearer realm=\"{realm}\""),
        Some(error) if detail => {
            format!("Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"", reason.code())
        }
        Some(error) => format!("Bearer realm=\"{realm}\", error=\"{error}\""),
    };
    let error = reason.oauth_error().unwrap_or("invalid_token");
    let body = if detail {
        format!("{{\"error\":\"{error}\",\"reason\":\"{}\"}}", reason.code())
    } else {
        format!("{{\"error\":\"{error}\"}}")
    };
    Refusal {
        status: reason.status(),
        headers: vec![("www-authenticate", challenge), ("content-type", "application/json".to_string())],
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_has_a_bare_challenge() {
        let r = refusal(Reason::MissingToken, "cjwt", true);
        assert_eq!(r.status, 401);
        assert_eq!(r.headers[0].1, "Bearer realm=\"cjwt\"");
        assert_eq!(r.body, r#"{"error":"invalid_token","reason":"missing_token"}"#);
    }

    #[test]
    fn untrusted_tokens_are_invalid_token() {
        let r = refusal(Reason::Expired, "api", true);
        assert_eq!(r.status, 401);
        assert_eq!(r.headers[0].1, "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"expired\"");
    }

    #[test]
    fn constraint_failures_are_insufficient_scope() {
        let r = refusal(Reason::Ip, "cjwt", true);
        assert_eq!(r.status, 403);
        assert_eq!(r.headers[0].1, "Bearer realm=\"cjwt\", error=\"insufficient_scope\", error_description=\"ip\"");
        assert_eq!(r.body, r#"{"error":"insufficient_scope","reason":"ip"}"#);
        assert_eq!(r.headers[1], ("content-type", "application/json".to_string()));
    }

    #[test]
    fn an_unavailable_store_is_a_503_to_retry_without_a_challenge() {
        let r = refusal(Reason::UsageUnavailable, "cjwt", true);
        assert_eq!(r.status, 503);
        assert_eq!(r.headers, vec![("retry-after", "1".to_string()), ("content-type", "application/json".to_string())]);
        assert_eq!(r.body, r#"{"error":"temporarily_unavailable","reason":"usage_unavailable"}"#);
        assert_eq!(refusal(Reason::UsageUnavailable, "cjwt", false).body, r#"{"error":"temporarily_unavailable"}"#);
    }

    #[test]
    fn dpop_reasons_get_the_dpop_challenge_with_algs() {
        let d = DpopChallenge { algs: "ES256 EdDSA", nonce: Some("n0nce") };
        let r = refusal_with(Reason::DpopReplay, "cjwt", true, Some(d));
        assert_eq!(r.status, 401);
        assert_eq!(
            r.headers[0].1,
            "DPoP realm=\"cjwt\", error=\"invalid_dpop_proof\", error_description=\"dpop_replay\", algs=\"ES256 EdDSA\""
        );
        assert_eq!(r.body, r#"{"error":"invalid_dpop_proof","reason":"dpop_replay"}"#);
        assert_eq!(r.headers.len(), 2, "no nonce header but for use_dpop_nonce");
        let r = refusal_with(Reason::UseDpopNonce, "cjwt", false, Some(d));
        assert_eq!(r.headers[0].1, "DPoP realm=\"cjwt\", error=\"use_dpop_nonce\", algs=\"ES256 EdDSA\"");
        assert_eq!(r.headers[2], ("dpop-nonce", "n0nce".to_string()));
        assert_eq!(r.body, r#"{"error":"use_dpop_nonce"}"#);
        // Certificate reasons keep the Bearer form.
        let r = refusal_with(Reason::CertificateMismatch, "cjwt", true, Some(d));
        assert_eq!(
            r.headers[0].1,
            "Bearer realm=\"cjwt\", error=\"invalid_token\", error_description=\"certificate_mismatch\""
        );
    }

    #[test]
    fn without_detail_no_reason_is_disclosed() {
        let r = refusal(Reason::Window, "cjwt", false);
        assert_eq!(r.body, r#"{"error":"insufficient_scope"}"#);
        assert!(!r.headers[0].1.contains("window"));
    }
}
