//! The token's status (SPEC §11, draft-ietf-oauth-status-list) as data: the
//! `status` claim naming an entry of a list, and a decoded list holding the
//! entries. Verifying and decoding a Status List Token, and deciding what a
//! status means, is [`crate::revocation`]'s.

use crate::reason::Reason;
use serde_json::{Map, Value};

/// The token's `status` claim (must-understand).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenStatus {
    /// No `status` claim.
    #[default]
    None,
    /// `status.status_list`: the entry `idx` of the list at `uri`.
    List {
        /// The index into the list.
        idx: u64,
        /// The list's URI (must be a configured `status_lists[].uri`).
        uri: String,
    },
    /// A `status` with a mechanism cjwt does not understand (a member other than
    /// `status_list`, or `status_list` members other than `idx` and `uri`): it
    /// cannot be checked, so the token is refused (`unknown_status_list`).
    Unsupported,
}

impl TokenStatus {
    /// Reads the `status` claim: absent is [`TokenStatus::None`]; a `status` that is
    /// not an object, or a `status_list` whose `idx` is not a non-negative integer or
    /// whose `uri` is not a non-empty string, is `malformed_token`.
    pub fn parse(claims: &Map<String, Value>) -> Result<TokenStatus, Reason> {
        let Some(status) = claims.get("status") else {
            return Ok(TokenStatus::None);
        };
        let Value::Object(status) = status else {
            return Err(Reason::MalformedToken);
        };
        let list = match status.get("status_list") {
            None => return Ok(TokenStatus::Unsupported),
            Some(Value::Object(list)) => list,
            Some(_) => return Err(Reason::MalformedToken),
        };
        let idx = list.get("idx").and_then(Value::as_u64).ok_or(Reason::MalformedToken)?;
        let uri = match list.get("uri") {
            Some(Value::String(uri)) if !uri.is_empty() => uri.clone(),
            _ => return Err(Reason::MalformedToken),
        };
        if status.len() > 1 || list.len() > 2 {
            return Ok(TokenStatus::Unsupported);
        }
        Ok(TokenStatus::List { idx, uri })
    }

    /// Heap bytes held (the URI).
    pub fn heap_bytes(&self) -> usize {
        match self {
            TokenStatus::List { uri, .. } => uri.capacity(),
            _ => 0,
        }
    }
}

/// A decoded, verified status list: `bits` per entry, least significant first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    bytes: Vec<u8>,
    /// Unix seconds from which the list may no longer be used: its `exp`, or the
    /// fetch time plus its `ttl`, whichever comes first.
    expires_at: i64,
    /// The list's `iat` (Unix seconds; `i64::MIN` when not known): a list issued
    /// earlier than the one in use never replaces it (no rollback).
    issued_at: i64,
}

impl StatusList {
    /// A list of `bits` (1, 2, 4 or 8) per entry over `bytes`, usable until `expires_at`.
    pub fn new(bits: u8, bytes: Vec<u8>, expires_at: i64) -> Option<StatusList> {
        matches!(bits, 1 | 2 | 4 | 8).then_some(StatusList { bits, bytes, expires_at, issued_at: i64::MIN })
    }

    /// The same list, issued at `iat` (its `iat` claim).
    pub fn issued(mut self, iat: i64) -> StatusList {
        self.issued_at = iat;
        self
    }

    /// The list's `iat` (`i64::MIN` when not known).
    pub fn issued_at(&self) -> i64 {
        self.issued_at
    }

    /// The status of entry `idx`, or `None` when `idx` is out of range.
    pub fn get(&self, idx: u64) -> Option<u8> {
        let bits = u64::from(self.bits);
        let bit = idx.checked_mul(bits)?;
        let byte = usize::try_from(bit / 8).ok()?;
        let shift = bit % 8;
        let mask = u8::MAX >> (8 - self.bits);
        self.bytes.get(byte).map(|b| (b >> shift) & mask)
    }

    /// The number of entries.
    pub fn len(&self) -> u64 {
        (self.bytes.len() as u64).saturating_mul(8) / u64::from(self.bits)
    }

    /// Whether the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bits per entry.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// When the list may no longer be used (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Whether the list may be used at `now`.
    pub fn valid_at(&self, now: i64) -> bool {
        now < self.expires_at
    }

    /// Heap bytes held (the bit field).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}
