//! Reading claims out of a payload: lookup by name (the exact member first, then a
//! dotted path through nested objects) and NumericDate values (SPEC §3).

use crate::reason::Reason;
use serde_json::{Map, Value};

/// Looks a claim up by name: the exact member first (claim names such as
/// `https://example.com/roles` contain dots), else as a dotted path through
/// nested objects (`realm_access.roles`).
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    lookup_nested(claims, path)
}

/// The two readings of a dotted name disagree (see [`lookup_unambiguous`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous;

/// Like [`lookup`], but when the exact member and the nested path both exist
/// with different values, neither is chosen. For the constraints claim, where a
/// literal `"ext.cnst": {}` must not shadow `ext: {cnst: {...}}` (SEC-12.10).
pub fn lookup_unambiguous<'a>(claims: &'a Map<String, Value>, path: &str) -> Result<Option<&'a Value>, Ambiguous> {
    let exact = claims.get(path);
    let nested = if path.contains('.') { lookup_nested(claims, path) } else { None };
    match (exact, nested) {
        (Some(a), Some(b)) if a != b => Err(Ambiguous),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

fn lookup_nested<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// Which way a fractional NumericDate is rounded to whole seconds: always
/// towards the stricter reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Towards the past (an `exp` of 10.5 expires at 10).
    Down,
    /// Towards the future (an `nbf` of 10.5 starts at 11).
    Up,
}

/// The NumericDate claim `name`: absent is `None`; an integer or a finite float
/// (rounded as `rounding` says) is saturated into i64 seconds; any other value is
/// `malformed_token`.
pub fn numeric_date(claims: &Map<String, Value>, name: &str, rounding: Rounding) -> Result<Option<i64>, Reason> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let n = v.as_number().ok_or(Reason::MalformedToken)?;
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    if n.as_u64().is_some() {
        return Ok(Some(i64::MAX));
    }
    let f = n.as_f64().filter(|f| f.is_finite()).ok_or(Reason::MalformedToken)?;
    let rounded = match rounding {
        Rounding::Down => f.floor(),
        Rounding::Up => f.ceil(),
    };
    // `as` saturates for floats out of range.
    Ok(Some(rounded as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_prefers_exact_names_then_dotted_paths() {
        let claims = json!({"realm_access": {"roles": ["admin"]}, "https://x.io/roles": ["a"], "a": {"b": {"c": 1}}});
        let m = claims.as_object().unwrap();
        assert_eq!(lookup(m, "realm_access.roles"), Some(&json!(["admin"])));
        assert_eq!(lookup(m, "https://x.io/roles"), Some(&json!(["a"])));
        assert_eq!(lookup(m, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup(m, "a.b.d"), None);
        assert_eq!(lookup(m, "a.b.c.d"), None);
    }

    #[test]
    fn lookup_unambiguous_refuses_disagreeing_readings() {
        let both = json!({"ext.cnst": {}, "ext": {"cnst": {"a": 1}}});
        assert_eq!(lookup_unambiguous(both.as_object().unwrap(), "ext.cnst"), Err(Ambiguous));
        let same = json!({"ext.cnst": {"a": 1}, "ext": {"cnst": {"a": 1}}});
        assert_eq!(lookup_unambiguous(same.as_object().unwrap(), "ext.cnst"), Ok(Some(&json!({"a": 1}))));
        let nested = json!({"ext": {"cnst": {"a": 1}}});
        assert_eq!(lookup_unambiguous(nested.as_object().unwrap(), "ext.cnst"), Ok(Some(&json!({"a": 1}))));
        let literal = json!({"ext.cnst": {"a": 1}});
        assert_eq!(lookup_unambiguous(literal.as_object().unwrap(), "ext.cnst"), Ok(Some(&json!({"a": 1}))));
        assert_eq!(lookup_unambiguous(literal.as_object().unwrap(), "cnst"), Ok(None));
    }

    #[test]
    fn numeric_dates_round_towards_the_stricter_reading_and_saturate() {
        let claims = json!({"i": 10, "f": 10.5, "big": u64::MAX, "huge": 1e300, "neg": -1e300, "s": "10", "n": null});
        let m = claims.as_object().unwrap();
        assert_eq!(numeric_date(m, "absent", Rounding::Down), Ok(None));
        assert_eq!(numeric_date(m, "i", Rounding::Up), Ok(Some(10)));
        assert_eq!(numeric_date(m, "f", Rounding::Down), Ok(Some(10)));
        assert_eq!(numeric_date(m, "f", Rounding::Up), Ok(Some(11)));
        assert_eq!(numeric_date(m, "big", Rounding::Down), Ok(Some(i64::MAX)));
        assert_eq!(numeric_date(m, "huge", Rounding::Down), Ok(Some(i64::MAX)));
        assert_eq!(numeric_date(m, "neg", Rounding::Up), Ok(Some(i64::MIN)));
        assert_eq!(numeric_date(m, "s", Rounding::Down), Err(Reason::MalformedToken));
        assert_eq!(numeric_date(m, "n", Rounding::Down), Err(Reason::MalformedToken));
    }
}
