//! Certificate-bound tokens (RFC 8705 §3, SPEC §10): `cnf["x5t#S256"]` is the
//! base64url SHA-256 of the client certificate (DER). Envoy gives the digest as
//! lowercase hex (`connection.sha256_peer_certificate_digest`), and so does the
//! `Hash` of an `x-forwarded-client-cert` element: both are decoded from hex and
//! compared as bytes.

use crate::config::MtlsSource;
use crate::encoding::b64;
use crate::reason::Reason;
use crate::request::view::RequestView;

/// The host property holding the peer certificate's SHA-256, lowercase hex.
pub const PEER_DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];

/// The forwarded client certificate header (Envoy's XFCC).
pub const XFCC: &str = "x-forwarded-client-cert";

/// `certificate_required` when the configured source gives no certificate
/// digest, `certificate_header_malformed` when the XFCC header is not well
/// formed, `certificate_mismatch` when the digest is not `x5t`.
pub fn check(source: MtlsSource, x5t: &str, request: &RequestView<'_>) -> Result<(), Reason> {
    let hex = match source {
        MtlsSource::Peer => request.property(&PEER_DIGEST).filter(|v| !v.is_empty()),
        MtlsSource::Xfcc { trusted_hops } => Some(xfcc_hash(request, trusted_hops)?),
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
/// `x-forwarded-client-cert` value, in order, is one list).
///
/// The header is read strictly: every value must be a well-formed list of
/// `key=value` pairs (values bare, or quoted with `\` escapes), and the element
/// boundaries found scanning from the right, where the trusted hop appended its
/// element, must be the ones found from the left. A client controls the start
/// of the header; an unclosed quote or a dangling escape there would otherwise
/// swallow what the trusted hop appended (issue 24 item 1). Such a header is
/// [`Reason::CertificateHeaderMalformed`]; fewer elements than `trusted_hops`,
/// or an element without exactly one `Hash`, is [`Reason::CertificateRequired`].
pub fn xfcc_hash(request: &RequestView<'_>, trusted_hops: u32) -> Result<Vec<u8>, Reason> {
    xfcc_field(request, trusted_hops, b"hash")?.ok_or(Reason::CertificateRequired)
}

/// The value of `key` (compared without case) in the XFCC element
/// `trusted_hops` places from the right, read as [`xfcc_hash`] reads the
/// header: `Err(CertificateHeaderMalformed)` for a header that is not well
/// formed, `Ok(None)` when there is no such element or it has not exactly one
/// `key`.
pub fn xfcc_field(request: &RequestView<'_>, trusted_hops: u32, key: &[u8]) -> Result<Option<Vec<u8>>, Reason> {
    let mut elements: Vec<Pairs<'_>> = Vec::new();
    for value in request.header_values(XFCC) {
        elements.extend(xfcc_elements(value).ok_or(Reason::CertificateHeaderMalformed)?);
    }
    let Some(element) = usize::try_from(trusted_hops)
        .ok()
        .and_then(|hops| elements.len().checked_sub(hops))
        .and_then(|index| elements.get(index))
    else {
        return Ok(None);
    };
    let mut values = element.iter().filter_map(|(k, value)| k.eq_ignore_ascii_case(key).then_some(*value));
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(Some(unquote(value).to_vec())),
        _ => Ok(None),
    }
}

/// The host property holding the first URI SAN of the peer certificate.
pub const PEER_URI_SAN: [&str; 2] = ["connection", "uri_san_peer_certificate"];

/// The calling workload's identity (a URI SAN, e.g. a SPIFFE ID) from `source`:
/// the downstream peer certificate's first URI SAN, or the `URI` of the
/// trusted XFCC element. `caller_unidentified` when there is none (or it is
/// not UTF-8), `certificate_header_malformed` for a malformed XFCC header.
pub fn caller_identity(source: MtlsSource, request: &RequestView<'_>) -> Result<String, Reason> {
    let raw = match source {
        MtlsSource::Peer => request.property(&PEER_URI_SAN),
        MtlsSource::Xfcc { trusted_hops } => xfcc_field(request, trusted_hops, b"uri")?,
    };
    raw.filter(|v| !v.is_empty()).and_then(|v| String::from_utf8(v).ok()).ok_or(Reason::CallerUnidentified)
}

/// One element's `(key, value)` pairs, trimmed.
type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The elements of one XFCC value, or `None` when the value is not well formed
/// or reads differently from the right than from the left.
fn xfcc_elements(value: &[u8]) -> Option<Vec<Pairs<'_>>> {
    let from_left = commas_from_left(value)?;
    let mut from_right = commas_from_right(value)?;
    from_right.reverse();
    if from_left != from_right {
        return None;
    }
    let mut elements = Vec::with_capacity(from_left.len() + 1);
    let mut start = 0;
    for comma in from_left.iter().copied().chain(std::iter::once(value.len())) {
        elements.push(element_pairs(trim(value.get(start..comma)?))?);
        start = comma + 1;
    }
    Some(elements)
}

