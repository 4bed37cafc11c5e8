//! Untrusted bytes → verified token: strict compact JWS, verification and claim
//! checks, claim lookup and NumericDates, the token's status (its claim and the
//! decoded list it points into), and the verified-token cache.

pub mod cache;
pub mod claims;
pub mod jws;
pub mod status;
pub mod verify;
