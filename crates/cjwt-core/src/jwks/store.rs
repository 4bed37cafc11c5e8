//! Keys fetched at run time (SPEC §2 `remote_jwks`): the last good set of each
//! provider, and a generation per provider that the verified-token cache keys on
//! (SEC-12.4). Parsing a fetched set is [`super::parse`]; fetching is [`super::fetcher`].

use crate::keys::key::VerificationKey;
use crate::token::verify::KeyLookup;

/// The last good fetched key set of every provider (index = provider index).
#[derive(Default)]
pub struct KeyStore {
    fetched: Vec<Option<Vec<VerificationKey>>>,
    /// Per provider, bumped on every [`KeyStore::set`] (see [`KeyLookup::generation`]).
    generations: Vec<u64>,
}

impl KeyStore {
    /// A store for `providers` providers, none of them with fetched keys yet.
    pub fn new(providers: usize) -> KeyStore {
        KeyStore { fetched: vec![None; providers], generations: vec![0; providers] }
    }

    /// Replaces the provider's fetched keys. Verifications cached under the
    /// previous set are made again on their next use.
    pub fn set(&mut self, provider: usize, keys: Vec<VerificationKey>) {
        if let (Some(slot), Some(generation)) = (self.fetched.get_mut(provider), self.generations.get_mut(provider)) {
            *slot = Some(keys);
            *generation = generation.wrapping_add(1);
        }
    }

    /// Whether a key set was ever accepted for `provider`.
    pub fn has_keys(&self, provider: usize) -> bool {
        self.fetched.get(provider).is_some_and(Option::is_some)
    }
}

impl KeyLookup for KeyStore {
    fn fetched(&self, provider: usize) -> Option<&[VerificationKey]> {
        self.fetched.get(provider)?.as_deref()
    }

    fn generation(&self, provider: usize) -> u64 {
        self.generations.get(provider).copied().unwrap_or(0)
    }
}
