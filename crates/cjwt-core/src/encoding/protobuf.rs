//! The protobuf wire format, as far as cjwt needs it: one reader (for the
//! configuration's `google.protobuf.Struct` and Envoy's `VerifySignatureResult`)
//! and one writer (for `VerifySignatureArguments`).
//!
//! Varints are LEB128, at most 10 bytes; bits beyond 64 in the tenth byte are
//! dropped, as protobuf's own parsers do. Every read is bounds-checked: a
//! truncated or overlong field reads as `None`, never as a panic.

/// Wire type 0: a varint.
pub const VARINT: u64 = 0;
/// Wire type 1: 8 bytes, little-endian.
pub const FIXED64: u64 = 1;
/// Wire type 2: a varint length, then that many bytes.
pub const LEN: u64 = 2;

/// The most bytes a 64-bit varint takes.
const MAX_VARINT_BYTES: usize = 10;

/// Reads fields from one message, front to back.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// True when every byte has been read.
    pub fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// A varint; `None` if truncated or longer than 10 bytes.
    pub fn varint(&mut self) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            // The tenth byte's shift is 63: bits beyond 64 fall off, as in protobuf.
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }

    /// A field key: (field number, wire type).
    pub fn key(&mut self) -> Option<(u64, u64)> {
        let k = self.varint()?;
        Some((k >> 3, k & 7))
    }

    /// A length-delimited payload; `None` if the length runs past the end.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// A fixed 8-byte value (wire type 1), as its raw little-endian bytes.
    pub fn fixed64(&mut self) -> Option<[u8; 8]> {
        let end = self.pos.checked_add(8)?;
        let out = self.bytes.get(self.pos..end)?.try_into().ok()?;
        self.pos = end;
        Some(out)
    }
}

/// Appends `v` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited field (wire type 2): key, length, `data`.
pub fn put_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | LEN);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint(), Some(v), "{v}");
            assert!(r.done());
        }
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        assert_eq!(Reader::new(&[0xac, 0x02]).varint(), Some(300));
    }

    #[test]
    fn a_truncated_varint_reads_as_none() {
        assert_eq!(Reader::new(&[]).varint(), None);
        assert_eq!(Reader::new(&[0x80]).varint(), None);
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff]).varint(), None);
        assert_eq!(Reader::new(&[0x12]).bytes(), None, "a length-delimited field with no length");
    }

    #[test]
    fn an_overlong_varint_reads_as_none() {
        assert_eq!(Reader::new(&[0x80; 11]).varint(), None);
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).varint(), None);
        // Ten bytes is the limit; the tenth byte's bits beyond 64 are dropped.
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).varint(), Some(u64::MAX));
    }

    #[test]
    fn a_length_beyond_the_buffer_reads_as_none() {
        assert_eq!(Reader::new(&[0x03, b'a', b'b']).bytes(), None);
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).bytes(), None);
        assert_eq!(Reader::new(&[1, 2, 3, 4, 5, 6, 7]).fixed64(), None);
        let mut r = Reader::new(&[0x02, b'a', b'b', 0x00]);
        assert_eq!(r.bytes(), Some(&b"ab"[..]));
        assert_eq!(r.bytes(), Some(&b""[..]));
        assert!(r.done());
    }

    #[test]
    fn keys_split_field_number_and_wire_type() {
        let mut out = Vec::new();
        put_bytes(&mut out, 4, b"TEXT");
        put_bytes(&mut out, 20, b"x");
        let mut r = Reader::new(&out);
        assert_eq!(r.key(), Some((4, LEN)));
        assert_eq!(r.bytes(), Some(&b"TEXT"[..]));
        assert_eq!(r.key(), Some((20, LEN)), "a two-byte key");
        assert_eq!(r.bytes(), Some(&b"x"[..]));
        assert!(r.done());
        assert_eq!(Reader::new(&[0x08]).key(), Some((1, VARINT)));
        assert_eq!(Reader::new(&[0x11]).key(), Some((2, FIXED64)));
    }
}
