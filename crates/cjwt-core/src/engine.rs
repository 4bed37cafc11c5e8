//! The decision (SPEC §4), top to bottom: the request view, the rule, the
//! credential, the token (cached or verified), its claims, the rule's `require`,
//! the token's constraints, and the outcome. The first failure decides;
//! `max_uses` is counted last, so that a refused request uses nothing. In
//! `mode: dry_run` a refusal becomes [`Decision::DryRunDeny`]: the request goes
//! upstream, and the adapter counts and logs what would have been refused.
//!
//! With a mesh-wide `usage_store` (SPEC §8 v2) the last step cannot be taken
//! here: a request allowed but for its use carries [`Outcome::pending_use`], the
//! adapter asks the store, and [`settle`] turns the store's answer into the final
//! decision. Every other request is decided at once. With
//! `sender_constraints.dpop.replay_cache.store: "usage_store"` (SPEC §10) the
//! DPoP proof is recorded there too, on the same call: first the proof (a replay
//! is `dpop_replay`), then the token's use.

use crate::config::{Auth, Config, EtcdStore, Mode};
use crate::constraints::max_uses::TokenUse;
use crate::keys::host_crypto::HostCrypto;
use crate::policy::{require, rules};
use crate::reason::Reason;
use crate::request::credential::{self, Credential, Found};
use crate::request::host::Host;
use crate::request::view::RequestView;
use crate::sender::replay::{ProofId, ReplayCache, ReplayError};
use crate::sender::{self};
use crate::token::cache::TokenCache;
use crate::token::verify::{check_claims, verify, verify_txn, KeyLookup, TokenRefusal, TokenText, VerifiedToken};
use crate::txn::{self, issue::TxnIds};
use crate::usage::allowance::{self, LocalSpend, Spending};
use crate::usage::etcd::{EtcdUse, UseAnswer, UseCall};
use crate::usage::UsageId;
use crate::usage::{UsageCounter, UsageError};
use sha2::{Digest, Sha256};
use std::rc::Rc;

mod workers;
pub use workers::WorkerEngines;

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Let it through; `token` is the verified token, if one was required or offered.
    Allow {
        /// The verified token (`None` when the rule needs none and none was checked).
        token: Option<Rc<VerifiedToken>>,
        /// Where the token was found (for `forward.remove_token`).
        credential: Option<Found>,
    },
    /// Refuse it.
    Deny(Denial),
    /// `mode: dry_run`: the request would be refused for this reason, but it goes
    /// upstream. The adapter counts `cjwt.dry_run.denied.<reason>`, logs it, and
    /// forwards with the edits of a refusal (`forward.remove_token` applied to
    /// [`Denial::credential`], no verified values). A refusal that only waits for
    /// keys ([`Denial::provider`] set) may still wait for them first.
    DryRunDeny(Denial),
}

/// A refusal: the reason, and a short fingerprint of the token (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why the request is (or in `dry_run` would be) refused.
    pub reason: Reason,
    /// [`fingerprint`] of the credential, if one was found.
    pub fingerprint: Option<String>,
    /// For `unknown_key` and `keys_unavailable`: the provider (index) whose keys
    /// were missing, so the adapter can fetch them and decide again.
    pub provider: Option<usize>,
    /// The one credential found, if any: a `dry_run` refusal still applies
    /// `forward.remove_token` to it (SEC-12.12).
    pub credential: Option<Found>,
}

impl Denial {
    fn new(reason: Reason, provider: Option<usize>, credential: Option<Found>) -> Denial {
        let fingerprint = credential.as_ref().map(|c| fingerprint(&c.token));
        Denial { reason, fingerprint, provider, credential }
    }
}

