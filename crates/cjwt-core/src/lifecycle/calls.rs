//! What both adapters keep of the calls they send for the core: the calls in
//! flight, matched by the host's token and settled when their answer is lost
//! ([`InFlight`]), and a call's answer as the host shows it, read by one rule
//! ([`Answer`]).
//!
//! ```text
//!   the adapter sends a call ─► InFlight::sent(token, timeout)
//!      ─ the host answers token ─► InFlight::answered(token) ─► what waited for it
//!      ─ no answer, timeout + grace passed ─► InFlight::overdue(now) ─► settled as lost
//! ```

use crate::lifecycle::request::{StoreCall, LOST_ANSWER_GRACE_MS};
use crate::usage::etcd::EtcdReply;

/// Calls in flight, each with what waits for it (`T`: a paused request, a
/// background refill), matched by the host's call token (proxy-wasm's `u32`
/// token, the native module's `u64` callout id).
#[derive(Debug)]
pub struct InFlight<T> {
    calls: Vec<Pending<T>>,
}

#[derive(Debug)]
struct Pending<T> {
    token: u64,
    deadline_ms: u64,
    waiter: T,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight { calls: Vec::new() }
    }
}

impl<T> InFlight<T> {
    /// The host sent a call as `token` at `now_ms`, to be answered within
    /// `timeout_ms`; `waiter` waits for it.
    pub fn sent(&mut self, token: u64, now_ms: u64, timeout_ms: u64, waiter: T) {
        let deadline_ms = now_ms.saturating_add(timeout_ms);
        self.calls.push(Pending { token, deadline_ms, waiter });
    }

    /// Whether `token` is a call of this table.
    pub fn awaits(&self, token: u64) -> bool {
        self.calls.iter().any(|c| c.token == token)
    }

    /// The host answered `token`: what waited for it (`None`: no call of this
    /// table, for another table or already settled).
    pub fn answered(&mut self, token: u64) -> Option<T> {
        let at = self.calls.iter().position(|c| c.token == token)?;
        Some(self.calls.swap_remove(at).waiter)
    }

    /// The calls whose answer is overdue by more than [`LOST_ANSWER_GRACE_MS`]
    /// at `now_ms` (the context that would receive it ended): taken out, for
    /// the adapter to settle each as lost. Those still due stay.
    pub fn overdue(&mut self, now_ms: u64) -> Vec<T> {
        let (late, kept) = std::mem::take(&mut self.calls)
            .into_iter()
            .partition(|c: &Pending<T>| c.deadline_ms.saturating_add(LOST_ANSWER_GRACE_MS) < now_ms);
        self.calls = kept;
        late.into_iter().map(|c| c.waiter).collect()
    }

    /// Forgets every call whose waiter `gone` says is gone (a stream that ended):
    /// its answer, if it comes, is for no one.
    pub fn forget(&mut self, mut gone: impl FnMut(&T) -> bool) {
        self.calls.retain(|c| !gone(&c.waiter));
    }

    /// How many calls are in flight.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// A call's answer as the host shows it, copied out of the host (the usage
/// store's, the Txn-Token Service's, a refill's), for
/// [`crate::RequestFlow::on_reply`] and [`crate::Refills::on_reply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// `:status` (`None` when the call failed without one).
    pub status: Option<String>,
    /// `grpc-status`: from the trailers, else from the headers (a trailers-only answer).
    pub grpc_status: Option<String>,
    /// `grpc-message`, read as `grpc-status` is.
    pub grpc_message: Option<String>,
    /// The body (empty when it was over [`StoreCall::MAX_ANSWER_BYTES`] and not read).
    pub body: Vec<u8>,
    /// The body's length as the host holds it.
    pub body_len: usize,
}

