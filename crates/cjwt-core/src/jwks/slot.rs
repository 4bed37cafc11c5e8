//! One remote document's fetch schedule, the part the key fetcher
//! ([`super::fetcher`]) and the status-list fetcher
//! ([`crate::revocation::fetcher`]) share: at most one call in flight — handed
//! out, dispatched (it then has a token), or made by another fetcher of this
//! Envoy until a deadline — and when the next fetch is due. What a call's answer
//! means stays with each fetcher.

/// A call handed out to the adapter. `kind` is what it fetches (the key
/// fetcher's discovery document or key set; `()` for a status list).
#[derive(Debug, Clone, Copy)]
struct Call<K> {
    /// Set once the adapter dispatched it: its answer carries this token.
    token: Option<u32>,
    /// When it was handed out.
    started: i64,
    /// What it fetches.
    kind: K,
    /// Set (a deadline) when another fetcher of this Envoy makes the fetch.
    elsewhere: Option<i64>,
}

/// Why a call in flight was given up on the tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// Another fetcher held the fetch, and its deadline passed.
    Elsewhere,
    /// The call did not answer within its timeout and margin.
    NeverAnswered,
}

/// The schedule of one remote document: nothing in flight and due at once when new.
#[derive(Debug)]
pub(crate) struct Slot<K> {
    call: Option<Call<K>>,
    /// When the next fetch is due.
    pub next_due: i64,
}

impl<K: Copy> Slot<K> {
    pub(crate) fn new() -> Slot<K> {
        Slot { call: None, next_due: 0 }
    }

    /// Whether a call is in flight (handed out and not yet ended).
    pub(crate) fn in_flight(&self) -> bool {
        self.call.is_some()
    }

    /// No call is in flight and the next fetch is due at `now`.
    pub(crate) fn due(&self, now: i64) -> bool {
        self.call.is_none() && now >= self.next_due
    }

    /// Records a call of `kind` handed out at `now`.
    pub(crate) fn start(&mut self, kind: K, now: i64) {
        self.call = Some(Call { token: None, started: now, kind, elsewhere: None });
    }

    /// On the tick: gives the call up when the other fetcher's deadline has
    /// passed, or when this one has not answered within `stale_after` seconds;
    /// the fetch is then due at once.
    pub(crate) fn give_up(&mut self, now: i64, stale_after: i64) -> Option<GaveUp> {
        let call = self.call?;
        let why = match call.elsewhere {
            Some(deadline) if now > deadline => GaveUp::Elsewhere,
            Some(_) => return None,
            None if now.saturating_sub(call.started) > stale_after => GaveUp::NeverAnswered,
            None => return None,
        };
        self.call = None;
        self.next_due = now;
        Some(why)
    }

    /// The call handed out was dispatched; its answer will carry `token`.
    pub(crate) fn dispatched(&mut self, token: u32) {
        if let Some(call) = self.call.as_mut().filter(|c| c.token.is_none()) {
            call.token = Some(token);
        }
    }

    /// The call handed out could not be dispatched: it ends, and the fetch is
    /// due again after `retry_after` seconds. `false` when no such call was in flight.
    pub(crate) fn dispatch_failed(&mut self, now: i64, retry_after: i64) -> bool {
        if self.call.is_none_or(|c| c.token.is_some()) {
            return false;
        }
        self.call = None;
        self.next_due = now.saturating_add(retry_after);
        true
    }

    /// The call handed out is made by another fetcher, which holds it until `deadline`.
    pub(crate) fn fetching_elsewhere(&mut self, deadline: i64) {
        if let Some(call) = self.call.as_mut().filter(|c| c.token.is_none()) {
            call.elsewhere = Some(deadline);
        }
    }

    /// Whether the call in flight is made by another fetcher.
    pub(crate) fn is_elsewhere(&self) -> bool {
        self.call.is_some_and(|c| c.elsewhere.is_some())
    }

    /// The other fetcher gave the fetch back without a document: the call
    /// ends, and the fetch is due again after `retry_after` seconds (as for
    /// the fetcher that failed, so that one of them retries, not both). `false`
    /// when no call was made elsewhere.
    pub(crate) fn elsewhere_ended(&mut self, now: i64, retry_after: i64) -> bool {
        if !self.is_elsewhere() {
            return false;
        }
        self.call = None;
        self.next_due = now.saturating_add(retry_after);
        true
    }

    /// A document another fetcher loaded was taken over: a call made elsewhere
    /// ends (a call of this fetcher's own goes on).
    pub(crate) fn end_elsewhere(&mut self) {
        if self.is_elsewhere() {
            self.call = None;
        }
    }