/// The decision and whether the verified-token cache answered (for metrics).
#[derive(Debug)]
pub struct Outcome {
    /// What to do with the request.
    pub decision: Decision,
    /// `Some(true)` on a cache hit, `Some(false)` on a miss, `None` when no token was verified.
    pub cache_hit: Option<bool>,
    /// The rule that decided (SPEC §12 `cjwt.rule`): `Some(Some(i))` for `rules[i]`,
    /// `Some(None)` for `default_rule`, `None` when no rule could be chosen (a path
    /// not in normal form).
    pub rule: Option<Option<usize>>,
    /// The token, once verified, whatever the decision (SPEC §12 `cjwt.sub`, `cjwt.iss`).
    pub verified: Option<Rc<VerifiedToken>>,
    /// With `usage_store`: the use the store must count before the decision
    /// (`Allow`) holds. The adapter drives it and calls [`settle`]; until then
    /// the request waits.
    pub pending_use: Option<UseCall>,
    /// How the usage store answered (`Some(true)`: it decided, `Some(false)`: it
    /// failed), for `cjwt.usage_store.ok`/`failed`; `None`: not asked.
    pub store_ok: Option<bool>,
    /// With `transaction_tokens.issue` (SPEC §14): the Txn-Token signed for
    /// this request, set upstream if the decision is (or settles to) `Allow`.
    pub issued: Option<String>,
    /// With `transaction_tokens.issue.exchange` (SPEC §14): the exchange to
    /// make at the Txn-Token Service before the decision (`Allow`) holds; the
    /// flow drives it and sets [`Outcome::issued`] with the verified answer.
    pub pending_exchange: Option<txn::exchange::Pending>,
    /// With leased allowances: a batch to take in the background (this
    /// request spent a local use and left fewer than `refill_below`); the
    /// request does not wait for it (`crate::lifecycle::refill`).
    pub pending_refill: Option<UseCall>,
}

/// The core: a compiled configuration and its verified-token cache (one per VM).
pub struct Engine {
    /// The configuration every decision follows.
    config: Config,
    cache: TokenCache,
    /// DPoP proof keys imported recently (SPEC §10): never a proof, only keys.
    proof_keys: sender::dpop::ProofKeys,
    /// Transaction ids of the Txn-Tokens issued (SPEC §14).
    txn_ids: TxnIds,
}

