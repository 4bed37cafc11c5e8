//! OAuth Token Status List (draft-ietf-oauth-status-list, SPEC §11), as pure
//! functions: the token's `status` claim, the Status List Token (a JWT with
//! `typ: statuslist+jwt`) verified with the named provider's keys, its `lst`
//! inflated under a hard cap, and the lookup of one index.
//!
//! The list is decoded once, when it is fetched; a request costs one bit-field
//! read (a shift and a mask), with no allocation.

use crate::config::{normalize_typ, Config, StatusListSource};
use crate::encoding::b64;
use crate::keys::host_crypto::HostCrypto;
use crate::reason::Reason;
use crate::token::claims::{numeric_date, Rounding};
use crate::token::jws;
pub use crate::token::status::{StatusList, TokenStatus};
use crate::token::verify::{check_signature, KeyLookup};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};
use serde_json::{Map, Value};

/// The media type of a Status List Token (header `typ`, compared as a media type).
pub const STATUS_LIST_TYP: &str = "statuslist+jwt";

/// Status 0: the token is valid.
pub const VALID: u8 = 0;
/// Status 1: the token is revoked (401 `revoked`).
pub const INVALID: u8 = 1;
/// Status 2: the token is suspended (401 `suspended`).
pub const SUSPENDED: u8 = 2;

/// Why [`inflate_capped`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The output would exceed the cap (a compression bomb, or a list too large).
    TooLarge,
    /// Not a valid zlib stream (header, data or Adler-32 checksum), or truncated.
    Corrupt,
    /// Bytes follow the end of the zlib stream.
    Trailing,
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InflateError::TooLarge => "inflates past max_bytes",
            InflateError::Corrupt => "is not a valid zlib stream",
            InflateError::Trailing => "has bytes after the end of the zlib stream",
        })
    }
}

