//! Strict JSON for untrusted input: objects with duplicate member names are refused.
//!
//! `serde_json::Value` silently keeps the last of duplicate members, so a token
//! `{"role":"user","role":"admin"}` would mean different things to different
//! readers (SEC-B07). [`parse_object`] refuses it. Depth stays bounded by
//! serde_json's recursion limit (128), which is never disabled here.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value that was parsed without duplicate object members.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        serde_json::Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_none<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictValue, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom("duplicate member"));
            }
            let StrictValue(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(StrictValue(Value::Object(map)))
    }
}

/// Why strict parsing failed.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, duplicate members, too deep, or trailing bytes.
    Invalid,
    /// Valid JSON, but not an object.
    NotAnObject,
}

/// Parses `bytes` as one JSON object, refusing duplicate members at any depth,
/// invalid UTF-8, a byte-order mark and trailing data.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let StrictValue(value) = serde_json::from_slice(bytes).map_err(|_| JsonError::Invalid)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

/// Parses any JSON value strictly (duplicate members refused).
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    serde_json::from_slice::<StrictValue>(bytes).map(|StrictValue(v)| v).map_err(|_| JsonError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_object() {
        let m = parse_object(br#"{"a":1,"b":{"c":[1,2]}}"#).unwrap();
        assert_eq!(m["b"]["c"][1], 2);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert_eq!(parse_object(br#"{"a":1,"a":2}"#), Err(JsonError::Invalid));
        assert_eq!(parse_object(br#"{"x":{"r":"u","r":"a"}}"#), Err(JsonError::Invalid));
        assert_eq!(parse_object(br#"{"x":[{"r":"u","r":"a"}]}"#), Err(JsonError::Invalid));
    }

    #[test]
    fn refuses_non_objects_and_garbage() {
        for input in [&b"[]"[..], b"\"x\"", b"1", b"null"] {
            assert_eq!(parse_object(input), Err(JsonError::NotAnObject));
        }
        for input in [&b"{"[..], b"{}x", b"\xef\xbb\xbf{}", b"{\"a\":\"\xff\"}", b"", b"{\"a\":1e400}"] {
            assert_eq!(parse_object(input), Err(JsonError::Invalid), "{input:?}");
        }
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonError::Invalid));
    }

    #[test]
    fn json_escapes_decode_to_the_same_string() {
        let m = parse_object(br#"{"r":"\u0061dmin"}"#).unwrap();
        assert_eq!(m["r"], "admin");
    }
}