/// A short, non-reversible token fingerprint for logs: the first 8 bytes of SHA-256, hex.
pub fn fingerprint(token: &[u8]) -> String {
    Sha256::digest(token).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    /// An engine for `config`, with an empty cache bounded as the configuration says.
    pub fn new(config: Config) -> Engine {
        let cache = TokenCache::new(config.cache_max_entries, config.cache_max_bytes);
        Engine { config, cache, proof_keys: sender::dpop::ProofKeys::default(), txn_ids: TxnIds::new() }
    }

    /// The configuration every decision follows.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of cached verified tokens.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Estimated heap bytes held by the verified-token cache.
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Decides one request: the checks, then the configured `mode`, with
    /// `replay` remembering DPoP proof ids (SPEC §10: one cache per Envoy,
    /// shared by its workers; a host without one passes
    /// [`NoReplayCache`](crate::sender::replay::NoReplayCache), which refuses
    /// every DPoP-bound token, visibly at the call).
    pub fn decide_with(
        &mut self,
        host: &dyn Host,
        keys: &dyn KeyLookup,
        crypto: &dyn HostCrypto,
        counter: &mut dyn UsageCounter,
        replay: &mut dyn ReplayCache,
    ) -> Outcome {
        let Engine { config, cache, proof_keys, txn_ids } = self;
        let view = RequestView::for_config(host, config);
        let mut deferred = Deferred(Vec::new());
        let local: &mut dyn UsageCounter = counter;
        let counter: &mut dyn UsageCounter = if config.usage_store.is_some() { &mut deferred } else { &mut *local };
        // `replay_cache.store: "usage_store"`: the proof is recorded in the mesh's
        // store, after every other check, instead of in this Envoy's cache.
        let mut deferred_proof = DeferredProof(None);
        let mesh_proofs = config.sender.dpop.as_ref().is_some_and(|d| d.replay_in_usage_store);
        let replay: &mut dyn ReplayCache = if mesh_proofs { &mut deferred_proof } else { replay };
        let Checked { verdict, credential, cache_hit, provider, rule, verified } =
            check(config, cache, &view, keys, crypto, counter, replay, proof_keys);
        let now = view.now();
        // SPEC §14: a request allowed with a token goes upstream with a
        // Txn-Token signed here (before the usage store is asked: a request
        // whose Txn-Token cannot be signed uses nothing mesh-wide).
        let mut exchange = None;
        let (verdict, issued) = match (verdict, &config.txn_issue) {
            (Ok(Some(token)), Some(issue)) => {
                let at = txn::issue::Issued {
                    token: &token,
                    rule: config.rule_for(rule.flatten()),
                    view: &view,
                    txn: txn_ids.next_id(),
                    now,
                };
                if issue.exchange.is_some() {
                    // Exchanged: the flow asks the Txn-Token Service before
                    // the request goes on (the answer is verified there).
                    let scope = at.rule.txn_scope.as_ref().or(issue.scope.as_ref());
                    let raw = credential.as_ref().and_then(|c| std::str::from_utf8(&c.token).ok());
                    match (scope, raw, txn::issue::subject(&token)) {
                        (Some(scope), Some(raw), Ok(sub)) => {
                            exchange = Some(txn::exchange::request(raw, &issue.trust_domain, scope, sub, &view));
                            (Ok(Some(token)), None)
                        }
                        _ => (Err(Reason::TxnIssueFailed), None),
                    }
                } else {
                    match txn::issue::mint(config, issue, &at) {
                        Ok(signed) => (Ok(Some(token)), Some(signed)),
                        Err(reason) => (Err(reason), None),
                    }
                }
            }
            (verdict, _) => (verdict, None),
        };
        // What is deferred to the store: only for a request allowed but for it
        // (the proof and `max_uses` are the last checks, so no refusal can follow).
        let mut pending_refill = None;
        let (verdict, pending_use) = match (verdict, &config.usage_store) {
            (Ok(token), Some(store)) => {
                // A token no lease can cover (no `exp`, or a lifetime over a year)
                // cannot be counted mesh-wide: refused, never uncounted.
                // The free deny path: a token the store said is spent is refused
                // here until it expires, without asking the store again.
                // A token with room counts in batches (leased allowances): a
                // use left in this Envoy's allowance is spent here, without the store.
                let mut refill = None;
                let mut single = |p: PendingUse| {
                    let leased = store.allowance.filter(|a| p.limit >= a.from_max_uses);
                    let Some(a) = leased else {
                        if local.is_spent(&p.id, now) {
                            return Err(Reason::MaxUses);
                        }
                        return EtcdUse::new(&store.key_prefix, &p.id, p.limit, p.expires_at, now)
                            .map(|u| Some((u, p, None)))
                            .map_err(|_| Reason::MaxUses);
                    };
                    let now_ms = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
                    let at = Spending {
                        expires_at: p.expires_at,
                        now_ms,
                        take_timeout_ms: take_timeout_ms(store),
                        refill_below: a.refill_below,
                    };
                    let want = match local.spend_allowance(&p.id, at) {
                        LocalSpend::Spent => return Ok(None),
                        // Spent here, and a batch to take in the background: the
                        // store's answer joins the allowance, not this request.
                        LocalSpend::SpentRefill(last) => {
                            refill = EtcdUse::allowance(&store.key_prefix, &p.id, p.limit, p.expires_at, now).ok().map(
                                |u| {
                                    UseCall::new(u, store.api, &store.api_prefix)
                                        .in_batch(allowance::batch_for(p.limit, a.batch), last)
                                        .spending(Some((p.id, p.expires_at)))
                                },
                            );
                            return Ok(None);
                        }
                        // Nothing left here: the deny path refuses a token the store
                        // said is spent (a leased one spends what this Envoy holds
                        // first: those uses were counted, and a refill may still add some).
                        _ if local.is_spent(&p.id, now) => return Err(Reason::MaxUses),
                        LocalSpend::TakeBatch(last) => (allowance::batch_for(p.limit, a.batch), last),
                        LocalSpend::TakeOne => (1, None),
                    };
                    EtcdUse::allowance(&store.key_prefix, &p.id, p.limit, p.expires_at, now)
                        .map(|u| Some((u, p, Some(want))))
                        .map_err(|_| Reason::MaxUses)
                };
                // A delegation chain with more than one counting level (SPEC §16):
                // one use per level, leaf first, each asked of the store (no local
                // allowance is spent): a level leased in batches is taken one use
                // at a time from its allowance key, so that each token is counted
                // in one key whatever presents it.
                let level = |local: &mut dyn UsageCounter, p: PendingUse| {
                    if local.is_spent(&p.id, now) {
                        return Err(Reason::MaxUses);
                    }
                    match store.allowance.filter(|a| p.limit >= a.from_max_uses) {
                        Some(_) => EtcdUse::allowance(&store.key_prefix, &p.id, p.limit, p.expires_at, now)
                            .map(|u| (u, p, Some((1, None)))),
                        None => {
                            EtcdUse::new(&store.key_prefix, &p.id, p.limit, p.expires_at, now).map(|u| (u, p, None))
                        }
                    }
                    .map_err(|_| Reason::MaxUses)
                };
                let token_uses: Result<Vec<_>, Reason> = match deferred.0.as_slice() {
                    [] => Ok(Vec::new()),
                    [p] => single(*p).map(|u| u.into_iter().collect()),
                    levels => levels.iter().map(|p| level(&mut *local, *p)).collect(),
                };
                // The call knows each token it counts (the deny path) and its batch.
                let ready = |c: UseCall, p: &PendingUse, batch: Option<(u64, allowance::LastWritten)>| {
                    let c = c.spending(Some((p.id, p.expires_at)));
                    match batch {
                        Some((want, last)) => c.in_batch(want, last),
                        None => c,
                    }
                };
                // A proof is remembered past its last acceptable second by the
                // clock skew between replicas (and the lease's bucket).
                let proof_use = deferred_proof.0.map(|(id, expires_at)| {
                    let until = expires_at.saturating_add(config.clock_skew_seconds);
                    EtcdUse::proof(&store.key_prefix, &id, until, now).map_err(|_| Reason::DpopReplay)
                });
                pending_refill = refill;
                match (proof_use.transpose(), token_uses) {
                    (Err(reason), _) | (_, Err(reason)) => (Err(reason), None),
                    // The proof first, then each use in order.
                    (Ok(proof), Ok(uses)) => {
                        let mut call = proof.map(|p| UseCall::proof(p, store.api, &store.api_prefix));
                        for (the_use, p, want) in uses {
                            let next = match call {
                                Some(call) => call.then(the_use),
                                None => UseCall::new(the_use, store.api, &store.api_prefix),
                            };
                            call = Some(ready(next, &p, want));
                        }
                        (Ok(token), call)
                    }
                }
            }
            // Proofs meant for a store that is not configured (a configuration
            // built by hand; compiling refuses it): never accepted unrecorded.
            (Ok(_), None) if deferred_proof.0.is_some() => (Err(Reason::DpopReplay), None),
            (verdict, _) => (verdict, None),
        };
        let decision = match verdict {
            Ok(token) => Decision::Allow { token, credential },
            Err(reason) => refuse(config.mode, Denial::new(reason, provider, credential)),
        };
        // Only an allowed request is exchanged.
        let pending_exchange = exchange.filter(|_| matches!(decision, Decision::Allow { .. }));
        Outcome {
            decision,
            cache_hit,
            rule,
            verified,
            pending_use,
            store_ok: None,
            issued,
            pending_exchange,
            pending_refill,
        }
    }
}