/// The positions of the element separators (commas outside quotes), scanning
/// from the left: a `"` opens or closes a quoted value, a `\` inside quotes
/// escapes the next byte. `None` for a `\` outside quotes or a value that ends
/// inside quotes or after a dangling escape.
fn commas_from_left(value: &[u8]) -> Option<Vec<usize>> {
    let (mut commas, mut quoted, mut escaped) = (Vec::new(), false, false);
    for (i, b) in value.iter().enumerate() {
        match *b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'\\' => return None,
            b'"' => quoted = !quoted,
            b',' if !quoted => commas.push(i),
            _ => {}
        }
    }
    (!quoted && !escaped).then_some(commas)
}

/// The same separators found scanning from the right, where the trusted hop
/// wrote: inside quotes a `"` closes the quoted value (read backwards: opens
/// it) only when an even run of backslashes precedes it. Nothing to the left
/// of an element decides where that element starts.
fn commas_from_right(value: &[u8]) -> Option<Vec<usize>> {
    let (mut commas, mut quoted) = (Vec::new(), false);
    for (i, b) in value.iter().enumerate().rev() {
        match *b {
            b'"' if quoted => {
                let backslashes = value.get(..i)?.iter().rev().take_while(|c| **c == b'\\').count();
                if backslashes % 2 == 0 {
                    quoted = false;
                }
            }
            b'"' => quoted = true,
            b'\\' if !quoted => {
                // Outside quotes only an escape's own backslash may stand, and it
                // must be the second of a pair read backwards: refuse it here.
                return None;
            }
            b',' if !quoted => commas.push(i),
            _ => {}
        }
    }
    (!quoted).then_some(commas)
}

/// The pairs of one element, or `None` when it is not well formed: `key=value`
/// pairs separated by `;`; a key is a token, a value is bare (no `"`, `\`,
/// `;`, `,`) or one quoted string followed only by whitespace. An empty element
/// is not well formed.
fn element_pairs(element: &[u8]) -> Option<Pairs<'_>> {
    let mut pairs = Vec::new();
    for pair in split_unquoted(element, b';') {
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (key, value) = pair.split_at(eq);
        let (key, value) = (trim(key), trim(value.get(1..).unwrap_or_default()));
        let token = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c);
        if key.is_empty() || !key.iter().all(token) || !well_formed_value(value) {
            return None;
        }
        pairs.push((key, value));
    }
    (!pairs.is_empty()).then_some(pairs)
}

fn well_formed_value(value: &[u8]) -> bool {
    match value {
        [b'"', inner @ .., b'"'] => {
            let mut escaped = false;
            for b in inner {
                match *b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => return false,
                    _ => {}
                }
            }
            !escaped
        }
        bare => !bare.iter().any(|b| matches!(b, b'"' | b'\\' | b';' | b',')),
    }
}