/// Inflates a zlib (RFC 1950) stream, refusing it as soon as its output would
/// exceed `max_bytes`. Two passes: the first inflates into a 32 KiB scratch
/// chunk and only counts (stopping at the cap), the second inflates into a
/// buffer allocated once at exactly the counted size. So the heap never holds
/// more than the list itself (at most `max_bytes`) plus the decompressor's fixed
/// state (~43 KiB): a compression bomb costs CPU up to the cap, never memory.
pub fn inflate_capped(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, InflateError> {
    let size = inflate_into(compressed, max_bytes, |_| {})?;
    let mut out = Vec::with_capacity(size);
    inflate_into(compressed, size, |bytes| out.extend_from_slice(bytes))?;
    Ok(out)
}

/// One inflation pass: hands each piece of output to `sink`; the output's size,
/// or an error as soon as it would pass `max_bytes`.
fn inflate_into(compressed: &[u8], max_bytes: usize, mut sink: impl FnMut(&[u8])) -> Result<usize, InflateError> {
    let mut state = InflateState::new_boxed(DataFormat::Zlib);
    let mut input = compressed;
    let mut chunk = [0u8; 32 * 1024];
    let mut total = 0usize;
    loop {
        let r = inflate(&mut state, input, &mut chunk, MZFlush::None);
        input = input.get(r.bytes_consumed..).unwrap_or(&[]);
        let written = chunk.get(..r.bytes_written).unwrap_or(&[]);
        if written.len() > max_bytes.saturating_sub(total) {
            return Err(InflateError::TooLarge);
        }
        total = total.saturating_add(written.len());
        sink(written);
        match r.status {
            Ok(MZStatus::StreamEnd) if input.is_empty() => return Ok(total),
            Ok(MZStatus::StreamEnd) => return Err(InflateError::Trailing),
            Ok(_) if r.bytes_consumed == 0 && r.bytes_written == 0 => return Err(InflateError::Corrupt),
            Ok(_) => {}
            Err(_) => return Err(InflateError::Corrupt),
        }
    }
}

/// The largest Status List Token body accepted for a list of `max_bytes`
/// (inflated): base64url of a zlib stream barely larger than its input, plus
/// the JWS around it.
pub fn max_body_bytes(max_bytes: usize) -> usize {
    max_bytes.saturating_mul(2).saturating_add(64 * 1024)
}

/// Decodes the `status_list` claim of a Status List Token: `bits` (1, 2, 4 or 8)
/// and `lst` (base64url of the zlib-compressed bytes), inflated under `max_bytes`.
/// Other members (`aggregation_uri`, later additions) are ignored: they cannot
/// change an entry.
pub fn decode_status_list(claim: &Value, max_bytes: usize) -> Result<(u8, Vec<u8>), String> {
    let Value::Object(list) = claim else {
        return Err("`status_list` is not an object".into());
    };
    let bits = match list.get("bits").and_then(Value::as_u64) {
        Some(b @ (1 | 2 | 4 | 8)) => u8::try_from(b).map_err(|_| "`bits` is out of range")?,
        _ => return Err("`bits` is not 1, 2, 4 or 8".into()),
    };
    let lst = list.get("lst").and_then(Value::as_str).ok_or("`lst` is not a string")?;
    let compressed = b64::decode(lst.as_bytes()).ok_or("`lst` is not strict base64url")?;
    let bytes = inflate_capped(&compressed, max_bytes).map_err(|e| format!("`lst` {e} ({max_bytes} bytes)"))?;
    Ok((bits, bytes))
}

/// Verifies a fetched Status List Token for the configured list `list` (index
/// into `config.status_lists`) and decodes it: the body is a compact JWS (one
/// trailing newline tolerated) with `typ: statuslist+jwt`, signed by a key of
/// the list's provider (inline or fetched, `algorithms` honoured), whose `sub`
/// is the list's `uri`, with `iat`, and `exp` and/or `ttl` (a list that says
/// neither could be used forever: refused), not expired, not issued in the
/// future; then its `status_list` is decoded under `max_bytes`.
pub fn verify_status_list(
    config: &Config,
    list: usize,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    body: &[u8],
    now: i64,
) -> Result<StatusList, String> {
    verify_fetched(config, list, keys, crypto, body, now, now)
}

/// [`verify_status_list`] for a list fetched at `fetched_at` and checked at
/// `now` (a last good copy handed on to a reloaded VM or a new configuration,
/// see [`LastGood`]): `ttl` counts from the fetch, never from `now`, so a copy
/// handed on never serves longer than the original would have.
pub fn verify_fetched(
    config: &Config,
    list: usize,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    body: &[u8],
    fetched_at: i64,
    now: i64,
) -> Result<StatusList, String> {
    let source = config.status_lists.get(list).ok_or("no such status list")?;
    if body.len() > max_body_bytes(source.max_bytes) {
        return Err(format!(
            "the list is {} bytes; at most {} are accepted",
            body.len(),
            max_body_bytes(source.max_bytes)
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| "the list is not UTF-8")?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let token = jws::parse(text).map_err(|e| format!("the list is not a compact JWS ({})", Reason::from(e)))?;
    match token.jws.typ.as_deref().map(normalize_typ) {
        Some(t) if t == STATUS_LIST_TYP => {}
        _ => return Err(format!("the list's `typ` is not {STATUS_LIST_TYP}")),
    }
    let provider = config.providers.get(source.provider).ok_or("no such provider")?;
    if !provider.algorithms.contains(token.jws.alg) {
        return Err(format!("the list's `alg` is not allowed for provider {:?}", provider.name));
    }
    check_signature(
        provider,
        keys.fetched(source.provider),
        crypto,
        token.jws.alg,
        token.jws.kid.as_deref(),
        token.jws.signing_input,
        &token.jws.signature,
    )
    .map_err(|r| format!("the list's signature is not by provider {:?} ({r})", provider.name))?;
    check_list_claims(config, source, &token.claims, fetched_at, now)
}

/// The claims of a Status List Token whose signature was verified.
fn check_list_claims(
    config: &Config,
    source: &StatusListSource,
    claims: &Map<String, Value>,
    fetched_at: i64,
    now: i64,
) -> Result<StatusList, String> {
    if claims.get("sub").and_then(Value::as_str) != Some(source.uri.as_str()) {
        return Err(format!("the list's `sub` is not {:?}", source.uri));
    }
    let skew = config.clock_skew_seconds;
    let malformed = |name: &str| format!("the list's `{name}` is not a NumericDate");
    let iat =
        numeric_date(claims, "iat", Rounding::Up).map_err(|_| malformed("iat"))?.ok_or("the list has no `iat`")?;
    if iat > fetched_at.saturating_add(skew) {
        return Err("the list is issued in the future (`iat`)".into());
    }
    if let Some(nbf) = numeric_date(claims, "nbf", Rounding::Up).map_err(|_| malformed("nbf"))? {
        if nbf > now.saturating_add(skew) {
            return Err("the list is not valid yet (`nbf`)".into());
        }
    }
    let exp = numeric_date(claims, "exp", Rounding::Down).map_err(|_| malformed("exp"))?;
    let ttl = match claims.get("ttl") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(t) if t > 0 => Some(i64::try_from(t).unwrap_or(i64::MAX)),
            _ => return Err("the list's `ttl` is not a positive integer".into()),
        },
    };
    let expires_at = match (exp.map(|e| e.saturating_add(skew)), ttl.map(|t| fetched_at.saturating_add(t))) {
        (Some(e), Some(t)) => e.min(t),
        (Some(e), None) => e,
        (None, Some(t)) => t,
        (None, None) => return Err("the list has neither `exp` nor `ttl`".into()),
    };
    if expires_at <= now {
        return Err("the list has expired (`exp` or `ttl`)".into());
    }
    let claim = claims.get("status_list").ok_or("the list has no `status_list`")?;
    let (bits, bytes) = decode_status_list(claim, source.max_bytes)?;
    StatusList::new(bits, bytes, expires_at).map(|l| l.issued(iat)).ok_or_else(|| "`bits` is not 1, 2, 4 or 8".into())
}

/// A last good list as one VM or configuration hands it on to the next (proxy-wasm
/// shared data in the wasm build, a process-wide map in the native one): when it
/// was fetched and the body as fetched. The receiver verifies it again with
/// [`verify_fetched`]; it is never trusted as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastGood<'a> {
    /// When the list was fetched (Unix seconds).
    pub fetched_at: i64,
    /// The Status List Token as fetched.
    pub body: &'a [u8],
}