/// How long a batch noted as being taken is trusted (`crate::usage::allowance`):
/// the store's deadline, the grace for a lost answer, and a second for the
/// decision's clock counting whole seconds.
fn take_timeout_ms(store: &EtcdStore) -> u64 {
    store.timeout_ms.saturating_add(crate::lifecycle::request::LOST_ANSWER_GRACE_MS).saturating_add(1000)
}

/// An allowed request refused after all for `reason` (the Txn-Token Service
/// gave no usable Txn-Token); in `mode: dry_run` a `DryRunDeny`.
pub fn refuse_allowed(mode: Mode, mut outcome: Outcome, reason: Reason) -> Outcome {
    outcome.pending_use = None;
    outcome.pending_exchange = None;
    outcome.issued = None;
    outcome.decision = match outcome.decision {
        Decision::Allow { credential, .. } => refuse(mode, Denial::new(reason, None, credential)),
        other => other,
    };
    outcome
}

fn refuse(mode: Mode, denial: Denial) -> Decision {
    match mode {
        Mode::Enforce => Decision::Deny(denial),
        Mode::DryRun => Decision::DryRunDeny(denial),
    }
}

/// The final decision of a request that waited for the usage store: `Counted`
/// keeps it; `Exhausted` refuses it with `max_uses`; `Replayed` (its DPoP proof
/// was recorded before, SPEC §10) with `dpop_replay`; anything else refuses it
/// with `usage_unavailable` (503: the use may have been counted, so the guarantee
/// stays exact or under). In `mode: dry_run` the refusals are `DryRunDeny`, as
/// for the per-Envoy count.
pub fn settle(mode: Mode, mut outcome: Outcome, answer: &UseAnswer) -> Outcome {
    outcome.pending_use = None;
    let reason = match answer {
        UseAnswer::Counted => {
            outcome.store_ok = Some(true);
            return outcome;
        }
        UseAnswer::Exhausted => {
            outcome.store_ok = Some(true);
            Reason::MaxUses
        }
        UseAnswer::Replayed => {
            outcome.store_ok = Some(true);
            Reason::DpopReplay
        }
        UseAnswer::Unavailable(_) => {
            outcome.store_ok = Some(false);
            Reason::UsageUnavailable
        }
    };
    outcome.decision = match outcome.decision {
        Decision::Allow { credential, .. } => refuse(mode, Denial::new(reason, None, credential)),
        // Only an allowed request waits; anything else is left as decided.
        other => other,
    };
    outcome
}

