//! Decoding a binary `google.protobuf.Struct` into JSON.
//!
//! Envoy hands a plugin its `configuration` as the raw string of a `StringValue`
//! or `BytesValue`, but for any other `Any` — a `Struct` written as YAML in the
//! bootstrap — it passes the protobuf wire bytes. cjwt accepts all three, so the
//! configuration can be written as a YAML map in plain Envoy as in Istio.

use crate::encoding::protobuf::Reader;
use serde_json::{Map, Number, Value};

const MAX_DEPTH: usize = 64;

/// Decodes a serialized `google.protobuf.Struct`; `None` if the bytes are not one.
pub fn decode_struct(bytes: &[u8]) -> Option<Value> {
    decode_struct_at(bytes, 0).map(Value::Object)
}

fn decode_struct_at(bytes: &[u8], depth: usize) -> Option<Map<String, Value>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut map = Map::new();
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (field, wire) = r.key()?;
        if field != 1 || wire != 2 {
            return None;
        }
        let entry = r.bytes()?;
        let mut e = Reader::new(entry);
        let (mut key, mut value) = (String::new(), Value::Null);
        while !e.done() {
            match e.key()? {
                (1, 2) => key = String::from_utf8(e.bytes()?.to_vec()).ok()?,
                (2, 2) => value = decode_value(e.bytes()?, depth + 1)?,
                _ => return None,
            }
        }
        if map.insert(key, value).is_some() {
            return None;
        }
    }
    Some(map)
}

fn decode_value(bytes: &[u8], depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut r = Reader::new(bytes);
    let mut value = Value::Null;
    while !r.done() {
        value = match r.key()? {
            (1, 0) => {
                r.varint()?;
                Value::Null
            }
            (2, 1) => {
                let f = f64::from_le_bytes(r.fixed64()?);
                // Whole numbers become JSON integers, as a JSON author would write them.
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Value::from(f as i64)
                } else {
                    Value::Number(Number::from_f64(f)?)
                }
            }
            (3, 2) => Value::String(String::from_utf8(r.bytes()?.to_vec()).ok()?),
            (4, 0) => Value::Bool(r.varint()? != 0),
            (5, 2) => Value::Object(decode_struct_at(r.bytes()?, depth + 1)?),
            (6, 2) => {
                let list = r.bytes()?;
                let mut l = Reader::new(list);
                let mut items = Vec::new();
                while !l.done() {
                    match l.key()? {
                        (1, 2) => items.push(decode_value(l.bytes()?, depth + 1)?),
                        _ => return None,
                    }
                }
                Value::Array(items)
            }
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    fn entry(key: &str, value: Vec<u8>) -> Vec<u8> {
        let mut e = ld(1, key.as_bytes());
        e.extend(ld(2, &value));
        ld(1, &e)
    }

    #[test]
    fn decodes_strings_numbers_bools_lists_and_nesting() {
        let mut number = vec![(2 << 3) | 1];
        number.extend_from_slice(&60f64.to_le_bytes());
        let list = ld(6, &[ld(1, &ld(3, b"a")), ld(1, &ld(3, b"b"))].concat());
        let inner = ld(5, &entry("x", vec![(4 << 3), 1]));
        let bytes = [entry("s", ld(3, b"v")), entry("n", number), entry("l", list), entry("o", inner)].concat();
        let v = decode_struct(&bytes).unwrap();
        assert_eq!(v, serde_json::json!({"s": "v", "n": 60, "l": ["a", "b"], "o": {"x": true}}));
    }

    #[test]
    fn refuses_json_text_and_truncation() {
        assert_eq!(decode_struct(b"{\"providers\":[]}"), None);
        let bytes = entry("s", ld(3, b"value"));
        assert_eq!(decode_struct(&bytes[..bytes.len() - 1]), None);
    }
}
