//! Compact JWS parsing (RFC 7515 §7.1) into an [`UntrustedToken`].
//!
//! Nothing here is trusted: the header and payload are parsed only so that the
//! verifier can pick the provider (`iss`) and key (`kid`, `alg`). A token becomes
//! trusted only through [`crate::token::verify`].

use crate::encoding::{b64, json};
use crate::keys::algorithm::Algorithm;
use crate::reason::Reason;
use serde_json::{Map, Value};

/// Header parameters that cjwt refuses outright (SPEC §3): keys or key URLs
/// chosen by the token, critical extensions, compression/encryption, nested
/// content types.
const FORBIDDEN_HEADER_PARAMS: [&str; 8] = ["crit", "jku", "x5u", "x5c", "jwk", "zip", "enc", "cty"];

/// Why a compact token could not be parsed (each is one 401 [`Reason`]).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ParseError {
    /// Structure, base64url or JSON is wrong.
    Malformed,
    /// A forbidden header parameter is present.
    ForbiddenHeader,
    /// `alg` names no algorithm cjwt supports (including `none`).
    UnsupportedAlgorithm,
}

/// The one mapping of parse errors onto reasons.
impl From<ParseError> for Reason {
    fn from(e: ParseError) -> Reason {
        match e {
            ParseError::Malformed => Reason::MalformedToken,
            ParseError::ForbiddenHeader => Reason::ForbiddenHeader,
            ParseError::UnsupportedAlgorithm => Reason::UnsupportedAlgorithm,
        }
    }
}

/// A syntactically valid compact JWT whose signature has not been checked: the
/// JWS layer and the payload's members (duplicates refused).
#[derive(Debug)]
pub struct UntrustedToken<'a> {
    /// The JWS layer: header fields, payload and signature bytes.
    pub jws: RawJws<'a>,
    /// The payload's members (an object without duplicate members).
    pub claims: Map<String, Value>,
}

/// Characters allowed in a compact JWS: the base64url alphabet and the two dots.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// The JWS layer of a compact token: header checked, payload still raw bytes.
#[derive(Debug)]
pub struct RawJws<'a> {
    /// `base64url(header) '.' base64url(payload)`, exactly as received.
    pub signing_input: &'a [u8],
    /// The header `alg` (a supported algorithm; `none` is refused).
    pub alg: Algorithm,
    /// The header `kid`, if present.
    pub kid: Option<String>,
    /// The header `typ` as written, if present.
    pub typ: Option<String>,
    /// The payload, base64url-decoded (not yet parsed).
    pub payload: Vec<u8>,
    /// The signature, base64url-decoded.
    pub signature: Vec<u8>,
}

/// Parses the JWS layer strictly: exactly three segments (header and signature
/// non-empty), strict base64url, a header object without duplicate members,
/// forbidden header parameters refused, `alg` an exact supported name.
pub fn parse_jws(token: &str) -> Result<RawJws<'_>, ParseError> {
    let bytes = token.as_bytes();
    if !bytes.iter().all(|b| is_token_byte(*b)) {
        return Err(ParseError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::Malformed);
    };
    if h.is_empty() || s.is_empty() {
        return Err(ParseError::Malformed);
    }
    let header_json = b64::decode(h.as_bytes()).ok_or(ParseError::Malformed)?;
    let payload = b64::decode(p.as_bytes()).ok_or(ParseError::Malformed)?;
    let signature = b64::decode(s.as_bytes()).ok_or(ParseError::Malformed)?;
    let header = json::parse_object(&header_json).map_err(|_| ParseError::Malformed)?;
    if FORBIDDEN_HEADER_PARAMS.iter().any(|name| header.contains_key(*name)) {
        return Err(ParseError::ForbiddenHeader);
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Algorithm::from_name(name).ok_or(ParseError::UnsupportedAlgorithm)?,
        _ => return Err(ParseError::Malformed),
    };
    let kid = optional_string(&header, "kid")?;
    let typ = optional_string(&header, "typ")?;
    let signing_input = bytes.get(..h.len() + 1 + p.len()).ok_or(ParseError::Malformed)?;
    Ok(RawJws { signing_input, alg, kid, typ, payload, signature })
}

/// Parses a compact JWT: [`parse_jws`], then the payload as a JSON object without
/// duplicate members.
pub fn parse(token: &str) -> Result<UntrustedToken<'_>, ParseError> {
    let jws = parse_jws(token)?;
    let claims = json::parse_object(&jws.payload).map_err(|_| ParseError::Malformed)?;
    Ok(UntrustedToken { jws, claims })
}