impl<'a> LastGood<'a> {
    /// The stored form: 8 bytes of `fetched_at` (big-endian), then the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len().saturating_add(8));
        out.extend_from_slice(&self.fetched_at.to_be_bytes());
        out.extend_from_slice(self.body);
        out
    }

    /// The stored form read back (`None` when shorter than its header).
    pub fn decode(bytes: &'a [u8]) -> Option<LastGood<'a>> {
        let (head, body) = bytes.split_first_chunk::<8>()?;
        Some(LastGood { fetched_at: i64::from_be_bytes(*head), body })
    }
}

/// The name under which the last good copy of configured list `list` is kept
/// between VMs and configurations: a hash of what identifies it (the provider's
/// issuer, the `uri`, the cluster, authority and path), so that another list, or
/// the same one fetched from elsewhere or signed by another provider, never reads it.
pub fn shared_name(config: &Config, list: usize) -> Option<String> {
    use sha2::{Digest, Sha256};
    let source = config.status_lists.get(list)?;
    let issuer = config.providers.get(source.provider).map_or("", |p| p.issuer.as_str());
    let mut digest = Sha256::new();
    for part in [issuer, &source.uri, &source.cluster, &source.authority, &source.path] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let hex: String = digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    Some(format!("cjwt.status_list.{hex}"))
}

