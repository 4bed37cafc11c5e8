//! What the core reads of one request: the host interface, the credential, the
//! query string, path normal form and patterns, and a static host over plain data.

pub mod credential;
pub mod host;
pub mod paths;
pub mod query;
pub mod static_host;