fn optional_string(header: &Map<String, Value>, name: &str) -> Result<Option<String>, ParseError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ParseError::Malformed),
    }
}

/// A compact JWS signed by a holder (a DPoP proof, a delegation link): its
/// header and payload as JSON objects (no duplicate members), its signing
/// input and signature bytes; checked by its reader, not here.
pub(crate) struct HolderJws<'a> {
    /// The header as sent (base64url).
    pub header_b64: &'a str,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// `text` as three non-empty base64url parts whose first two are JSON
/// objects; `None` for anything else.
pub(crate) fn parse_holder_jws(text: &str) -> Option<HolderJws<'_>> {
    if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return None;
    }
    let mut parts = text.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return None;
    }
    let header = json::parse_object(&b64::decode(h.as_bytes())?).ok()?;
    let claims = json::parse_object(&b64::decode(p.as_bytes())?).ok()?;
    let signature = b64::decode(s.as_bytes())?;
    let signing_input = text.get(..h.len() + 1 + p.len())?;
    Some(HolderJws { header_b64: h, header, claims, signing_input, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(json: &str) -> String {
        b64::encode(json.as_bytes())
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", seg(header), seg(payload), b64::encode(&[1u8; 64]))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(r#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#, r#"{"iss":"x"}"#);
        let u = parse(&t).unwrap();
        assert_eq!(u.jws.alg, Algorithm::EdDSA);
        assert_eq!(u.jws.kid.as_deref(), Some("k1"));
        assert_eq!(u.claims["iss"], "x");
        assert_eq!(u.jws.signature.len(), 64);
    }

    #[test]
    fn refuses_wrong_segment_counts() {
        let good = token(r#"{"alg":"EdDSA"}"#, "{}");
        let parts: Vec<&str> = good.split('.').collect();
        let (h, p, s) = (parts[0], parts[1], parts[2]);
        for bad in [
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}."),
            format!(".{h}.{p}.{s}"),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}..{s}"),
            format!("{h}.{p}."),
            "..".to_string(),
            String::new(),
        ] {
            assert_eq!(parse(&bad).err(), Some(ParseError::Malformed), "{bad}");
        }
    }

    #[test]
    fn refuses_padding_and_foreign_characters() {
        let good = token(r#"{"alg":"EdDSA"}"#, "{}");
        for bad in [
            format!("{good}="),
            good.replacen('.', "=.", 1),
            format!("{good} "),
            format!("{good}+"),
            good.replace('.', "\t."),
        ] {
            assert_eq!(parse(&bad).err(), Some(ParseError::Malformed), "{bad}");
        }
    }

    #[test]
    fn refuses_forbidden_header_parameters() {
        for p in FORBIDDEN_HEADER_PARAMS {
            let t = token(&format!(r#"{{"alg":"ES256","{p}":"x"}}"#), "{}");
            assert_eq!(parse(&t).err(), Some(ParseError::ForbiddenHeader), "{p}");
        }
    }

    #[test]
    fn refuses_none_and_unknown_or_non_string_alg() {
        for alg in ["none", "NONE", "HS256 ", "ES512"] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(parse(&t).err(), Some(ParseError::UnsupportedAlgorithm), "{alg}");
        }
        for header in [r#"{}"#, r#"{"alg":null}"#, r#"{"alg":1}"#, r#"{"alg":["RS256"]}"#, r#"{"alg":"RS256","kid":7}"#]
        {
            assert_eq!(parse(&token(header, "{}")).err(), Some(ParseError::Malformed), "{header}");
        }
    }

    #[test]
    fn refuses_duplicate_members_in_header_and_payload() {
        assert_eq!(parse(&token(r#"{"alg":"ES256","alg":"HS256"}"#, "{}")).err(), Some(ParseError::Malformed));
        assert_eq!(
            parse(&token(r#"{"alg":"ES256"}"#, r#"{"role":"u","role":"admin"}"#)).err(),
            Some(ParseError::Malformed)
        );
    }

    #[test]
    fn refuses_non_object_payloads() {
        for payload in ["[]", "\"x\"", "1", "null", "{"] {
            assert_eq!(parse(&token(r#"{"alg":"ES256"}"#, payload)).err(), Some(ParseError::Malformed), "{payload}");
        }
    }

    #[test]
    fn signing_input_is_the_received_bytes() {
        let t = token("{\"alg\":\"ES256\",\r\n \"kid\":\"a\"}", "{}");
        let u = parse(&t).unwrap();
        let dot2 = t.rfind('.').unwrap();
        assert_eq!(u.jws.signing_input, &t.as_bytes()[..dot2]);
    }
}