/// The use a request would count, kept for the usage store instead of counted.
#[derive(Debug, Clone, Copy)]
struct PendingUse {
    id: UsageId,
    limit: u64,
    expires_at: i64,
}

/// A [`UsageCounter`] that counts nothing: it notes the use (for the store) and
/// lets the check pass, so that the decision is made up to the use. A chain
/// notes one use per counting level, leaf first and root last.
struct Deferred(Vec<PendingUse>);

impl UsageCounter for Deferred {
    fn try_use(&mut self, id: &UsageId, limit: u64, expires_at: i64, _now: i64) -> Result<bool, UsageError> {
        self.0.push(PendingUse { id: *id, limit, expires_at });
        Ok(true)
    }
}

/// A [`ReplayCache`] that remembers nothing: it notes the proof (for the mesh's
/// store, `replay_cache.store: "usage_store"`) and lets the check pass, so that
/// the decision is made up to the proof's record.
struct DeferredProof(Option<(ProofId, i64)>);

impl ReplayCache for DeferredProof {
    fn first_seen(&mut self, id: &ProofId, expires_at: i64, _: i64, _: usize) -> Result<bool, ReplayError> {
        self.0 = Some((*id, expires_at));
        Ok(true)
    }
}

/// What the checks concluded, before the mode is applied.
struct Checked {
    /// Allowed (with the verified token, if one was checked) or the first failure.
    verdict: Result<Option<Rc<VerifiedToken>>, Reason>,
    /// The one credential found, if the decision got that far.
    credential: Option<Found>,
    cache_hit: Option<bool>,
    /// For `unknown_key` and `keys_unavailable`: the provider whose keys are missing.
    provider: Option<usize>,
    /// The deciding rule (see [`Outcome::rule`]).
    rule: Option<Option<usize>>,
    /// The verified token, whatever the verdict.
    verified: Option<Rc<VerifiedToken>>,
}

impl Checked {
    fn without_token(verdict: Result<(), Reason>, rule: Option<Option<usize>>) -> Checked {
        Checked {
            verdict: verdict.map(|()| None),
            credential: None,
            cache_hit: None,
            provider: None,
            rule,
            verified: None,
        }
    }
}

/// The checks of SPEC §4 in order: rule, credential, token, claims, sender
/// constraints (SPEC §10), `require`, constraints.
#[allow(clippy::too_many_arguments)] // the engine's state and the host's stores, each used once
fn check(
    config: &Config,
    cache: &mut TokenCache,
    view: &RequestView<'_>,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    counter: &mut dyn UsageCounter,
    replay: &mut dyn ReplayCache,
    proof_keys: &mut sender::dpop::ProofKeys,
) -> Checked {
    let (rule, index) = match rules::select(&config.rules, &config.default_rule, view) {
        Ok(selected) => (selected.rule, Some(selected.index)),
        Err(reason) => return Checked::without_token(Err(reason), None),
    };
    if rule.auth == Auth::None {
        return Checked::without_token(Ok(()), index);
    }
    if rule.auth == Auth::TxnToken {
        return check_txn(config, rule, index, view, keys, crypto, counter);
    }
    let found = match credential::find(&config.token_from, view) {
        Credential::None if rule.auth == Auth::Optional => return Checked::without_token(Ok(()), index),
        Credential::None => return Checked::without_token(Err(Reason::MissingToken), index),
        Credential::Multiple => return Checked::without_token(Err(Reason::MultipleTokens), index),
        Credential::One(found) => found,
    };
    let now = view.now();
    let TokenStage { token, cache_hit } = token(config, cache, keys, crypto, &found.token, now);
    let provider = token.as_ref().err().and_then(|r| r.provider);
    let verified = token.as_ref().ok().map(Rc::clone);
    let verdict = token.map_err(|r| r.reason).and_then(|token| {
        check_claims(config, &token, now)?;
        // SPEC §14: a gateway that issues Txn-Tokens names the token's subject in them.
        if config.txn_issue.is_some() {
            txn::issue::subject(&token)?;
        }
        // Every request, cached verifications included (SPEC §11).
        crate::revocation::check(config, &token, keys, now)?;
        // SPEC §16: a delegation chain, verified on every request (never cached).
        let chain = crate::chain::verify(config, &token, &found.token, view, crypto, proof_keys)?;
        let leaf = chain.as_ref().and_then(crate::chain::Chain::leaf_jkt);
        // SPEC §10: after the token checks, before the rule's `require`.
        sender::check(config, &token, &found, view, crypto, replay, proof_keys, leaf)?;
        require::check(config, &rule.require, &token, view)?;
        let expires_at = expires_at(config, &token);
        match &chain {
            None => {
                let uses = TokenUse { counter, issuer: token.issuer(), jti: token.jti.as_deref(), expires_at };
                token.constraints.check(view, uses, now)?;
            }
            Some(chain) => crate::chain::check(config, &token, expires_at, chain, view, counter, now)?,
        }
        Ok(Some(token))
    });
    Checked { verdict, credential: Some(found), cache_hit, provider, rule: index, verified }
}