    /// Whether a call was handed out and is still to be dispatched by this
    /// fetcher (no token yet, not made elsewhere).
    pub(crate) fn awaits_dispatch(&self) -> bool {
        self.call.is_some_and(|c| c.token.is_none() && c.elsewhere.is_none())
    }

    /// A document another fetcher loaded was taken over: a call made elsewhere,
    /// or handed out and not dispatched yet, ends (it would fetch what was just
    /// taken over); a dispatched call of this fetcher's own goes on.
    pub(crate) fn end_unless_dispatched(&mut self) {
        if self.call.is_some_and(|c| c.token.is_none()) {
            self.call = None;
        }
    }

    /// Whether `token` answers this slot's call.
    pub(crate) fn answers(&self, token: u32) -> bool {
        self.call.is_some_and(|c| c.token == Some(token))
    }

    /// Ends the call in flight for its answer: what it fetched.
    pub(crate) fn take(&mut self) -> Option<K> {
        self.call.take().map(|c| c.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_lives_from_start_to_its_answer_or_its_end() {
        let mut s: Slot<u8> = Slot::new();
        assert!(s.due(0), "new: due at once");
        s.start(7, 100);
        assert!(!s.due(1000), "never two calls");
        assert!(!s.answers(1), "not dispatched yet");
        s.dispatched(1);
        s.dispatched(2);
        assert!(s.answers(1) && !s.answers(2), "the first token stays");
        assert!(!s.dispatch_failed(100, 5), "a dispatched call did not fail to dispatch");
        s.fetching_elsewhere(200);
        assert!(!s.is_elsewhere(), "a dispatched call is this fetcher's");
        assert_eq!(s.take(), Some(7));
        assert!(!s.in_flight());
    }

    #[test]
    fn calls_are_given_up_after_their_deadline_only() {
        // (made elsewhere until, started, now, stale_after, given up)
        let cases = [
            (None, 100, 110, 10, None),
            (None, 100, 111, 10, Some(GaveUp::NeverAnswered)),
            (Some(150), 100, 150, 10, None),
            (Some(150), 100, 151, 10, Some(GaveUp::Elsewhere)),
        ];
        for (elsewhere, started, now, stale, want) in cases {
            let mut s: Slot<()> = Slot::new();
            s.start((), started);
            if let Some(deadline) = elsewhere {
                s.fetching_elsewhere(deadline);
            }
            assert_eq!(s.give_up(now, stale), want, "{elsewhere:?} {started} {now}");
            assert_eq!(!s.in_flight(), want.is_some());
            if want.is_some() {
                assert!(s.due(now), "given up: due at once");
            }
        }
    }

    #[test]
    fn a_fetch_made_elsewhere_ends_when_given_back_or_taken_over() {
        let mut s: Slot<()> = Slot::new();
        assert!(!s.elsewhere_ended(0, 5), "nothing in flight");
        s.start((), 0);
        assert!(!s.elsewhere_ended(0, 5), "this fetcher's own call");
        s.end_elsewhere();
        assert!(s.in_flight(), "taking a document over leaves this fetcher's call alone");
        s.fetching_elsewhere(30);
        assert!(s.is_elsewhere());
        assert!(s.elsewhere_ended(10, 5));
        assert_eq!(s.next_due, 15, "due after the retry delay");
        s.start((), 20);
        s.fetching_elsewhere(50);
        s.end_elsewhere();
        assert!(!s.in_flight(), "taken over: the call made elsewhere ends");
    }

    #[test]
    fn a_document_taken_over_ends_every_call_not_dispatched_yet() {
        let mut s: Slot<()> = Slot::new();
        s.start((), 0);
        assert!(s.awaits_dispatch());
        s.end_unless_dispatched();
        assert!(!s.in_flight() && !s.awaits_dispatch(), "handed out, not dispatched: ended");
        s.dispatched(3);
        assert!(!s.answers(3), "a late dispatch of the ended call is no call");
        s.start((), 1);
        s.fetching_elsewhere(10);
        assert!(!s.awaits_dispatch(), "made elsewhere");
        s.end_unless_dispatched();
        assert!(!s.in_flight(), "made elsewhere: ended");
        s.start((), 2);
        s.dispatched(4);
        assert!(!s.awaits_dispatch());
        s.end_unless_dispatched();
        assert!(s.answers(4), "dispatched: goes on");
    }

    #[test]
    fn an_undispatched_call_fails_and_is_due_after_the_retry_delay() {
        let mut s: Slot<()> = Slot::new();
        s.start((), 0);
        assert!(s.dispatch_failed(10, 5));
        assert!(!s.due(14) && s.due(15));
    }
}
