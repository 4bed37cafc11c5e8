//! The configuration's own work, beside its requests, driven for both
//! adapters: remote key sets and status lists ([`Remote`]) and leased
//! allowances' background refills ([`Refills`]). It runs in the host's main
//! context (the native module's main thread, the proxy-wasm root context),
//! where a call outlives any stream; a request's stream only asks for keys and
//! queues refills.
//!
//! The adapter implements [`BackgroundHost`]'s required methods (its locks, its
//! call, log, counters, how it wakes a paused request or the main context);
//! the provided ones are the driver:
//!
//! ```text
//!   configure │ tick │ wanted │ wait_for_keys │ fetch_answered ─► the Remote's effects ─► execute:
//!      Log, Count, Wake (a paused request), WakeMain (the main context, soon)
//!      Dispatch ─► callout ─► Remote::dispatched ─► its effects, executed in turn
//!   queue_refill ─► WakeMain;  send_refills ─► each call due: callout ─► Refills::sent
//!                                           ─► each refill ended: count, log its warning
//!   refill_answered ─► Refills::on_reply ─► send_refills;  refills_tick ─► Refills::overdue ─► send_refills
//! ```
//!
//! The host's state is locked for one core step at a time
//! ([`BackgroundHost::with_remote`], [`BackgroundHost::with_refills`]): no lock
//! is held while the host starts a call, which it may answer inline (the
//! native module's callouts).

use crate::config::Config;
use crate::jwks::store::Fetched;
use crate::keys::host_crypto::HostCrypto;
use crate::lifecycle::refill::{Refill, Refills};
use crate::lifecycle::remote::{Effect, Remote, Sharing};
use crate::lifecycle::request::KeyWait;
use crate::outcome::metrics::Counter;
use crate::outcome::Level;
use crate::usage::etcd::EtcdReply;
use crate::usage::UsageCounter;
use std::collections::VecDeque;

/// What one step of the [`Remote`] reads and writes, lent by the host for that
/// step only ([`BackgroundHost::with_remote`]).
pub struct RemoteEnv<'a, W> {
    /// The configuration's remote sources.
    pub remote: &'a mut Remote<W>,
    /// The compiled configuration the remote parses answers with.
    pub config: &'a Config,
    /// The key store fetched keys and lists go into.
    pub keys: &'a mut Fetched,
    /// The host's signature verification (status lists are signed).
    pub crypto: &'a dyn HostCrypto,
    /// What the fetchers of one Envoy share.
    pub sharing: &'a mut dyn Sharing,
    /// The host clock in Unix seconds.
    pub now: i64,
}

/// The host's side of the configuration's own work (see the module's
/// documentation): an adapter implements the required methods; the provided
/// ones drive the [`Remote`] and the [`Refills`] and are not meant to be
/// overridden.
pub trait BackgroundHost {
    /// A paused request, as the host wakes it ([`BackgroundHost::wake`]).
    type Waiter;

