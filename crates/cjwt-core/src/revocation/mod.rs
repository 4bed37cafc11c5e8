//! Revocation (SPEC §11): deny-lists pushed by configuration and OAuth Token
//! Status Lists, checked on every request (cached verifications included) after
//! the token checks and before the rule's `require`.
//!
//! - [`denylist`]: whether a token is revoked by the configuration's
//!   (`iss`, `jti`) and (`iss`, `sub`, `issued_before`) entries;
//! - [`status_list`]: the token's `status` claim, the Status List Token verified
//!   and decoded (pure functions);
//! - [`fetcher`]: when to fetch each configured list, as a state machine the
//!   adapter drives (it dispatches the calls; the core never names the host).

pub mod denylist;
pub mod fetcher;
pub mod status_list;

use crate::config::Config;
use crate::reason::Reason;
use crate::token::verify::{KeyLookup, VerifiedToken};
use status_list::{TokenStatus, SUSPENDED, VALID};

/// Whether `token` is revoked at `now`: by the configuration's deny-list
/// (`revoked`), then by its status list: an unconfigured `uri` or a mechanism
/// cjwt does not understand is `unknown_status_list`; no valid copy of the list
/// (never fetched, or expired) is `status_unavailable`; status 0 passes, 2 is
/// `suspended`, 1, any other value and an index out of range are `revoked`.
/// `fetched` supplies the lists fetched at run time
/// ([`KeyLookup::status_list`]).
pub fn check(config: &Config, token: &VerifiedToken, fetched: &dyn KeyLookup, now: i64) -> Result<(), Reason> {
    if denylist::revokes(&config.revocation, token) {
        return Err(Reason::Revoked);
    }
    match &token.status {
        TokenStatus::None => Ok(()),
        TokenStatus::Unsupported => Err(Reason::UnknownStatusList),
        TokenStatus::List { idx, uri } => {
            let list = config.status_list_index(uri).ok_or(Reason::UnknownStatusList)?;
            let list = fetched.status_list(list).filter(|l| l.valid_at(now)).ok_or(Reason::StatusUnavailable)?;
            match list.get(*idx) {
                Some(VALID) => Ok(()),
                Some(SUSPENDED) => Err(Reason::Suspended),
                _ => Err(Reason::Revoked),
            }
        }
    }
}
