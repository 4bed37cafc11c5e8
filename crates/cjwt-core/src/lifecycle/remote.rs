//! The remote sources' side effects, worked out once for both builds: how a
//! key-set or status-list fetch that ended is logged and counted. The fetch
//! state machines themselves are [`crate::jwks::fetcher::Fetcher`] and
//! [`crate::revocation::fetcher::ListFetcher`]; an adapter dispatches the calls
//! they hand out and executes the [`Effect`]s returned here.

use crate::jwks::fetcher::FetchOutcome;
use crate::outcome::metrics::Counter;
use crate::outcome::Level;
use crate::revocation::fetcher::ListOutcome;

/// Something an adapter does for the core, with its host's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write this line to the proxy's log.
    Log(Level, String),
    /// Increment this counter by one.
    Count(Counter),
}

/// The effects of a key-set fetch for `provider` that ended (or went on) as `outcome`.
pub fn key_fetch_ended(provider: usize, outcome: &FetchOutcome) -> Vec<Effect> {
    let line = match outcome {
        FetchOutcome::KeysLoaded { keys, skipped } => {
            Some((Level::Info, format!("cjwt: JWKS for provider {provider}: {keys} key(s) loaded, {skipped} skipped")))
        }
        FetchOutcome::Discovered { jwks_path } => {
            Some((Level::Info, format!("cjwt: OIDC discovery for provider {provider}: JWKS at {jwks_path}")))
        }
        FetchOutcome::KeysRefused { reason } => {
            Some((Level::Warn, format!("cjwt: JWKS for provider {provider} refused, previous keys kept: {reason}")))
        }
        FetchOutcome::DiscoveryRefused { reason } => Some((
            Level::Warn,
            format!("cjwt: OIDC discovery for provider {provider} failed, previous keys kept: {reason}"),
        )),
        FetchOutcome::NeverAnswered => {
            Some((Level::Warn, format!("cjwt: JWKS fetch for provider {provider} never answered; given up")))
        }
        // Logged where the host refused it, with the host's error ([`not_dispatched`]).
        FetchOutcome::NotDispatched => None,
        FetchOutcome::KeysAdopted { keys } => Some((
            Level::Info,
            format!("cjwt: JWKS for provider {provider}: {keys} key(s) from the set another worker fetched"),
        )),
        FetchOutcome::ElsewhereFailed => Some((
            Level::Info,
            format!("cjwt: JWKS fetch for provider {provider} by another worker failed; previous keys kept"),
        )),
        FetchOutcome::ElsewhereTimedOut => Some((
            Level::Warn,
            format!("cjwt: JWKS fetch for provider {provider} by another worker brought no keys; fetching here"),
        )),
    };
    let counter = outcome.fetch_ok().map(|ok| if ok { Counter::JwksFetchOk } else { Counter::JwksFetchFailed });
    effects(line, counter)
}

/// The effects of a status-list fetch for `list` that ended as `outcome`.
pub fn list_fetch_ended(list: usize, outcome: &ListOutcome) -> Vec<Effect> {
    let line = match outcome {
        ListOutcome::Loaded { entries, bits, expires_at } => Some((
            Level::Info,
            format!("cjwt: status list {list}: {entries} entries of {bits} bit(s) loaded, valid until {expires_at}"),
        )),
        ListOutcome::Refused { reason } => Some((
            Level::Warn,
            format!("cjwt: status list {list} refused, previous list kept until it expires: {reason}"),
        )),
        ListOutcome::NeverAnswered => {
            Some((Level::Warn, format!("cjwt: status list {list} fetch never answered; given up")))
        }
        // Logged where the host refused it ([`not_dispatched`]).
        ListOutcome::NotDispatched => None,
        ListOutcome::NotFetchedElsewhere => Some((
            Level::Info,
            format!("cjwt: status list {list}: another worker's fetch brought no list; fetching here"),
        )),
    };
    let counter = outcome
        .counted()
        .then(|| if outcome.ok() { Counter::StatusListFetchOk } else { Counter::StatusListFetchFailed });
    effects(line, counter)
}

/// The log line of a fetch (`what`: "JWKS for provider 0", "status list 1")
/// the host would not dispatch to `cluster`, with the host's `error`.
pub fn not_dispatched(what: &str, cluster: &str, error: &str) -> Effect {
    Effect::Log(Level::Warn, format!("cjwt: {what}: fetch not dispatched ({error}); is cluster {cluster:?} defined?"))
}

fn effects(line: Option<(Level, String)>, counter: Option<Counter>) -> Vec<Effect> {
    let mut out = Vec::with_capacity(2);
    if let Some((level, text)) = line {
        out.push(Effect::Log(level, text));
    }
    if let Some(counter) = counter {
        out.push(Effect::Count(counter));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_that_ended_is_logged_and_counted_once_a_takeover_is_not_counted() {
        let loaded = key_fetch_ended(2, &FetchOutcome::KeysLoaded { keys: 3, skipped: 1 });
        assert_eq!(
            loaded,
            [
                Effect::Log(Level::Info, "cjwt: JWKS for provider 2: 3 key(s) loaded, 1 skipped".into()),
                Effect::Count(Counter::JwksFetchOk)
            ]
        );
        let refused = key_fetch_ended(0, &FetchOutcome::DiscoveryRefused { reason: "HTTP 500".into() });
        assert!(matches!(&refused[..], [Effect::Log(Level::Warn, l), Effect::Count(Counter::JwksFetchFailed)] if l.contains("HTTP 500")));
        assert_eq!(key_fetch_ended(0, &FetchOutcome::NotDispatched), [Effect::Count(Counter::JwksFetchFailed)]);
        assert!(!key_fetch_ended(0, &FetchOutcome::KeysAdopted { keys: 1 }).iter().any(|e| matches!(e, Effect::Count(_))));
        assert!(key_fetch_ended(0, &FetchOutcome::Discovered { jwks_path: "/k".into() }).len() == 1);
        let elsewhere = list_fetch_ended(1, &ListOutcome::NotFetchedElsewhere);
        assert!(matches!(&elsewhere[..], [Effect::Log(Level::Info, _)]));
        assert_eq!(list_fetch_ended(1, &ListOutcome::NotDispatched), [Effect::Count(Counter::StatusListFetchFailed)]);
        let line = not_dispatched("status list 1", "lists", "BadArgument");
        assert_eq!(
            line,
            Effect::Log(
                Level::Warn,
                "cjwt: status list 1: fetch not dispatched (BadArgument); is cluster \"lists\" defined?".into()
            )
        );
    }
}