/// Builds a `status_list` claim (`bits`, `lst`) from one status per entry (each
/// below `2^bits`): packed least significant first, zlib-compressed at the best
/// level, base64url. For the command line and tests (feature `mint`).
#[cfg(feature = "mint")]
pub fn encode_status_list(bits: u8, statuses: &[u8]) -> Result<Value, String> {
    if !matches!(bits, 1 | 2 | 4 | 8) {
        return Err("bits must be 1, 2, 4 or 8".into());
    }
    let per_byte = 8 / usize::from(bits);
    let mut bytes = vec![0u8; statuses.len().div_ceil(per_byte)];
    for (i, status) in statuses.iter().enumerate() {
        if u16::from(*status) >= 1u16 << bits {
            return Err(format!("entry {i}: status {status} does not fit in {bits} bit(s)"));
        }
        if let Some(byte) = bytes.get_mut(i / per_byte) {
            *byte |= status << ((i % per_byte) * usize::from(bits));
        }
    }
    let lst = b64::encode(&miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 9));
    Ok(serde_json::json!({"bits": bits, "lst": lst}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly
    use super::*;
    use serde_json::json;

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec_zlib(bytes, 6)
    }

    /// The draft's examples (section "Status List" of draft-ietf-oauth-status-list):
    /// the 1-bit list of 16 entries and the 2-bit list of 12 entries, decoded bit
    /// for bit from the draft's own `lst` values.
    #[test]
    fn the_drafts_examples_decode_bit_for_bit() {
        let one = json!({"bits": 1, "lst": "eNrbuRgAAhcBXQ"});
        let (bits, bytes) = decode_status_list(&one, 1024).unwrap();
        assert_eq!((bits, bytes.as_slice()), (1, &[0xB9, 0xA3][..]));
        let list = StatusList::new(bits, bytes, i64::MAX).unwrap();
        let want = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(list.get(i as u64), Some(*w), "1-bit status[{i}]");
        }
        assert_eq!((list.len(), list.get(16)), (16, None));

        let two = json!({"bits": 2, "lst": "eNo76fITAAPfAgc"});
        let (bits, bytes) = decode_status_list(&two, 1024).unwrap();
        assert_eq!((bits, bytes.as_slice()), (2, &[0xC9, 0x44, 0xF9][..]));
        let list = StatusList::new(bits, bytes, i64::MAX).unwrap();
        let want = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(list.get(i as u64), Some(*w), "2-bit status[{i}]");
        }
        assert_eq!((list.len(), list.get(12)), (12, None));
    }

    #[test]
    fn every_width_reads_least_significant_first() {
        // (bits, byte, the entries it holds, in index order)
        for (bits, byte, want) in [
            (1u8, 0b1000_0001u8, vec![1, 0, 0, 0, 0, 0, 0, 1]),
            (2, 0b1110_0100, vec![0, 1, 2, 3]),
            (4, 0xA5, vec![5, 10]),
            (8, 0xFE, vec![254]),
        ] {
            let list = StatusList::new(bits, vec![byte, 0], i64::MAX).unwrap();
            for (i, w) in want.iter().enumerate() {
                assert_eq!(list.get(i as u64), Some(*w), "bits {bits} idx {i}");
            }
            assert_eq!(list.len(), 16 / u64::from(bits));
            assert_eq!(list.get(list.len()), None, "bits {bits}: one past the end");
            assert_eq!(list.get(u64::MAX), None, "bits {bits}: no overflow");
        }
        assert!(StatusList::new(3, vec![0], 0).is_none());
        assert!(StatusList::new(0, vec![0], 0).is_none());
    }

    #[cfg(feature = "mint")]
    #[test]
    fn encoding_round_trips_for_every_width() {
        for bits in [1u8, 2, 4, 8] {
            let max = (1u16 << bits) - 1;
            let statuses: Vec<u8> = (0..1000u16).map(|i| ((i * 7) % (max + 1)) as u8).collect();
            let claim = encode_status_list(bits, &statuses).unwrap();
            let (b, bytes) = decode_status_list(&claim, 1 << 20).unwrap();
            let list = StatusList::new(b, bytes, i64::MAX).unwrap();
            for (i, s) in statuses.iter().enumerate() {
                assert_eq!(list.get(i as u64), Some(*s), "bits {bits} idx {i}");
            }
        }
        assert!(encode_status_list(1, &[2]).is_err());
        assert!(encode_status_list(3, &[0]).is_err());
    }

    #[test]
    fn inflation_is_capped_and_strict() {
        let data = vec![7u8; 10_000];
        let z = zlib(&data);
        assert_eq!(inflate_capped(&z, 10_000).unwrap(), data);
        assert_eq!(inflate_capped(&z, 9_999), Err(InflateError::TooLarge));
        assert_eq!(inflate_capped(&z, 0), Err(InflateError::TooLarge));
        // A bomb: 64 MiB of zeros in ~64 KiB, refused at a 1 MiB cap.
        let bomb = zlib(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
        assert_eq!(inflate_capped(&bomb, 1 << 20), Err(InflateError::TooLarge));
        // Truncated, corrupted (checksum), trailing garbage, raw deflate, empty.
        assert_eq!(inflate_capped(&z[..z.len() - 1], 1 << 20), Err(InflateError::Corrupt));
        let mut bad_sum = z.clone();
        *bad_sum.last_mut().unwrap() ^= 1;
        assert_eq!(inflate_capped(&bad_sum, 1 << 20), Err(InflateError::Corrupt));
        let mut trailing = z.clone();
        trailing.push(0);
        assert_eq!(inflate_capped(&trailing, 1 << 20), Err(InflateError::Trailing));
        let raw = miniz_oxide::deflate::compress_to_vec(&data, 6);
        assert_eq!(inflate_capped(&raw, 1 << 20), Err(InflateError::Corrupt));
        assert_eq!(inflate_capped(&[], 1 << 20), Err(InflateError::Corrupt));
        assert_eq!(inflate_capped(b"garbage", 1 << 20), Err(InflateError::Corrupt));
        // An empty list is a valid stream.
        assert_eq!(inflate_capped(&zlib(&[]), 1 << 20), Ok(vec![]));
    }

    #[test]
    fn a_malformed_status_list_claim_is_refused_with_why() {
        let z = b64::encode(&zlib(&[0]));
        for (claim, why) in [
            (json!("x"), "not an object"),
            (json!({"bits": 3, "lst": z}), "`bits`"),
            (json!({"bits": "1", "lst": z}), "`bits`"),
            (json!({"lst": z}), "`bits`"),
            (json!({"bits": 1}), "`lst` is not a string"),
            (json!({"bits": 1, "lst": format!("{z}=")}), "base64url"),
            (json!({"bits": 1, "lst": "AAAA"}), "not a valid zlib stream"),
        ] {
            let e = decode_status_list(&claim, 1024).unwrap_err();
            assert!(e.contains(why), "{claim}: {e}");
        }
        let ok = json!({"bits": 1, "lst": z, "aggregation_uri": "https://x"});
        assert_eq!(decode_status_list(&ok, 1024).unwrap(), (1, vec![0]));
    }

    #[test]
    fn the_status_claim_is_parsed_strictly() {
        let parse = |v: Value| TokenStatus::parse(v.as_object().unwrap());
        let uri = "https://idp.example.com/statuslists/1";
        for (claims, want) in [
            (json!({}), Ok(TokenStatus::None)),
            (
                json!({"status": {"status_list": {"idx": 7, "uri": uri}}}),
                Ok(TokenStatus::List { idx: 7, uri: uri.into() }),
            ),
            (
                json!({"status": {"status_list": {"idx": 0, "uri": uri}}}),
                Ok(TokenStatus::List { idx: 0, uri: uri.into() }),
            ),
            (json!({"status": {}}), Ok(TokenStatus::Unsupported)),
            (json!({"status": {"other_mechanism": {}}}), Ok(TokenStatus::Unsupported)),
            (json!({"status": {"status_list": {"idx": 7, "uri": uri}, "other": 1}}), Ok(TokenStatus::Unsupported)),
            (json!({"status": {"status_list": {"idx": 7, "uri": uri, "x": 1}}}), Ok(TokenStatus::Unsupported)),
            (json!({"status": "revoked"}), Err(Reason::MalformedToken)),
            (json!({"status": {"status_list": []}}), Err(Reason::MalformedToken)),
            (json!({"status": {"status_list": {"idx": -1, "uri": uri}}}), Err(Reason::MalformedToken)),
            (json!({"status": {"status_list": {"idx": 1.5, "uri": uri}}}), Err(Reason::MalformedToken)),
            (json!({"status": {"status_list": {"idx": "1", "uri": uri}}}), Err(Reason::MalformedToken)),
            (json!({"status": {"status_list": {"idx": 1}}}), Err(Reason::MalformedToken)),
            (json!({"status": {"status_list": {"idx": 1, "uri": ""}}}), Err(Reason::MalformedToken)),
            (json!({"status": {"status_list": {"uri": uri}}}), Err(Reason::MalformedToken)),
        ] {
            assert_eq!(parse(claims.clone()), want, "{claims}");
        }
    }
}