impl Answer {
    /// Reads an answer through the host: `header` and `trailer` look a name up
    /// (`trailer` answers `None` where the host shows no trailers), `body`
    /// reads `body_len` bytes. The gRPC status and message come from the
    /// trailers first, then the headers; a body over
    /// [`StoreCall::MAX_ANSWER_BYTES`] is not read (the flow refuses it by its size).
    pub fn read(
        header: impl Fn(&str) -> Option<String>,
        trailer: impl Fn(&str) -> Option<String>,
        body_len: usize,
        body: impl FnOnce(usize) -> Vec<u8>,
    ) -> Answer {
        let grpc = |name: &str| trailer(name).or_else(|| header(name));
        Answer {
            status: header(":status"),
            grpc_status: grpc("grpc-status"),
            grpc_message: grpc("grpc-message"),
            body: if body_len > StoreCall::MAX_ANSWER_BYTES { Vec::new() } else { body(body_len) },
            body_len,
        }
    }

    /// The answer as the core's flows read it.
    pub fn reply(&self) -> EtcdReply<'_> {
        EtcdReply {
            status: self.status.as_deref(),
            grpc_status: self.grpc_status.as_deref(),
            grpc_message: self.grpc_message.as_deref(),
            body: &self.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    #[test]
    fn an_answer_settles_its_call_once_and_another_token_settles_nothing() {
        let mut calls = InFlight::default();
        calls.sent(7, NOW_MS, 300, "a");
        calls.sent(8, NOW_MS, 300, "b");
        assert!(calls.awaits(7) && !calls.awaits(9));
        assert_eq!(calls.answered(9), None, "not a call of this table");
        assert_eq!(calls.answered(8), Some("b"));
        assert_eq!(calls.answered(8), None, "answered once");
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn a_call_is_overdue_after_its_timeout_and_the_grace_only() {
        let mut calls = InFlight::default();
        calls.sent(1, NOW_MS, 300, "short");
        calls.sent(2, NOW_MS, 5_000, "long");
        assert!(calls.overdue(NOW_MS + 300 + LOST_ANSWER_GRACE_MS).is_empty(), "within the grace");
        assert_eq!(calls.overdue(NOW_MS + 300 + LOST_ANSWER_GRACE_MS + 1), ["short"]);
        assert_eq!(calls.answered(1), None, "settled: a late answer is for no one");
        assert_eq!(calls.answered(2), Some("long"));
        assert!(calls.is_empty());
    }

    #[test]
    fn the_calls_of_a_stream_that_ended_are_forgotten() {
        let mut calls = InFlight::default();
        calls.sent(1, NOW_MS, 300, 10u32);
        calls.sent(2, NOW_MS, 300, 11u32);
        calls.forget(|stream| *stream == 10);
        assert_eq!((calls.answered(1), calls.answered(2)), (None, Some(11)));
    }

    #[test]
    fn grpc_status_from_the_trailers_first_and_a_body_over_the_cap_is_not_read() {
        let header = |name: &str| match name {
            ":status" => Some("200".to_string()),
            "grpc-status" => Some("0".to_string()),
            _ => None,
        };
        let trailer = |name: &str| (name == "grpc-status").then(|| "5".to_string());
        let answer = Answer::read(header, trailer, 3, |len| vec![b'x'; len]);
        assert_eq!(answer.status.as_deref(), Some("200"));
        assert_eq!(
            (answer.grpc_status.as_deref(), answer.grpc_message.as_deref()),
            (Some("5"), None),
            "the trailer wins"
        );
        assert_eq!(answer.reply().body, b"xxx");
        // A trailers-only answer: the status in the headers.
        let answer = Answer::read(header, |_| None, 0, |_| Vec::new());
        assert_eq!(answer.reply().grpc_status, Some("0"));
        // Over the cap: not read at all, its length kept for the flow to refuse it.
        let big = StoreCall::MAX_ANSWER_BYTES + 1;
        let answer = Answer::read(header, |_| None, big, |_| panic!("read over the cap"));
        assert_eq!((answer.body.len(), answer.body_len), (0, big));
    }
}
