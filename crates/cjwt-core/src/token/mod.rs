//! Untrusted bytes → verified token: strict compact JWS, verification and claim
//! checks, and the verified-token cache.

pub mod cache;
pub mod jws;
pub mod verify;
