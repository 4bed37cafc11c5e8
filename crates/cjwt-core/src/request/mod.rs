//! What the core reads of one request: the host interface, the credential, the
//! query string, and path normal form and patterns.

pub mod credential;
pub mod host;
pub mod paths;
pub mod query;
