//! Enforcing a Txn-Token inside the mesh (SPEC §14): where it is read from,
//! the claims the draft requires, the trust domain and lifetime, and the
//! request context its `tctx` constraints are checked against (`rctx`).

use crate::config::{Caller, TokenSource, TxnDomain};
use crate::reason::Reason;
use crate::request::credential::Found;
use crate::request::view::RequestView;
use crate::token::jws;
use crate::token::verify::{is_txn_token, VerifiedToken};
use serde_json::Value;
use std::net::IpAddr;

/// The one Txn-Token of the request, from the `Txn-Token` header only. None:
/// `txn_token_in_authorization` when `Authorization` carries a token typed
/// `txntoken+jwt` (a Txn-Token is never an access token), else
/// `missing_txn_token` (an access token where a Txn-Token is required
/// included). More than one header is `multiple_tokens`.
pub fn find(view: &RequestView<'_>) -> Result<Found, Reason> {
    let mut values = view.header_values(super::HEADER);
    match (values.next(), values.next()) {
        (Some(token), None) => Ok(Found {
            token: token.to_vec(),
            source: TokenSource::Header { name: super::HEADER.to_string(), prefix: String::new() },
        }),
        (Some(_), Some(_)) => Err(Reason::MultipleTokens),
        (None, _) if view.header_values("authorization").any(carries_txn_token) => Err(Reason::TxnTokenInAuthorization),
        (None, _) => Err(Reason::MissingTxnToken),
    }
}

/// `require.caller`: the calling workload's identity (read from the peer
/// certificate or a trusted XFCC element) is one of the rule's identities, or,
/// when it lists none, the Txn-Token's `req_wl`. So a Txn-Token taken from the
/// mesh and replayed from outside it, or by another workload, is refused
/// (`caller_unidentified`, `caller_mismatch`).
pub fn check_caller(caller: &Caller, view: &RequestView<'_>, token: &VerifiedToken) -> Result<(), Reason> {
    let identity = crate::sender::mtls::caller_identity(caller.from, view)?;
    let accepted = match &caller.identities {
        Some(identities) => identities.contains(&identity),
        None => token.claims.get("req_wl").and_then(Value::as_str) == Some(identity.as_str()),
    };
    if accepted {
        Ok(())
    } else {
        Err(Reason::CallerMismatch)
    }
}

/// Whether an `Authorization` value is `<scheme> <JWS>` whose header says `txntoken+jwt`.
fn carries_txn_token(value: &[u8]) -> bool {
    let Some(text) = std::str::from_utf8(value).ok() else {
        return false;
    };
    let token = text.split_once(' ').map_or(text, |(_, t)| t).trim();
    jws::parse_jws(token).is_ok_and(|jws| is_txn_token(jws.typ.as_deref()))
}

/// The claims of SPEC §14, on every request: `txn`, `sub`, `scope`, `req_wl`
/// strings and `iat`, `exp` present (`incomplete_txn_token`); `rctx` an object
/// when present; `aud` the trust domain (`wrong_trust_domain`); not expired,
/// not issued in the future (clock skew included), and a lifetime within the
/// provider's `max_lifetime_seconds` (`lifetime_too_long`).
pub fn check_claims(domain: &TxnDomain, token: &VerifiedToken, now: i64, skew: i64) -> Result<(), Reason> {
    let claims = &token.claims;
    let strings = ["txn", "sub", "scope", "req_wl"];
    if !strings.iter().all(|c| claims.get(*c).and_then(Value::as_str).is_some_and(|s| !s.is_empty())) {
        return Err(Reason::IncompleteTxnToken);
    }
    let (Some(iat), Some(exp)) = (token.iat, token.exp) else {
        return Err(Reason::IncompleteTxnToken);
    };
    if claims.get("rctx").is_some_and(|r| !r.is_object()) {
        return Err(Reason::IncompleteTxnToken);
    }
    let in_domain = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == domain.trust_domain,
        Some(Value::Array(items)) => {
            items.len() == 1 && items.first().and_then(Value::as_str) == Some(&domain.trust_domain)
        }
        _ => false,
    };
    if !in_domain {
        return Err(Reason::WrongTrustDomain);
    }
    if now >= exp.saturating_add(skew) {
        return Err(Reason::Expired);
    }
    let not_before = token.nbf.map_or(iat, |nbf| nbf.max(iat));
    if now.saturating_add(skew) < not_before {
        return Err(Reason::NotYetValid);
    }
    if exp.saturating_sub(iat) > domain.max_lifetime_seconds {
        return Err(Reason::LifetimeTooLong);
    }
    Ok(())
}

