//! The `max_uses` constraint (SPEC §3, §8): this (`iss`, `jti`) has been let
//! through fewer times than the limit. Counted last, so that a request refused
//! for any other reason uses nothing; a failing store refuses (fails closed).

use crate::reason::Reason;
use crate::usage::UsageCounter;
use crate::usage::UsageId;
use serde_json::Value;

/// The token whose uses are counted, and the store that counts them.
pub struct TokenUse<'a> {
    /// The usage store (SPEC §8).
    pub counter: &'a mut dyn UsageCounter,
    /// The token's `iss`.
    pub issuer: &'a str,
    /// The token's `jti`; without one nothing is counted ([`parse`] refuses
    /// `max_uses` on a token without `jti`).
    pub jti: Option<&'a str>,
    /// When the store may drop the counter (Unix seconds): the token's `exp`
    /// plus the clock skew, or never.
    pub expires_at: i64,
}

/// A compiled `max_uses`: the limit, and what counts as a use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// How many uses the token has.
    pub limit: u64,
    /// The token carries `mcp` (SPEC §15): only an allowed `tools/call` is a use;
    /// `initialize`, notifications, `tools/list` and the other methods use nothing.
    pub tool_calls_only: bool,
}

/// Compiles the `max_uses` value: an integer ≥ 1, on a token with a string `jti`.
pub fn parse(value: &Value, token: &super::Token) -> Result<Limit, String> {
    let n = value.as_u64().filter(|n| *n >= 1).ok_or("max_uses: not an integer >= 1")?;
    if !token.has_jti {
        return Err("max_uses: the token has no string `jti`".into());
    }
    Ok(Limit { limit: n, tool_calls_only: token.has_mcp })
}

/// Counts one use if fewer than `limit` were counted; refuses otherwise, and
/// when the store fails.
pub fn check(limit: u64, token: TokenUse<'_>, now: i64) -> Result<(), Reason> {
    let Some(jti) = token.jti else {
        return Ok(());
    };
    let id = UsageId::new(token.issuer, jti);
    match token.counter.try_use(&id, limit, token.expires_at, now) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(Reason::MaxUses),
    }
}

/// Whether `child` grants no more uses than `parent` (SPEC §16): both integers
/// ≥ 1, the child's no greater. Anything else is not within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    match (parent.as_u64(), child.as_u64()) {
        (Some(parent), Some(child)) => child >= 1 && child <= parent,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{MemoryCounter, UsageError};
    use serde_json::json;

    struct Failing;

    impl UsageCounter for Failing {
        fn try_use(&mut self, _: &UsageId, _: u64, _: i64, _: i64) -> Result<bool, UsageError> {
            Err(UsageError)
        }
    }

    #[test]
    fn uses_are_counted_up_to_the_limit_per_token() {
        /// (limit, jti, uses already counted for "a", want)
        type Case<'a> = (u64, Option<&'a str>, u64, Result<(), Reason>);
        let table: &[Case] = &[
            (1, Some("a"), 0, Ok(())),
            (1, Some("a"), 1, Err(Reason::MaxUses)),
            (3, Some("a"), 2, Ok(())),
            (3, Some("a"), 3, Err(Reason::MaxUses)),
            (1, Some("b"), 5, Ok(())),
            (1, None, 5, Ok(())),
        ];
        for (limit, jti, used, want) in table {
            let mut counter = MemoryCounter::default();
            for _ in 0..*used {
                let _ = counter.try_use(&UsageId::new("https://idp", "a"), u64::MAX, 2_000, 100);
            }
            let token = TokenUse { counter: &mut counter, issuer: "https://idp", jti: *jti, expires_at: 2_000 };
            assert_eq!(check(*limit, token, 100), *want, "{limit} {jti:?} {used}");
        }
    }

    #[test]
    fn the_same_jti_of_another_issuer_is_another_token() {
        let mut counter = MemoryCounter::default();
        let mut once =
            |issuer| check(1, TokenUse { counter: &mut counter, issuer, jti: Some("a"), expires_at: 2_000 }, 100);
        assert_eq!(once("https://one"), Ok(()));
        assert_eq!(once("https://two"), Ok(()));
        assert_eq!(once("https://one"), Err(Reason::MaxUses));
    }

    #[test]
    fn a_failing_store_refuses() {
        let token = TokenUse { counter: &mut Failing, issuer: "https://idp", jti: Some("a"), expires_at: 2_000 };
        assert_eq!(check(5, token, 100), Err(Reason::MaxUses));
    }

    #[test]
    fn parse_table() {
        // (value, has_jti, want)
        let table: &[(Value, bool, Option<u64>)] = &[
            (json!(1), true, Some(1)),
            (json!(3), true, Some(3)),
            (json!(3), false, None),
            (json!(0), true, None),
            (json!(-1), true, None),
            (json!(1.5), true, None),
            (json!("3"), true, None),
            (json!([3]), true, None),
        ];
        for (value, has_jti, want) in table {
            let token = super::super::Token { has_jti: *has_jti, has_mcp: false };
            assert_eq!(parse(value, &token).ok().map(|l| l.limit), *want, "{value} {has_jti}");
        }
        let mcp = super::super::Token { has_jti: true, has_mcp: true };
        assert_eq!(parse(&json!(20), &mcp), Ok(Limit { limit: 20, tool_calls_only: true }));
    }
}
