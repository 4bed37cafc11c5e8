//! The lifecycles the core drives and the adapters only execute: a request's
//! ([`request`]: decide, wait for keys, ask the usage store, act) and the
//! effects of remote fetches ([`remote`]: the log line and counter of a fetch
//! that ended, the same in both builds).

pub mod remote;
pub mod request;
