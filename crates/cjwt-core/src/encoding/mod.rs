//! Encodings: base64url without padding, and JSON that refuses duplicate members.

pub mod b64;
pub mod json;
