//! Deny-lists pushed by configuration (SPEC §11 `revocation`): (`iss`, `jti`)
//! entries and (`iss`, `sub`, `issued_before`) entries, compiled into hash maps
//! once, at load. A request costs at most two hash lookups, with no allocation.
//!
//! Keyed on claims, never on a hash of the token text: an ECDSA signature can be
//! re-encoded (`(r, n - s)`), giving another token text that still verifies.

use crate::token::claims::{numeric_date, Rounding};
use crate::token::verify::VerifiedToken;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The compiled `revocation` block: empty when none is configured.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DenyList {
    /// `iss` → revoked `jti`s.
    jti: HashMap<String, HashSet<String>>,
    /// `iss` → `sub` → `issued_before` (Unix seconds): tokens of that subject
    /// issued before it are revoked.
    subjects: HashMap<String, HashMap<String, i64>>,
}

/// Why an entry cannot be added (the compile step names the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// The entry is already listed.
    Entry,
}

impl DenyList {
    /// Adds a revoked (`iss`, `jti`); a duplicate is refused (a configuration
    /// listing the same token twice was most likely generated wrongly).
    pub fn add_jti(&mut self, iss: &str, jti: &str) -> Result<(), Duplicate> {
        if self.jti.entry(iss.to_string()).or_default().insert(jti.to_string()) {
            Ok(())
        } else {
            Err(Duplicate::Entry)
        }
    }

    /// Revokes every token of (`iss`, `sub`) issued before `issued_before`; a
    /// second entry for the same subject is refused (which cut-off would hold?).
    pub fn add_subject(&mut self, iss: &str, sub: &str, issued_before: i64) -> Result<(), Duplicate> {
        let subjects = self.subjects.entry(iss.to_string()).or_default();
        if subjects.contains_key(sub) {
            return Err(Duplicate::Entry);
        }
        subjects.insert(sub.to_string(), issued_before);
        Ok(())
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.jti.is_empty() && self.subjects.is_empty()
    }

    /// Number of entries (both kinds).
    pub fn len(&self) -> usize {
        self.jti.values().map(HashSet::len).chain(self.subjects.values().map(HashMap::len)).sum()
    }

    /// Whether `token` is revoked by an entry: its (`iss`, `jti`) is listed, or
    /// its (`iss`, `sub`) is listed and its `iat` is before the entry's
    /// `issued_before`. A token of a listed subject without a usable `iat`
    /// cannot show it was issued after the cut-off, and is revoked (fail closed).
    pub fn revokes(&self, token: &VerifiedToken) -> bool {
        if self.is_empty() {
            return false;
        }
        let iss = token.issuer();
        if let (Some(jti), Some(listed)) = (token.jti.as_deref(), self.jti.get(iss)) {
            if listed.contains(jti) {
                return true;
            }
        }
        let sub = token.claims.get("sub").and_then(Value::as_str);
        let cut_off = sub.and_then(|sub| self.subjects.get(iss).and_then(|s| s.get(sub)));
        match cut_off {
            None => false,
            // Exactly `iat < issued_before` for a fractional `iat` too: floor(x) < n
            // holds for an integer n exactly when x < n.
            Some(cut_off) => match numeric_date(&token.claims, "iat", Rounding::Down) {
                Ok(Some(iat)) => iat < *cut_off,
                Ok(None) | Err(_) => true,
            },
        }
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
            assert_eq!(d.revokes(&token(claims.clone())), revoked, "{claims}");
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
            assert_eq!(d.revokes(&token(claims.clone())), revoked, "{claims}");
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
        assert!(!DenyList::default().revokes(&token(json!({"iss": "https://a", "jti": "j1"}))));
    }
}
