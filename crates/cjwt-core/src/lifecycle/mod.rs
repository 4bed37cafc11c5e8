//! The lifecycles the core drives and the adapters only execute: a request's
//! ([`request`]: decide, wait for keys, ask the usage store, act), a leased
//! allowance's background refill ([`refill`]: a batch no request waits for), and
//! the effects of remote fetches ([`remote`]: the log line and counter of a
//! fetch that ended, the same in both builds); and what the adapters keep of
//! the calls they send ([`calls`]: in flight by token, settled when overdue,
//! their answers read by one rule). [`background`] drives the configuration's
//! own work (the fetches' effects, the refills' calls) over one host trait.

pub mod background;
pub mod calls;
pub mod refill;
pub mod remote;
pub mod request;
