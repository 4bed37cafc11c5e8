//! A deliberately minimal HTTP/2 (h2c, prior knowledge) client for attack tests:
//! it sends header fields exactly as given — uppercase names, repeated fields,
//! misplaced pseudo-headers — which real clients refuse to produce.
//!
//! HPACK encoding uses literals without indexing and without Huffman, so the
//! bytes on the wire are the test's. The answer is read frame by frame; only the
//! `:status` forms Envoy uses for the statuses tests check are decoded (an
//! indexed static entry, or a literal with an indexed name and a raw or Huffman value).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// What came back on stream 1.
#[derive(Debug, Default)]
pub struct H2Response {
    /// `:status`, when a response HEADERS frame arrived and could be read.
    pub status: Option<u16>,
    pub body: String,
    /// The stream was reset or the connection closed with GOAWAY before an answer.
    pub refused: bool,
}

impl H2Response {
    pub fn reason(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v.get("reason")?.as_str().map(str::to_owned)
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first` holds the pattern bits.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// Sends one request on stream 1 with these header fields, in this order
/// (pseudo-headers included by the caller), and reads the answer.
pub fn request(port: u16, fields: &[(&str, &str)]) -> H2Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00); // literal header field without indexing, new name
        hpack_string(&mut block, name.as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    s.write_all(&out).unwrap();
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> H2Response {
    let mut r = H2Response::default();
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).is_err() {
            r.refused |= r.status.is_none();
            return r;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).is_err() {
            r.refused |= r.status.is_none();
            return r;
        }
        match kind {
            SETTINGS if flags & 1 == 0 => {
                let _ = s.write_all(&frame(SETTINGS, 1, 0, &[]));
            }
            HEADERS if stream == 1 => {
                r.status = r.status.or_else(|| status_of(&payload, flags));
                if flags & END_STREAM != 0 {
                    return r;
                }
            }
            DATA if stream == 1 => {
                r.body.push_str(&String::from_utf8_lossy(&payload));
                if flags & END_STREAM != 0 {
                    return r;
                }
            }
            RST_STREAM if stream == 1 => {
                r.refused = true;
                return r;
            }
            GOAWAY => {
                r.refused |= r.status.is_none();
                return r;
            }
            _ => {}
        }
    }
}

/// `:status` from the first field of a response header block.
fn status_of(block: &[u8], flags: u8) -> Option<u16> {
    // Without PADDED/PRIORITY flags the block starts right away (Envoy sends neither).
    if flags & 0x28 != 0 {
        return None;
    }
    let first = *block.first()?;
    // Indexed static entries 8..=14 are :status 200 204 206 304 400 404 500.
    if first & 0x80 != 0 {
        return [200, 204, 206, 304, 400, 404, 500].get(usize::from(first & 0x7f).checked_sub(8)?).copied();
    }
    // Literal with an indexed name (:status is index 8), 4- or 6-bit prefix.
    let rest = block.get(1..)?;
    let value_head = *rest.first()?;
    let len = usize::from(value_head & 0x7f);
    let raw = rest.get(1..1 + len)?;
    let text = if value_head & 0x80 != 0 { huffman_digits(raw)? } else { String::from_utf8(raw.to_vec()).ok()? };
    text.parse().ok()
}

/// Decodes a Huffman-coded string made only of digits (RFC 7541 Appendix B:
/// '0'..'2' are 5-bit codes 0x0..0x2, '3'..'9' are 6-bit codes 0x19..0x1f).
fn huffman_digits(raw: &[u8]) -> Option<String> {
    let bits: Vec<u8> = raw.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    let mut out = String::new();
    let mut i = 0;
    while i + 5 <= bits.len() {
        let five = bits[i..i + 5].iter().fold(0u8, |a, b| a << 1 | b);
        if five <= 2 {
            out.push((b'0' + five) as char);
            i += 5;
            continue;
        }
        if i + 6 > bits.len() {
            break;
        }
        let six = bits[i..i + 6].iter().fold(0u8, |a, b| a << 1 | b);
        if (0x19..=0x1f).contains(&six) {
            out.push((b'3' + six - 0x19) as char);
            i += 6;
        } else {
            break; // padding (all ones) or not a digit
        }
    }
    (!out.is_empty()).then_some(out)
}