/// SPEC §14, a rule with `auth: txn_token`: the Txn-Token from its header
/// (never cached: one per transaction), verified with the Txn-Token
/// provider's keys, its claims, the rule's `require`, then the constraints of
/// its `tctx` against the request it was issued for (`rctx`). Nothing is
/// counted: `max_uses` was consumed at the edge.
fn check_txn(
    config: &Config,
    rule: &crate::config::Rule,
    index: Option<Option<usize>>,
    view: &RequestView<'_>,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    counter: &mut dyn UsageCounter,
) -> Checked {
    let found = match txn::enforce::find(view) {
        Ok(found) => found,
        Err(reason) => return Checked::without_token(Err(reason), index),
    };
    let (Some(provider), Some(domain)) = (config.txn_provider, txn_domain(config)) else {
        return Checked::without_token(Err(Reason::MissingTxnToken), index);
    };
    let now = view.now();
    let token = TokenText::admit(config, &found.token)
        .map_err(TokenRefusal::from)
        .and_then(|text| verify_txn(config, keys, crypto, text, provider))
        .map(Rc::new);
    let missing_keys = token.as_ref().err().and_then(|r| r.provider);
    let verified = token.as_ref().ok().map(Rc::clone);
    let verdict = token.map_err(|r| r.reason).and_then(|token| {
        txn::enforce::check_claims(domain, &token, now, config.clock_skew_seconds)?;
        if let Some(caller) = &rule.require.caller {
            txn::enforce::check_caller(caller, view, &token)?;
        }
        require::check(config, &rule.require, &token, view)?;
        let origin = txn::enforce::as_issued(view, &token);
        let uses = TokenUse { counter, issuer: "", jti: None, expires_at: now };
        token.constraints.check(&origin, uses, now)?;
        Ok(Some(token))
    });
    Checked { verdict, credential: Some(found), cache_hit: None, provider: missing_keys, rule: index, verified }
}

fn txn_domain(config: &Config) -> Option<&crate::config::TxnDomain> {
    match &config.providers.get(config.txn_provider?)?.kind {
        crate::config::ProviderKind::TxnToken(domain) => Some(domain),
        crate::config::ProviderKind::AccessToken => None,
    }
}

/// The token stage's result, and whether the cache answered (`None`: not asked).
struct TokenStage {
    token: Result<Rc<VerifiedToken>, TokenRefusal>,
    cache_hit: Option<bool>,
}

/// The verified token for the credential `raw`: from the cache, or verified now
/// and cached until it expires. Time checks are not done here ([`check_claims`]).
fn token(
    config: &Config,
    cache: &mut TokenCache,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    raw: &[u8],
    now: i64,
) -> TokenStage {
    let text = match TokenText::admit(config, raw) {
        Ok(text) => text,
        Err(reason) => return TokenStage { token: Err(TokenRefusal { reason, provider: None }), cache_hit: None },
    };
    if let Some(token) = cache.get(text.as_str(), now, keys) {
        return TokenStage { token: Ok(token), cache_hit: Some(true) };
    }
    let token = verify(config, keys, crypto, text).map(|verified| {
        let verified = Rc::new(verified);
        cache.insert(text.as_str(), Rc::clone(&verified), expires_at(config, &verified), now, keys);
        verified
    });
    TokenStage { token, cache_hit: Some(false) }
}

/// When a token stops being useful (its `exp` plus the clock skew), Unix seconds.
fn expires_at(config: &Config, token: &VerifiedToken) -> i64 {
    token.exp.map_or(i64::MAX, |e| e.saturating_add(config.clock_skew_seconds))
}