/// Splits at `sep` outside double quotes (a backslash escapes inside quotes);
/// empty parts are kept, so `a;;b` has an empty pair.
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
    parts.into_iter().map(trim)
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

    /// [`super::check`] on the view of `host`.
    fn check(source: MtlsSource, x5t: &str, host: &TestHost) -> Result<(), Reason> {
        super::check(source, x5t, &RequestView::new(host, crate::config::ClientIpSource::Peer, None, &[]))
    }

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

    /// Issue 24 item 1: what a client puts at the start of the header must not
    /// swallow the element the trusted hop appends after it.
    #[test]
    fn xfcc_smuggling_through_quotes_or_escapes_is_refused() {
        let theirs = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let appended = format!("By=spiffe://gw;Hash={theirs};Subject=\"CN=attacker,O=x\";URI=spiffe://attacker");
        let xfcc1 = MtlsSource::Xfcc { trusted_hops: 1 };
        let xfcc2 = MtlsSource::Xfcc { trusted_hops: 2 };
        let malformed = Err(Reason::CertificateHeaderMalformed);
        let shapes = [
            // An unclosed quote: everything appended falls inside it.
            format!("Hash={HEX};By=\""),
            // A backslash ending a quoted value escapes its closing quote.
            format!("Hash={HEX};By=\"x\\\""),
            format!("Hash={HEX};By=\"x\\"),
            // The trusted_hops 2 form: a forged element, then an open quote.
            format!("Hash={HEX},By=\""),
            // A backslash outside quotes.
            format!("Hash={HEX};By=x\\"),
        ];
        for forged in &shapes {
            for appended in [appended.clone(), format!("By=spiffe://gw;Hash={theirs}"), format!("Hash={theirs}")] {
                let header = format!("{forged},{appended}");
                let host = TestHost::new("GET", "/").header(XFCC, &header);
                assert_eq!(check(xfcc1, &x5t(), &host), malformed, "{header}");
                assert_eq!(check(xfcc2, &x5t(), &host), malformed, "{header}");
                // As two header lines too.
                let host = TestHost::new("GET", "/").header(XFCC, forged).header(XFCC, &appended);
                assert_eq!(check(xfcc1, &x5t(), &host), malformed, "{header}");
            }
        }
        // The offline form of the report: `explain --header`.
        let header = format!("Hash={HEX};By=\",By=spiffe://gw;Hash={theirs}");
        let host = TestHost::new("GET", "/").header(XFCC, &header);
        assert_eq!(check(xfcc1, &x5t(), &host), malformed);
        // Elements that are not key=value pairs.
        for bad in
            ["Hash", "=x", "Hash=a;", ";Hash=a", "Hash=a,", ",Hash=a", "Hash=\"a\"b", "Hash=a\"b\"", "H ash=a", ""]
        {
            let host = TestHost::new("GET", "/").header(XFCC, bad);
            assert_eq!(check(xfcc1, &x5t(), &host), malformed, "{bad:?}");
        }
    }

    #[test]
    fn well_formed_xfcc_reads_alike_from_both_ends() {
        // Quoted values with escapes, commas, semicolons and equals signs inside.
        let value = format!(
            "By=spiffe://a;Hash={HEX};Subject=\"CN=a\\\"b\\\\,O=c;d=e\",By=spiffe://gw;Hash={HEX};URI=spiffe://c?x=y"
        );
        let elements = xfcc_elements(value.as_bytes()).unwrap();
        assert_eq!(elements.len(), 2);
        let host = TestHost::new("GET", "/").header(XFCC, &value);
        assert_eq!(check(MtlsSource::Xfcc { trusted_hops: 1 }, &x5t(), &host), Ok(()));
        assert_eq!(check(MtlsSource::Xfcc { trusted_hops: 2 }, &x5t(), &host), Ok(()));
        // Envoy's own forms: Subject always quoted, an empty quoted value, spaces.
        for ok in [
            format!("Hash={HEX};Subject=\"\";URI="),
            format!(" By=spiffe://gw ; Hash={HEX} "),
            format!("Hash=\"{HEX}\""),
        ] {
            let host = TestHost::new("GET", "/").header(XFCC, &ok);
            assert_eq!(check(MtlsSource::Xfcc { trusted_hops: 1 }, &x5t(), &host), Ok(()), "{ok}");
        }
    }
}
