//! Encodings: base64url without padding, JSON that refuses duplicate members, and
//! the protobuf wire format.

pub mod b64;
pub mod json;
pub mod protobuf;
