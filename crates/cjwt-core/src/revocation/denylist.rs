//! Deny-lists pushed by configuration (SPEC §11 `revocation`): whether a
//! token is revoked by an (`iss`, `jti`) entry or an (`iss`, `sub`,
//! `issued_before`) entry of the compiled [`DenyList`]. A request costs at most
//! two hash lookups, with no allocation.

pub use crate::config::{DenyList, Duplicate};
use crate::token::claims::{numeric_date, Rounding};
use crate::token::verify::VerifiedToken;
use serde_json::Value;

/// Whether `token` is revoked by an entry of `list`: its (`iss`, `jti`) is
/// listed, or its (`iss`, `sub`) is listed and its `iat` is before the entry's
/// `issued_before`. A token of a listed subject without a usable `iat`
/// cannot show it was issued after the cut-off, and is revoked (fail closed).
pub fn revokes(list: &DenyList, token: &VerifiedToken) -> bool {
    if list.is_empty() {
        return false;
    }
    let iss = token.issuer();
    if token.jti.as_deref().is_some_and(|jti| list.lists_jti(iss, jti)) {
        return true;
    }
    let sub = token.claims.get("sub").and_then(Value::as_str);
    match sub.and_then(|sub| list.cut_off(iss, sub)) {
        None => false,
        // Exactly `iat < issued_before` for a fractional `iat` too: floor(x) < n
        // holds for an integer n exactly when x < n.
        Some(cut_off) => match numeric_date(&token.claims, "iat", Rounding::Down) {
            Ok(Some(iat)) => iat < cut_off,
            Ok(None) | Err(_) => true,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly
    use super::*;
    use serde_json::json;

    fn token(claims: Value) -> VerifiedToken {
        let mut t = VerifiedToken::for_tests(claims.clone());
        t.jti = claims.get("jti").and_then(Value::as_str).map(str::to_string);
        t
    }

    fn list() -> DenyList {
        let mut d = DenyList::default();
        d.add_jti("https://a", "j1").unwrap();
        d.add_jti("https://b", "j2").unwrap();
        d.add_subject("https://a", "bot", 1000).unwrap();
        d
    }

    #[test]
    fn jti_entries_are_keyed_on_issuer_and_jti() {
        let d = list();
        // (claims, revoked)
        for (claims, revoked) in [
            (json!({"iss": "https://a", "jti": "j1"}), true),
            (json!({"iss": "https://b", "jti": "j2"}), true),
            (json!({"iss": "https://a", "jti": "j2"}), false),
            (json!({"iss": "https://b", "jti": "j1"}), false),
            (json!({"iss": "https://a", "jti": "J1"}), false),
            (json!({"iss": "https://a"}), false),
            (json!({"iss": "https://c", "jti": "j1"}), false),
        ] {
            assert_eq!(revokes(&d, &token(claims.clone())), revoked, "{claims}");
        }
    }

    #[test]
    fn subject_entries_revoke_tokens_issued_before_the_cut_off() {
        let d = list();
        for (claims, revoked) in [
            (json!({"iss": "https://a", "sub": "bot", "iat": 999}), true),
            (json!({"iss": "https://a", "sub": "bot", "iat": 999.9}), true),
            (json!({"iss": "https://a", "sub": "bot", "iat": 1000}), false),
            (json!({"iss": "https://a", "sub": "bot", "iat": 1000.0}), false),
            (json!({"iss": "https://a", "sub": "bot", "iat": 1000.5}), false),
            (json!({"iss": "https://a", "sub": "bot", "iat": 5000}), false),
            // Without a usable `iat` it cannot show it came after: revoked.
            (json!({"iss": "https://a", "sub": "bot"}), true),
            (json!({"iss": "https://a", "sub": "bot", "iat": "999"}), true),
            // Another subject, another issuer, a non-string `sub`.
            (json!({"iss": "https://a", "sub": "alice", "iat": 1}), false),
            (json!({"iss": "https://b", "sub": "bot", "iat": 1}), false),
            (json!({"iss": "https://a", "sub": ["bot"], "iat": 1}), false),
        ] {
            assert_eq!(revokes(&d, &token(claims.clone())), revoked, "{claims}");
        }
    }

    #[test]
    fn duplicates_are_refused_and_entries_counted() {
        let mut d = list();
        assert_eq!(d.len(), 3);
        assert_eq!(d.add_jti("https://a", "j1"), Err(Duplicate::Entry));
        assert_eq!(d.add_subject("https://a", "bot", 5), Err(Duplicate::Entry));
        assert_eq!(d.add_subject("https://b", "bot", 5), Ok(()));
        assert!(DenyList::default().is_empty());
        assert!(!revokes(&DenyList::default(), &token(json!({"iss": "https://a", "jti": "j1"}))));
    }
}
