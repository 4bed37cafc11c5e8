//! The lifecycles the core drives and the adapters only execute: a request's
//! ([`request`]: decide, wait for keys, ask the usage store, act), a leased
//! allowance's background refill ([`refill`]: a batch no request waits for), and
//! the effects of remote fetches ([`remote`]: the log line and counter of a
//! fetch that ended, the same in both builds).

pub mod refill;
pub mod remote;
pub mod request;
