//! A leased allowance's background refill (issue 27 item 3): a batch of uses
//! taken from the mesh's store while no request waits for it.
//!
//! ```text
//!   a request spends a use, fewer than refill_below left
//!     └─► RequestFlow::take_refill ─► Refill ─ first() ─► the adapter sends it (its own call, no stream's)
//!           ─ answer ─► on_answer ─► Send(next call)            (lease grant, a swap that lost a race)
//!                                ─► Done: taken   → the uses join the allowance (all spare: no request spends one)
//!                                         used up → the allowance is marked dry (no batch again)
//!                                         failed  → nothing joins; the note stands until it times out
//!           ─ not sent, timed out, lost (overdue) ─► on_failure ─► Done (failed)
//! ```
//!
//! The call lives where no stream's end can cancel it: the proxy-wasm filter
//! sends it in the root context's tick and settles it there if its answer never
//! comes; the native module sends it as a configuration-level callout from the
//! main thread.
//! Whatever happens to it, exact-or-under holds: a use is let through only after
//! the store counted it in the batch that [`Refill::on_answer`] deposited; a
//! batch whose answer is lost loses its uses (the bound is in
//! [`crate::usage::allowance`]).

use crate::config::EtcdStore;
use crate::lifecycle::request::{StoreCall, LOST_ANSWER_GRACE_MS};
use crate::outcome::metrics::Counter;
use crate::usage::etcd::{EtcdCall, EtcdReply, Step as UseStep, UseAnswer, UseCall, MAX_ANSWER_BYTES};
use crate::usage::UsageCounter;

/// One batch being taken in the background.
#[derive(Debug)]
pub struct Refill {
    call: UseCall,
    cluster: String,
    authority: String,
    timeout_ms: u64,
    deadline_ms: u64,
    done: bool,
}

/// What the adapter does next with a refill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefillStep {
    /// Send this call and pass its answer to [`Refill::on_answer`] (or a
    /// failure to send or to answer to [`Refill::on_failure`]).
    Send(StoreCall),
    /// The refill is over: bump this counter (`cjwt.usage_store.refill_ok` or
    /// `refill_failed`) and, when there is one, log this warning.
    Done(Counter, Option<String>),
}

impl Refill {
    /// The refill that `call` (a batch of the allowance's key, built by the
    /// engine) makes against `store`, started at `now_ms`.
    pub fn new(call: UseCall, store: &EtcdStore, now_ms: u64) -> Refill {
        Refill {
            call,
            cluster: store.cluster.clone(),
            authority: store.authority.clone(),
            timeout_ms: store.timeout_ms,
            deadline_ms: now_ms.saturating_add(store.timeout_ms),
            done: false,
        }
    }

    /// The first call to send.
    pub fn first(&self) -> StoreCall {
        self.store_call(self.call.first(), self.timeout_ms)
    }

    fn store_call(&self, call: EtcdCall, timeout_ms: u64) -> StoreCall {
        StoreCall {
            cluster: self.cluster.clone(),
            authority: self.authority.clone(),
            path: call.path,
            body: call.body,
            content_type: call.api.content_type(),
            timeout_ms: timeout_ms.max(1),
            records_proof: false,
            counts_use: true,
        }
    }

    /// Whether the call in flight is overdue by more than
    /// [`LOST_ANSWER_GRACE_MS`] at `now_ms`: its answer was lost, and
    /// [`Refill::on_failure`] settles it.
    pub fn overdue(&self, now_ms: u64) -> bool {
        !self.done && self.deadline_ms.saturating_add(LOST_ANSWER_GRACE_MS) < now_ms
    }

    /// The store answered the call last handed out: HTTP `status` (`None` when
    /// the call failed without one) and `body` of `body_len` bytes in all.
    /// A batch taken joins `counter`'s allowance; a token used up marks it dry.
    pub fn on_answer(
        &mut self,
        counter: &mut dyn UsageCounter,
        status: Option<&str>,
        body: &[u8],
        body_len: usize,
        now_ms: u64,
    ) -> RefillStep {
        self.on_reply(counter, &EtcdReply::http(status, body), body_len, now_ms)
    }

    /// [`Refill::on_answer`] with all the host gives of the answer: for a gRPC
    /// call, `grpc-status` and `grpc-message` from its headers, or its
    /// trailers where the host shows them.
    pub fn on_reply(
        &mut self,
        counter: &mut dyn UsageCounter,
        reply: &EtcdReply<'_>,
        body_len: usize,
        now_ms: u64,
    ) -> RefillStep {
        let body = reply.body;
        if self.done {
            return RefillStep::Done(Counter::UsageStoreRefillFailed, Some("cjwt: refill answered twice".into()));
        }
        let answer = if body_len > MAX_ANSWER_BYTES || body.len() > MAX_ANSWER_BYTES {
            self.call.on_failure(&format!("answer of {body_len} bytes is too large"))
        } else {
            match self.call.on_reply(reply) {
                UseStep::Done(answer) => answer,
                UseStep::Send(next) => {
                    let left = self.deadline_ms.saturating_sub(now_ms);
                    if left > 0 {
                        return RefillStep::Send(self.store_call(next, left));
                    }
                    self.call.on_failure(&format!("no answer within {} ms", self.timeout_ms))
                }
            }
        };
        self.done = true;
        let Some((id, expires_at)) = self.call.spent_token() else {
            return RefillStep::Done(Counter::UsageStoreRefillFailed, Some("cjwt: refill of no token".into()));
        };
        match answer {
            UseAnswer::Counted => {
                // No request spends one of a background batch: all of it is spare.
                let taken = self.call.spare().map_or(0, |spare| spare.saturating_add(1));
                counter.deposit_allowance(&id, taken, self.call.written(), expires_at, now_ms);
                RefillStep::Done(Counter::UsageStoreRefillOk, None)
            }
            UseAnswer::Exhausted => {
                counter.dry_allowance(&id, expires_at, now_ms);
                RefillStep::Done(Counter::UsageStoreRefillOk, None)
            }
            UseAnswer::Replayed => RefillStep::Done(Counter::UsageStoreRefillFailed, None),
            UseAnswer::Unavailable(why) => {
                RefillStep::Done(Counter::UsageStoreRefillFailed, Some(format!("cjwt: refill failed: {why}")))
            }
        }
    }

    /// The call last handed out could not be sent, timed out, or its answer
    /// was lost: nothing joins the allowance (the batch's uses, if the store
    /// counted them, are lost), and its note stands until it times out.
    pub fn on_failure(&mut self, why: &str) -> RefillStep {
        self.done = true;
        let _ = self.call.on_failure(why);
        RefillStep::Done(Counter::UsageStoreRefillFailed, Some(format!("cjwt: refill failed: {why}")))
    }
}
