//! Finding the credential (SPEC §4): every configured source is searched, every
//! occurrence counted. More than one credential is `multiple_tokens`, because
//! Envoy's single-value header getter would otherwise hide the second one and
//! the upstream might act on it (SEC-A04).

use crate::request::query::{self, Param};
use crate::request::source::TokenSource;
use crate::request::view::RequestView;

/// Where the one credential was found (so that `remove_token` can strip it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The credential bytes, without the source's prefix.
    pub token: Vec<u8>,
    /// The configured source it came from.
    pub source: TokenSource,
}

/// The result of searching all sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No source carries a credential.
    None,
    /// Exactly one credential, in one source.
    One(Found),
    /// More than one credential (several headers or sources): `multiple_tokens`.
    Multiple,
}

/// The standard bearer locations of RFC 6750: §2.1 `Authorization: Bearer`, §2.3 `?access_token=`.
const STANDARD_HEADER: (&str, &str) = ("authorization", "Bearer ");
const STANDARD_QUERY: &str = "access_token";

/// Counts credentials in the RFC 6750 locations that `sources` does not configure.
fn count_unconfigured_standard(sources: &[TokenSource], request: &RequestView<'_>) -> usize {
    let mut count = 0;
    let header_configured = sources.iter().any(
        |s| matches!(s, TokenSource::Header { name, prefix } if name == STANDARD_HEADER.0 && prefix == STANDARD_HEADER.1),
    );
    if !header_configured {
        scan_header(request, STANDARD_HEADER.0, STANDARD_HEADER.1, &mut |_| count += 1);
    }
    if !sources.iter().any(|s| matches!(s, TokenSource::Query(p) if p == STANDARD_QUERY)) {
        scan_query(request, STANDARD_QUERY, &mut |_| count += 1);
    }
    count
}

/// Searches every configured source for credentials. A credential in a standard
/// RFC 6750 location that is not configured also counts when a configured one is
/// present: the upstream could otherwise act on the unverified one
/// (`Authorization` plus `?access_token=` is `multiple_tokens`).
pub fn find(sources: &[TokenSource], request: &RequestView<'_>) -> Credential {
    let mut found: Option<Found> = None;
    let mut count = 0usize;
    for source in sources {
        scan(source, request, &mut |token: &[u8]| {
            count += 1;
            if found.is_none() {
                found = Some(Found { token: token.to_vec(), source: source.clone() });
            }
        });
    }
    if count == 1 {
        count += count_unconfigured_standard(sources, request);
    }
    match (count, found) {
        (0, _) | (_, None) => Credential::None,
        (1, Some(f)) => Credential::One(f),
        _ => Credential::Multiple,
    }
}

/// Calls `note` for every credential `source` holds in this request.
fn scan(source: &TokenSource, request: &RequestView<'_>, note: &mut dyn FnMut(&[u8])) {
    match source {
        TokenSource::Header { name, prefix } => scan_header(request, name, prefix, note),
        TokenSource::Cookie(cookie) => {
            for value in request.header_values("cookie") {
                for pair in value.split(|b| *b == b';') {
                    let pair = trim(pair);
                    if let Some(eq) = pair.iter().position(|b| *b == b'=') {
                        let (name, rest) = pair.split_at(eq);
                        let v = rest.get(1..).unwrap_or(&[]);
                        if name == cookie.as_bytes() && !v.is_empty() {
                            note(v);
                        }
                    }
                }
            }
        }
        TokenSource::Query(param) => scan_query(request, param, note),
    }
}

/// Envoy joins repeated headers with ',' (HTTP/1 inline headers such as
/// `authorization`); a comma never occurs in a compact JWS, so every
/// comma-separated element is a credential of its own.
fn scan_header(request: &RequestView<'_>, name: &str, prefix: &str, note: &mut dyn FnMut(&[u8])) {
    for value in request.header_values(name) {
        // Common case first: one value, no comma (`contains` is a word-at-a-time memchr).
        if !value.contains(&b',') {
            if let Some(token) = strip_scheme(trim(value), prefix.as_bytes()) {
                note(token);
            }
            continue;
        }
        for element in value.split(|b| *b == b',') {
            if let Some(token) = strip_scheme(trim(element), prefix.as_bytes()) {
                note(token);
            }
        }
    }
}

/// A query credential, read as upstream decoders read it ([`query::param`]): a
/// parameter written twice, in any spelling, is two credentials (`multiple_tokens`).
fn scan_query(request: &RequestView<'_>, param: &str, note: &mut dyn FnMut(&[u8])) {
    let q = request.query();
    match query::param(q, param) {
        Param::Absent => {}
        Param::One(v) if v.is_empty() => {}
        Param::One(v) => note(&v),
        // Two (or more) occurrences: noted as two credentials, which `find` counts
        // as `multiple_tokens` whatever they hold.
        Param::Ambiguous => {
            note(b"");
            note(b"");
        }
    }
}

/// The token after an ASCII-case-insensitive `prefix`, or `None` when the value
/// does not carry a credential of this scheme (wrong scheme, or nothing after it).
fn strip_scheme<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = value.get(prefix.len()..)?;
    if trim(rest).is_empty() {
        None
    } else {
        Some(rest)
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if *first == b' ' || *first == b'\t' {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if *last == b' ' || *last == b'\t' {
            s = rest;
        } else {
            break;
        }
    }
    s
}
