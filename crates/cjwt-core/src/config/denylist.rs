//! The deny-list pushed by configuration (SPEC §11 `revocation`), compiled:
//! (`iss`, `jti`) entries and (`iss`, `sub`, `issued_before`) entries in hash
//! maps, built once at load. Whether a token is revoked is decided by
//! [`crate::revocation`], with two lookups and no allocation.
//!
//! Keyed on claims, never on a hash of the token text: an ECDSA signature can be
//! re-encoded (`(r, n - s)`), giving another token text that still verifies.

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

    /// Whether (`iss`, `jti`) is listed.
    pub fn lists_jti(&self, iss: &str, jti: &str) -> bool {
        self.jti.get(iss).is_some_and(|listed| listed.contains(jti))
    }

    /// The `issued_before` cut-off listed for (`iss`, `sub`), if any.
    pub fn cut_off(&self, iss: &str, sub: &str) -> Option<i64> {
        self.subjects.get(iss).and_then(|s| s.get(sub)).copied()
    }
}
