//! What the core reads of one request: the host interface, the request view
//! (read once per decision), the credential, the client address, the query
//! string, path normal form and patterns, the origin's one form, where each
//! configured value is read from ([`source`]), and a static host over plain data.

pub mod address;
pub mod credential;
pub mod host;
pub mod mcp;
pub mod origin;
pub mod paths;
pub mod query;
pub mod source;
pub mod static_host;
pub mod view;