    /// Runs `step` with the configuration's [`Remote`] and what it reads and
    /// writes, locked for the step only (the remote before the key store);
    /// `None` without a remote source, a clock, or a lock.
    fn with_remote<R>(&mut self, step: impl FnOnce(RemoteEnv<'_, Self::Waiter>) -> R) -> Option<R>;

    /// Runs `step` with the configuration's [`Refills`], locked for the step
    /// only; `None` without a lock.
    fn with_refills<R>(&mut self, step: impl FnOnce(&mut Refills) -> R) -> Option<R>;

    /// Sends a call of the configuration's own (`POST` when `body` is not
    /// empty), answered to its main context whatever becomes of the request
    /// that started it: the host's token, or why it was not sent. `None` where
    /// this context does not send (a stream's).
    fn callout(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<Result<u64, String>>;

    /// Writes `line` to the proxy's log.
    fn log(&mut self, level: Level, line: &str);

    /// Increments `counter` by one.
    fn count(&mut self, counter: Counter);

    /// The fetch `waiter` waited for ended: decide it again on its own worker.
    fn wake(&mut self, waiter: Self::Waiter);

    /// Runs [`BackgroundHost::wanted`] and [`BackgroundHost::send_refills`]
    /// (or the tick, which does both) in the main context soon.
    fn wake_main(&mut self);

    /// The host clock in Unix milliseconds.
    fn now_ms(&self) -> u64;

    /// On configuration: the key sets and lists other fetchers of this Envoy
    /// loaded serve until this configuration's own fetches
    /// ([`Remote::on_configure`]).
    fn configure(&mut self) {
        let effects = self.with_remote(|e| e.remote.on_configure(e.now, e.config, e.keys, e.crypto, e.sharing));
        self.execute(effects.unwrap_or_default());
    }

    /// The main context's periodic work ([`Remote::on_tick`]).
    fn tick(&mut self) {
        let effects = self.with_remote(|e| e.remote.on_tick(e.now, e.config, e.keys, e.crypto, e.sharing));
        self.execute(effects.unwrap_or_default());
    }

    /// The main context's answer to [`BackgroundHost::wake_main`] for fetches
    /// requests asked for ([`Remote::on_wanted`]).
    fn wanted(&mut self) {
        let effects = self.with_remote(|e| e.remote.on_wanted(e.now, e.config, e.keys, e.sharing));
        self.execute(effects.unwrap_or_default());
    }

    /// A request lacks `provider`'s keys: whether it waits as `waiter`
    /// ([`Remote::wait_for_keys`]; `DoNotWait` without a remote). Ask with no
    /// key store borrowed.
    fn wait_for_keys(&mut self, provider: usize, waiter: Self::Waiter) -> KeyWait {
        let asked = self.with_remote(|e| e.remote.wait_for_keys(provider, waiter, e.now, e.config, e.keys, e.sharing));
        let Some((wait, effects)) = asked else {
            return KeyWait::DoNotWait;
        };
        self.execute(effects);
        wait
    }

    /// The call `token` was answered (`status`, `body`; `main`: in the main
    /// context): `false` when it was no fetch of this configuration
    /// ([`Remote::on_answer`]).
    fn fetch_answered(&mut self, token: u64, status: Option<&str>, body: &[u8], main: bool) -> bool {
        let Ok(token) = u32::try_from(token) else {
            return false;
        };
        let effects = self.with_remote(|e| {
            e.remote.on_answer(token, status, body, e.now, e.config, e.keys, e.crypto, e.sharing, main)
        });
        let Some(Some(effects)) = effects else {
            return false;
        };
        self.execute(effects);
        true
    }

    /// Executes the remote's effects in order, with the effects of each call's
    /// dispatch ([`Remote::dispatched`]) after them. A call is dispatched in
    /// the main context only (elsewhere [`BackgroundHost::callout`] declines,
    /// and the core hands none out).
    fn execute(&mut self, effects: Vec<Effect<Self::Waiter>>) {
        let mut queue: VecDeque<Effect<Self::Waiter>> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Log(level, line) => self.log(level, &line),
                Effect::Count(counter) => self.count(counter),
                Effect::Wake(waiter) => self.wake(waiter),
                Effect::WakeMain => self.wake_main(),
                Effect::Dispatch(call) => {
                    let timeout_ms = u64::try_from(call.timeout().as_millis()).unwrap_or(u64::MAX);
                    let Some(sent) = self.callout(call.cluster(), &call.headers(), &[], timeout_ms) else {
                        continue;
                    };
                    let sent = sent.and_then(|t| u32::try_from(t).map_err(|_| format!("call token {t} out of range")));
                    let effects = self.with_remote(|e| e.remote.dispatched(&call, sent, e.now, e.sharing));
                    queue.extend(effects.unwrap_or_default());
                }
            }
        }
    }

    /// A request's decision started `refill`: queued, for the main context to send.
    fn queue_refill(&mut self, refill: Refill) {
        let _ = self.with_refills(|r| r.queue(refill));
        self.wake_main();
    }

    /// In the main context: sends every refill call due (elsewhere they stay
    /// due), then counts and logs the refills that ended. The refills are not
    /// locked while a call starts.
    fn send_refills(&mut self) {
        for due in self.with_refills(Refills::take_due).unwrap_or_default() {
            let call = due.call();
            let Some(sent) = self.callout(&call.cluster, &call.headers(), &call.body, call.timeout_ms) else {
                let _ = self.with_refills(|r| r.put_back(due));
                continue;
            };
            let sent = sent.map_err(|why| format!("cluster {:?}: {why}", call.cluster));
            let now_ms = self.now_ms();
            let _ = self.with_refills(|r| r.sent(due, sent, now_ms));
        }
        for (counter, line) in self.with_refills(Refills::take_ended).unwrap_or_default() {
            self.count(counter);
            if let Some(line) = line {
                self.log(Level::Warn, &line);
            }
        }
    }

    /// The call `token` was answered (`reply`, a body of `body_len` bytes):
    /// `false` when it was no refill's. A refill's batch joins `counter`, or
    /// its next call is sent at once.
    fn refill_answered(
        &mut self,
        token: u64,
        counter: &mut dyn UsageCounter,
        reply: &EtcdReply<'_>,
        body_len: usize,
    ) -> bool {
        let now_ms = self.now_ms();
        if self.with_refills(|r| r.on_reply(token, counter, reply, body_len, now_ms)) != Some(true) {
            return false;
        }
        self.send_refills();
        true
    }

    /// For a host that may lose an answer, on its tick: fails the refills whose
    /// answer is overdue ([`Refills::overdue`]), then sends the calls due.
    fn refills_tick(&mut self) {
        let now_ms = self.now_ms();
        let _ = self.with_refills(|r| r.overdue(now_ms));
        self.send_refills();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::host_crypto::PureRust;
    use crate::lifecycle::remote::tests::{jwks, FakeSharing};

    const T0: i64 = 1_800_000_000;

    /// An adapter, faked: its remote and store, its calls (numbered from 1,
    /// or refused with `refused`; none outside the `main` context), and what
    /// it logged, counted and woke.
    struct FakeHost {
        remote: Remote<&'static str>,
        config: Config,
        keys: Fetched,
        sharing: FakeSharing,
        refills: Refills,
        main: bool,
        refused: Option<&'static str>,
        sent: Vec<(String, u64)>,
        logs: Vec<String>,
        counts: Vec<Counter>,
        woken: Vec<&'static str>,
        main_woken: usize,
        now: i64,
    }

    impl BackgroundHost for FakeHost {
        type Waiter = &'static str;

        fn with_remote<R>(&mut self, step: impl FnOnce(RemoteEnv<'_, &'static str>) -> R) -> Option<R> {
            let (remote, config, keys, sharing) = (&mut self.remote, &self.config, &mut self.keys, &mut self.sharing);
            Some(step(RemoteEnv { remote, config, keys, crypto: &PureRust, sharing, now: self.now }))
        }

        fn with_refills<R>(&mut self, step: impl FnOnce(&mut Refills) -> R) -> Option<R> {
            Some(step(&mut self.refills))
        }

        fn callout(
            &mut self,
            cluster: &str,
            _: &[(&str, &str)],
            _: &[u8],
            timeout_ms: u64,
        ) -> Option<Result<u64, String>> {
            if !self.main {
                return None;
            }
            self.sent.push((cluster.to_string(), timeout_ms));
            Some(self.refused.map_or(Ok(self.sent.len() as u64), |why| Err(why.to_string())))
        }

        fn log(&mut self, _: Level, line: &str) {
            self.logs.push(line.to_string());
        }

        fn count(&mut self, counter: Counter) {
            self.counts.push(counter);
        }

        fn wake(&mut self, waiter: &'static str) {
            self.woken.push(waiter);
        }

        fn wake_main(&mut self) {
            self.main_woken += 1;
        }

        fn now_ms(&self) -> u64 {
            u64::try_from(self.now).unwrap() * 1000
        }
    }

    fn host() -> FakeHost {
        let text = serde_json::json!({
            "providers": [{"name": "corp", "issuer": "https://idp.example.com",
                           "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 2000}}],
            "status_lists": [{"uri": "https://idp.example.com/sl/1", "provider": "corp", "cluster": "idp", "path": "/sl"}]
        });
        let config = Config::from_json(text.to_string().as_bytes()).unwrap();
        FakeHost {
            remote: Remote::new(&config, 1),
            config,
            keys: Fetched::new(1),
            sharing: FakeSharing::default(),
            refills: Refills::default(),
            main: true,
            refused: None,
            sent: vec![],
            logs: vec![],
            counts: vec![],
            woken: vec![],
            main_woken: 0,
            now: T0,
        }
    }

    #[test]
    fn the_main_context_fetches_a_waiting_request_wakes_it_and_a_stream_never_sends() {
        let mut h = host();
        h.configure();
        assert!(h.sent.is_empty() && h.counts.is_empty(), "nothing shared yet, nothing fetched");
        h.tick();
        assert_eq!(h.sent, [("idp".to_string(), 2000), ("idp".to_string(), 2000)], "the key set and the list");
        assert!(h.fetch_answered(1, Some("200"), &jwks(&["k1"]), true));
        assert_eq!(h.logs, ["cjwt: JWKS for provider 0: 1 key(s) loaded, 0 skipped"]);
        assert_eq!(h.counts, [Counter::JwksFetchOk]);
        assert!(h.keys.has_keys(0));
        assert!(!h.fetch_answered(99, Some("200"), b"", true), "no fetch's token");
        assert!(!h.fetch_answered(u64::MAX, Some("200"), b"", true), "no proxy-wasm token");
        // A request on a stream lacks a key: it waits, the main context is woken; the stream sends nothing.
        h.main = false;
        h.now = T0 + 1;
        assert_eq!(h.wait_for_keys(0, "req"), KeyWait::Wait);
        assert_eq!((h.main_woken, h.sent.len()), (1, 2));
        h.main = true;
        h.wanted();
        assert_eq!(h.sent.len(), 3, "the refetch");
        assert!(h.fetch_answered(3, Some("200"), &jwks(&["k1", "k2"]), true));
        assert_eq!(h.woken, ["req"]);
        // A call handed out in a stream's context is not sent, nor failed (the core hands out none there).
        let mut h = host();
        h.main = false;
        h.tick();
        assert!(h.sent.is_empty() && h.logs.is_empty() && h.counts.is_empty());
    }

    #[test]
    fn a_call_the_host_refuses_is_logged_counted_and_its_waiters_woken() {
        let mut h = host();
        h.refused = Some("BadArgument");
        h.tick();
        assert_eq!(h.sent.len(), 2);
        assert!(
            h.logs
                .iter()
                .any(|l| l
                    == "cjwt: JWKS for provider 0: fetch not dispatched (BadArgument); is cluster \"idp\" defined?"),
            "{:?}",
            h.logs
        );
        assert!(h.counts.contains(&Counter::JwksFetchFailed) && h.counts.contains(&Counter::StatusListFetchFailed));
    }
}
