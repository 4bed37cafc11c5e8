//! Strict base64url (RFC 7515 §2): URL alphabet, no padding, canonical trailing bits.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Decodes unpadded base64url, refusing padding, the standard alphabet, whitespace
/// and non-canonical trailing bits.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// Encodes as unpadded base64url.
pub fn encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(decode(encode(b"cjwt").as_bytes()).unwrap(), b"cjwt");
    }

    #[test]
    fn refuses_padding_std_alphabet_whitespace_and_trailing_bits() {
        assert!(decode(b"YQ==").is_none());
        assert!(decode(b"+/8").is_none());
        assert!(decode(b"YW Jj").is_none());
        assert!(decode(b"AA").is_some());
        assert!(decode(b"AB").is_none(), "non-canonical trailing bits");
        assert!(decode(b"A").is_none());
    }
}
