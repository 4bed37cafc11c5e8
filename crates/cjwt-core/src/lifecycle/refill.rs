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
//! main thread. Both keep their refills in a [`Refills`] registry: queued by
//! requests, sent when the host may send, matched by the host's token when
//! answered, settled when overdue; the adapter only sends, and counts and logs
//! each refill's end.
//!
//! ```text
//!   queue(refill) ─► take_due ─► the host sends each call ─► sent(call, token | why)
//!   on_reply(token, answer) ─► the batch deposited, or the next call due (take_due again)
//!   overdue(now) ─► lost calls failed ─► take_ended: a counter and a warning each
//! ```
//! Whatever happens to it, exact-or-under holds: a use is let through only after
//! the store counted it in the batch that [`Refill::on_answer`] deposited; a
//! batch whose answer is lost loses its uses (the bound is in
//! [`crate::usage::allowance`]).

use crate::config::EtcdStore;
use crate::lifecycle::calls::InFlight;
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

/// A refill's call to send: the host sends [`Due::call`] and reports it with
/// [`Refills::sent`].
#[derive(Debug)]
pub struct Due {
    refill: Refill,
    call: StoreCall,
}

impl Due {
    /// The call to send.
    pub fn call(&self) -> &StoreCall {
        &self.call
    }
}

/// How a refill ended: bump the counter (`cjwt.usage_store.refill_ok` or
/// `refill_failed`) and log the warning, if any.
pub type Ended = (Counter, Option<String>);

/// The background refills of one host context (a proxy-wasm VM's root context,
/// a native configuration): due to be sent, in flight by the host's call
/// token, and ended (for the adapter to count and log). Refills deposit their
/// batches in the counter handed to [`Refills::on_reply`]; nothing waits for them.
#[derive(Debug, Default)]
pub struct Refills {
    due: Vec<Due>,
    in_flight: InFlight<Refill>,
    ended: Vec<Ended>,
}

impl Refills {
    /// A request's flow started `refill` ([`crate::RequestFlow::take_refill`]):
    /// its first call is due.
    pub fn queue(&mut self, refill: Refill) {
        let call = refill.first();
        self.due.push(Due { refill, call });
    }

    /// The calls due, to be sent where the host lets this context's calls
    /// outlive any stream; each reported with [`Refills::sent`].
    pub fn take_due(&mut self) -> Vec<Due> {
        std::mem::take(&mut self.due)
    }

    /// The host may not send `due`'s call where it is (a stream's context):
    /// due again, for the context that sends.
    pub fn put_back(&mut self, due: Due) {
        self.due.push(due);
    }

    /// The host sent `due`'s call as `token` at `now_ms`, or could not (why):
    /// a refill not sent ends failed.
    pub fn sent(&mut self, due: Due, token: Result<u64, String>, now_ms: u64) {
        let Due { mut refill, call } = due;
        match token {
            Ok(token) => self.in_flight.sent(token, now_ms, call.timeout_ms, refill),
            Err(why) => {
                let step = refill.on_failure(&why);
                self.step(refill, step);
            }
        }
    }

    /// Whether `token` is a refill's call in flight (its answer goes to [`Refills::on_reply`]).
    pub fn awaits(&self, token: u64) -> bool {
        self.in_flight.awaits(token)
    }

    /// The host answered `token`: `false` when it is no refill's call. A
    /// refill's answer deposits its batch in `counter` (or marks the
    /// allowance dry), or makes its next call due.
    pub fn on_reply(
        &mut self,
        token: u64,
        counter: &mut dyn UsageCounter,
        reply: &EtcdReply<'_>,
        body_len: usize,
        now_ms: u64,
    ) -> bool {
        let Some(mut refill) = self.in_flight.answered(token) else {
            return false;
        };
        let step = refill.on_reply(counter, reply, body_len, now_ms);
        self.step(refill, step);
        true
    }

    /// Fails the refills whose answer is overdue at `now_ms` (a host that may
    /// lose an answer calls this on its tick).
    pub fn overdue(&mut self, now_ms: u64) {
        for mut refill in self.in_flight.overdue(now_ms) {
            let step = refill.on_failure("no answer (the call was lost)");
            self.step(refill, step);
        }
    }

    /// The refills that ended since last asked, for the adapter to count and log.
    pub fn take_ended(&mut self) -> Vec<Ended> {
        std::mem::take(&mut self.ended)
    }

    /// How many refills are due or in flight.
    pub fn len(&self) -> usize {
        self.due.len().saturating_add(self.in_flight.len())
    }

    /// Whether no refill is due or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn step(&mut self, refill: Refill, step: RefillStep) {
        match step {
            RefillStep::Send(call) => self.due.push(Due { refill, call }),
            RefillStep::Done(counter, line) => self.ended.push((counter, line)),
        }
    }
}