/// The request as the Txn-Token was issued for it: the client address is
/// `rctx.req_ip` and the region `rctx.region` (absent when the Txn-Token
/// records none: an `ip` or `region` in `tctx` is then refused), whatever
/// this hop sees; the rest of the request is this hop's.
pub fn as_issued<'a>(view: &RequestView<'a>, token: &VerifiedToken) -> RequestView<'a> {
    let rctx = token.claims.get("rctx").and_then(Value::as_object);
    let ip = rctx
        .and_then(|r| r.get("req_ip"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map(crate::request::address::normalize);
    let region = rctx.and_then(|r| r.get("region")).and_then(Value::as_str).map(str::to_owned);
    view.with_origin(ip, region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientIpSource;
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    fn token(claims: Value) -> VerifiedToken {
        let mut t = VerifiedToken::for_tests(claims.clone());
        t.iat = claims.get("iat").and_then(Value::as_i64);
        t.exp = claims.get("exp").and_then(Value::as_i64);
        t
    }

    fn domain() -> TxnDomain {
        TxnDomain { trust_domain: "mesh.example".into(), max_lifetime_seconds: 300 }
    }

    #[test]
    fn the_claims_the_draft_requires() {
        let good = json!({"aud": "mesh.example", "txn": "t", "sub": "s", "scope": "p", "req_wl": "gw",
                          "iat": 1000, "exp": 1060, "rctx": {"req_ip": "192.0.2.1"}});
        assert_eq!(check_claims(&domain(), &token(good.clone()), 1010, 0), Ok(()));
        for missing in ["txn", "sub", "scope", "req_wl", "iat", "exp"] {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(missing);
            assert_eq!(check_claims(&domain(), &token(c), 1010, 0), Err(Reason::IncompleteTxnToken), "{missing}");
        }
        let mut c = good.clone();
        c["rctx"] = json!("192.0.2.1");
        assert_eq!(check_claims(&domain(), &token(c), 1010, 0), Err(Reason::IncompleteTxnToken));
        for aud in [json!("other.example"), json!(["mesh.example", "x"]), json!(null), json!(1)] {
            let mut c = good.clone();
            c["aud"] = aud.clone();
            assert_eq!(check_claims(&domain(), &token(c), 1010, 0), Err(Reason::WrongTrustDomain), "{aud}");
        }
        let mut c = good.clone();
        c["aud"] = json!(["mesh.example"]);
        assert_eq!(check_claims(&domain(), &token(c), 1010, 0), Ok(()));
        assert_eq!(check_claims(&domain(), &token(good.clone()), 1060, 0), Err(Reason::Expired));
        assert_eq!(check_claims(&domain(), &token(good.clone()), 1060, 5), Ok(()));
        assert_eq!(check_claims(&domain(), &token(good.clone()), 990, 5), Err(Reason::NotYetValid));
        let mut c = good.clone();
        c["exp"] = json!(1301);
        assert_eq!(check_claims(&domain(), &token(c), 1010, 0), Err(Reason::LifetimeTooLong));
    }

    #[test]
    fn the_txn_token_comes_from_its_header_only() {
        let jws = |typ: &str| {
            let seg = |v: Value| crate::encoding::b64::encode(v.to_string().as_bytes());
            format!("{}.{}.{}", seg(json!({"alg": "EdDSA", "typ": typ})), seg(json!({})), "c2ln")
        };
        let find_in = |host: &TestHost| {
            let view = RequestView::new(host, ClientIpSource::Peer, None, &[]);
            find(&view).map(|f| f.token)
        };
        let txn = jws("txntoken+jwt");
        assert_eq!(find_in(&TestHost::new("GET", "/").header("txn-token", &txn)), Ok(txn.clone().into_bytes()));
        let two = TestHost::new("GET", "/").header("txn-token", &txn).header("txn-token", &txn);
        assert_eq!(find_in(&two), Err(Reason::MultipleTokens));
        let bearer = format!("Bearer {txn}");
        let in_authz = TestHost::new("GET", "/").header("authorization", &bearer);
        assert_eq!(find_in(&in_authz), Err(Reason::TxnTokenInAuthorization));
        let access = format!("Bearer {}", jws("at+jwt"));
        assert_eq!(find_in(&TestHost::new("GET", "/").header("authorization", &access)), Err(Reason::MissingTxnToken));
        assert_eq!(find_in(&TestHost::new("GET", "/")), Err(Reason::MissingTxnToken));
    }

    #[test]
    fn the_origin_is_the_one_recorded_in_rctx() {
        let host = TestHost::new("GET", "/").property(&["source", "address"], "10.1.1.1:5000");
        let t = token(json!({"rctx": {"req_ip": "::ffff:192.0.2.7", "region": "eu-west-1"}}));
        let view = as_issued(&RequestView::new(&host, ClientIpSource::Peer, None, &[]), &t);
        assert_eq!(view.client_ip(), "192.0.2.7".parse().ok());
        assert_eq!(view.region(), Some("eu-west-1"));
        let bare = as_issued(&RequestView::new(&host, ClientIpSource::Peer, None, &[]), &token(json!({})));
        assert_eq!(bare.client_ip(), None);
        assert_eq!(bare.region(), None);
    }
}
