//! Untrusted bytes → verified token: strict compact JWS, verification and claim
//! checks, claim lookup and NumericDates, and the verified-token cache.

pub mod cache;
pub mod claims;
pub mod jws;
pub mod verify;
