//! The decision (SPEC §4), top to bottom: the request view, the rule, the
//! credential, the token (cached or verified), its claims, the rule's `require`,
//! the token's constraints, and the outcome. The first failure decides;
//! `max_uses` is counted last, so that a refused request uses nothing. In
//! `mode: dry_run` a refusal becomes [`Decision::DryRunDeny`]: the request goes
//! upstream, and the adapter counts and logs what would have been refused.

use crate::config::{Auth, Config, Mode};
use crate::constraints::max_uses::TokenUse;
use crate::keys::host_crypto::HostCrypto;
use crate::policy::{require, rules};
use crate::reason::Reason;
use crate::request::credential::{self, Credential, Found};
use crate::request::host::{Host, UsageCounter};
use crate::request::view::RequestView;
use crate::token::cache::TokenCache;
use crate::token::verify::{check_claims, verify, KeyLookup, TokenRefusal, TokenText, VerifiedToken};
use sha2::{Digest, Sha256};
use std::rc::Rc;

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
}

/// The core: a compiled configuration and its verified-token cache (one per VM).
pub struct Engine {
    /// The configuration every decision follows.
    pub config: Config,
    cache: TokenCache,
}

/// A short, non-reversible token fingerprint for logs: the first 8 bytes of SHA-256, hex.
pub fn fingerprint(token: &[u8]) -> String {
    Sha256::digest(token).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    /// An engine for `config`, with an empty cache bounded as the configuration says.
    pub fn new(config: Config) -> Engine {
        let cache = TokenCache::new(config.cache_max_entries, config.cache_max_bytes);
        Engine { config, cache }
    }

    /// Number of cached verified tokens.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Estimated heap bytes held by the verified-token cache.
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Decides one request: the checks, then the configured `mode`.
    pub fn decide(
        &mut self,
        host: &dyn Host,
        keys: &dyn KeyLookup,
        crypto: &dyn HostCrypto,
        counter: &mut dyn UsageCounter,
    ) -> Outcome {
        let Engine { config, cache } = self;
        let view = RequestView::for_config(host, config);
        let Checked { verdict, credential, cache_hit, provider, rule, verified } =
            check(config, cache, &view, keys, crypto, counter);
        let decision = match verdict {
            Ok(token) => Decision::Allow { token, credential },
            Err(reason) => {
                let denial = Denial::new(reason, provider, credential);
                match config.mode {
                    Mode::Enforce => Decision::Deny(denial),
                    Mode::DryRun => Decision::DryRunDeny(denial),
                }
            }
        };
        Outcome { decision, cache_hit, rule, verified }
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

/// The checks of SPEC §4 in order: rule, credential, token, claims, `require`,
/// constraints.
fn check(
    config: &Config,
    cache: &mut TokenCache,
    view: &RequestView<'_>,
    keys: &dyn KeyLookup,
    crypto: &dyn HostCrypto,
    counter: &mut dyn UsageCounter,
) -> Checked {
    let (rule, index) = match rules::select(&config.rules, &config.default_rule, view) {
        Ok(selected) => (selected.rule, Some(selected.index)),
        Err(reason) => return Checked::without_token(Err(reason), None),
    };
    if rule.auth == Auth::None {
        return Checked::without_token(Ok(()), index);
    }
    let found = match credential::find(&config.token_from, view.host()) {
        Credential::None if rule.auth == Auth::Optional => return Checked::without_token(Ok(()), index),
        Credential::None => return Checked::without_token(Err(Reason::MissingToken), index),
        Credential::Multiple => return Checked::without_token(Err(Reason::MultipleTokens), index),
        Credential::One(found) => found,
    };
    let now = view.host().now();
    let TokenStage { token, cache_hit } = token(config, cache, keys, crypto, &found.token, now);
    let provider = token.as_ref().err().and_then(|r| r.provider);
    let verified = token.as_ref().ok().map(Rc::clone);
    let verdict = token.map_err(|r| r.reason).and_then(|token| {
        check_claims(config, &token, now)?;
        require::check(config, &rule.require, &token, view)?;
        let uses = TokenUse {
            counter,
            issuer: token.issuer(),
            jti: token.jti.as_deref(),
            expires_at: expires_at(config, &token),
        };
        token.constraints.check(view, uses, now)?;
        Ok(Some(token))
    });
    Checked { verdict, credential: Some(found), cache_hit, provider, rule: index, verified }
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
