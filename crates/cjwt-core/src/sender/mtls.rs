//! Certificate-bound tokens (RFC 8705 §3, SPEC §10): `cnf["x5t#S256"]` is the
//! base64url SHA-256 of the client certificate (DER). Envoy gives the digest as
//! lowercase hex (`connection.sha256_peer_certificate_digest`), and so does the
//! `Hash` of an `x-forwarded-client-cert` element: both are decoded from hex and
//! compared as bytes.

use crate::config::MtlsSource;
use crate::encoding::b64;
use crate::reason::Reason;
use crate::request::host::{header_values, Host};

/// The host property holding the peer certificate's SHA-256, lowercase hex.
pub const PEER_DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];

/// The forwarded client certificate header (Envoy's XFCC).
pub const XFCC: &str = "x-forwarded-client-cert";

/// `certificate_required` when the configured source gives no certificate
/// digest, `certificate_mismatch` when it is not `x5t`.
pub fn check(source: MtlsSource, x5t: &str, host: &dyn Host) -> Result<(), Reason> {
    let hex = match source {
        MtlsSource::Peer => host.property(&PEER_DIGEST).filter(|v| !v.is_empty()),
        MtlsSource::Xfcc { trusted_hops } => xfcc_hash(host, trusted_hops),
    };
    let Some(hex) = hex else {
        return Err(Reason::CertificateRequired);
    };
    let digest = hex_decode(&hex).filter(|d| d.len() == 32).ok_or(Reason::CertificateMismatch)?;
    match b64::decode(x5t.as_bytes()) {
        Some(bound) if bound == digest => Ok(()),
        _ => Err(Reason::CertificateMismatch),
    }
}

/// The base64url form of a hex SHA-256 digest (for `cjwt mint` and `explain`).
pub fn x5t_from_hex(hex: &str) -> Option<String> {
    hex_decode(hex.trim().as_bytes()).filter(|d| d.len() == 32).map(|d| b64::encode(&d))
}

fn hex_decode(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    hex.chunks_exact(2)
        .map(|pair| match pair {
            [h, l] => Some(nibble(*h)? << 4 | nibble(*l)?),
            _ => None,
        })
        .collect()
}

/// The `Hash` of the XFCC element `trusted_hops` places from the right (every
/// `x-forwarded-client-cert` value, in order, is one list). `None` when there
/// are fewer elements, or the element has no single `Hash`.
pub fn xfcc_hash(host: &dyn Host, trusted_hops: u32) -> Option<Vec<u8>> {
    let mut elements: Vec<&[u8]> = Vec::new();
    for value in header_values(host, XFCC) {
        elements.extend(split_unquoted(value, b','));
    }
    let index = elements.len().checked_sub(usize::try_from(trusted_hops).ok()?)?;
    let element = elements.get(index)?;
    let mut hashes = split_unquoted(element, b';').filter_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (key, value) = pair.split_at(eq);
        let value = value.get(1..)?;
        trim(key).eq_ignore_ascii_case(b"hash").then(|| unquote(trim(value)).to_vec())
    });
    let hash = hashes.next()?;
    if hashes.next().is_some() {
        return None;
    }
    Some(hash)
}

/// Splits at `sep` outside double quotes (a backslash escapes inside quotes).
fn split_unquoted(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.iter().enumerate() {
        match *b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(s.get(start..i).unwrap_or(&[]));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s.get(start..).unwrap_or(&[]));
    parts.into_iter().map(trim).filter(|p| !p.is_empty())
}

fn unquote(s: &[u8]) -> &[u8] {
    match s {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::view::test_host::TestHost;

    const HEX: &str = "b1a6fa5b3f3c4fb5b1b7a0d0c9d5d1b0f1e2d3c4b5a697887766554433221100";

    fn x5t() -> String {
        x5t_from_hex(HEX).unwrap()
    }

    #[test]
    fn the_peer_digest_is_hex_and_the_binding_base64url() {
        let host = TestHost::new("GET", "/").property(&PEER_DIGEST, HEX);
        assert_eq!(check(MtlsSource::Peer, &x5t(), &host), Ok(()));
        let upper = TestHost::new("GET", "/").property(&PEER_DIGEST, &HEX.to_uppercase());
        assert_eq!(check(MtlsSource::Peer, &x5t(), &upper), Ok(()));
        let other = TestHost::new("GET", "/").property(&PEER_DIGEST, &HEX.replace("b", "c"));
        assert_eq!(check(MtlsSource::Peer, &x5t(), &other), Err(Reason::CertificateMismatch));
        let none = TestHost::new("GET", "/");
        assert_eq!(check(MtlsSource::Peer, &x5t(), &none), Err(Reason::CertificateRequired));
        let empty = TestHost::new("GET", "/").property(&PEER_DIGEST, "");
        assert_eq!(check(MtlsSource::Peer, &x5t(), &empty), Err(Reason::CertificateRequired));
        // The hex string itself, or padded base64, is not the binding.
        assert_eq!(check(MtlsSource::Peer, HEX, &host), Err(Reason::CertificateMismatch));
        assert_eq!(check(MtlsSource::Peer, &format!("{}=", x5t()), &host), Err(Reason::CertificateMismatch));
        let short = TestHost::new("GET", "/").property(&PEER_DIGEST, "abcd");
        assert_eq!(check(MtlsSource::Peer, &x5t(), &short), Err(Reason::CertificateMismatch));
    }

    #[test]
    fn xfcc_trusts_only_the_element_of_the_trusted_hop() {
        let forged = format!("By=spiffe://x;Hash={HEX};Subject=\"CN=a,O=b\"");
        let trusted =
            "By=spiffe://gw;Hash=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff;URI=spiffe://c";
        // The client forged the first element; the trusted hop appended the last.
        let host = TestHost::new("GET", "/").header(XFCC, &format!("{forged},{trusted}"));
        let xfcc1 = MtlsSource::Xfcc { trusted_hops: 1 };
        assert_eq!(check(xfcc1, &x5t(), &host), Err(Reason::CertificateMismatch));
        assert_eq!(check(MtlsSource::Xfcc { trusted_hops: 2 }, &x5t(), &host), Ok(()));
        assert_eq!(check(MtlsSource::Xfcc { trusted_hops: 3 }, &x5t(), &host), Err(Reason::CertificateRequired));
        // Two headers are one list; a quoted comma does not split an element.
        let host = TestHost::new("GET", "/").header(XFCC, trusted).header(XFCC, &forged);
        assert_eq!(check(xfcc1, &x5t(), &host), Ok(()));
        let no_hash = TestHost::new("GET", "/").header(XFCC, "By=spiffe://gw;URI=spiffe://c");
        assert_eq!(check(xfcc1, &x5t(), &no_hash), Err(Reason::CertificateRequired));
        let two = TestHost::new("GET", "/").header(XFCC, &format!("Hash={HEX};hash={HEX}"));
        assert_eq!(check(xfcc1, &x5t(), &two), Err(Reason::CertificateRequired));
        let quoted = TestHost::new("GET", "/").header(XFCC, &format!("HASH=\"{HEX}\""));
        assert_eq!(check(xfcc1, &x5t(), &quoted), Ok(()));
        assert_eq!(check(xfcc1, &x5t(), &TestHost::new("GET", "/")), Err(Reason::CertificateRequired));
    }
}
