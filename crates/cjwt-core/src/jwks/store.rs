//! What was fetched at run time, [`Fetched`]: the last good key set of each
//! provider (SPEC §2 `remote_jwks`) with a generation per provider that the
//! verified-token cache keys on (SEC-12.4), and the last good copy of each
//! configured status list (SPEC §11). Parsing a fetched set is
//! [`super::parse`]; fetching is [`super::fetcher`] and
//! [`crate::revocation::fetcher`].

use crate::config::{Config, JwksSource};
use crate::keys::key::VerificationKey;
use crate::token::status::StatusList;
use crate::token::verify::KeyLookup;
use sha2::{Digest, Sha256};

/// The name under which a host that shares data between VMs (proxy-wasm shared
/// data) keeps the last good key set (the JWKS body) of `provider`, so that a VM
/// reloaded after a fault, or started later, begins with it (SPEC §12). The name
/// hashes what identifies the key set (issuer, cluster, authority, path or
/// discovery document): another provider, or the same one fetched from elsewhere,
/// never reads it. `None` for a provider without `remote_jwks`.
pub fn shared_name(config: &Config, provider: usize) -> Option<String> {
    let p = config.providers.get(provider)?;
    let remote = p.remote.as_ref()?;
    let source = match &remote.source {
        JwksSource::Path(path) => format!("path:{path}"),
        JwksSource::Discovery(doc) => format!("discovery:{doc}"),
    };
    let digest = Sha256::new()
        .chain_update(p.issuer.as_bytes())
        .chain_update([0])
        .chain_update(remote.cluster.as_bytes())
        .chain_update([0])
        .chain_update(remote.authority.as_bytes())
        .chain_update([0])
        .chain_update(source.as_bytes())
        .finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Some(format!("cjwt.jwks.{hex}"))
}

/// The fetched material: the last good key set of every provider (index =
/// provider index) and the last good copy of every configured status list.
#[derive(Default)]
pub struct Fetched {
    fetched: Vec<Option<Vec<VerificationKey>>>,
    /// Per provider, bumped on every [`Fetched::set`] (see [`KeyLookup::generation`]).
    generations: Vec<u64>,
    /// The last good copy of each configured status list (SPEC §11), by list index.
    lists: Vec<Option<StatusList>>,
}

impl Fetched {
    /// A store for `providers` providers, none of them with fetched keys yet.
    pub fn new(providers: usize) -> Fetched {
        Fetched { fetched: vec![None; providers], generations: vec![0; providers], lists: Vec::new() }
    }

    /// Replaces the provider's fetched keys. Verifications cached under the
    /// previous set are made again on their next use.
    pub fn set(&mut self, provider: usize, keys: Vec<VerificationKey>) {
        if let (Some(slot), Some(generation)) = (self.fetched.get_mut(provider), self.generations.get_mut(provider)) {
            *slot = Some(keys);
            *generation = generation.wrapping_add(1);
        }
    }

    /// Replaces the last good copy of the status list `list`, unless `verified`
    /// was issued before the list in use (its `iat` is earlier): an older list,
    /// even unexpired (a stale cache in front of the issuer), would un-revoke
    /// tokens. Then the list in use stays and the error says why; the caller
    /// counts it as a failed refresh.
    pub fn set_status_list(&mut self, list: usize, verified: StatusList) -> Result<(), String> {
        if self.lists.len() <= list {
            self.lists.resize(list.saturating_add(1), None);
        }
        let slot = self.lists.get_mut(list).ok_or("no such status list")?;
        if let Some(current) = slot.as_ref() {
            if verified.issued_at() < current.issued_at() {
                return Err(format!(
                    "the list was issued at {} (`iat`), before the one in use ({}): a rollback is refused",
                    verified.issued_at(),
                    current.issued_at()
                ));
            }
        }
        *slot = Some(verified);
        Ok(())
    }

    /// Heap bytes held by the status lists.
    pub fn status_list_bytes(&self) -> usize {
        self.lists.iter().flatten().map(StatusList::heap_bytes).sum()
    }

    /// Whether a key set was ever accepted for `provider`.
    pub fn has_keys(&self, provider: usize) -> bool {
        self.fetched.get(provider).is_some_and(Option::is_some)
    }
}

impl KeyLookup for Fetched {
    fn fetched(&self, provider: usize) -> Option<&[VerificationKey]> {
        self.fetched.get(provider)?.as_deref()
    }

    fn generation(&self, provider: usize) -> u64 {
        self.generations.get(provider).copied().unwrap_or(0)
    }

    fn status_list(&self, list: usize) -> Option<&StatusList> {
        self.lists.get(list)?.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(providers: serde_json::Value) -> Config {
        Config::from_json(json!({ "providers": providers }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_shared_name_follows_what_identifies_the_key_set() {
        let remote = |iss: &str, path: &str| json!({"name": "p", "issuer": iss, "remote_jwks": {"cluster": "idp", "path": path}});
        let a = config(json!([remote("https://a", "/jwks.json")]));
        let same = config(json!([remote("https://a", "/jwks.json")]));
        let other_path = config(json!([remote("https://a", "/other.json")]));
        let other_issuer = config(json!([remote("https://b", "/jwks.json")]));
        let name = shared_name(&a, 0).unwrap();
        assert!(name.starts_with("cjwt.jwks."));
        assert_eq!(shared_name(&same, 0), Some(name.clone()));
        assert_ne!(shared_name(&other_path, 0), Some(name.clone()));
        assert_ne!(shared_name(&other_issuer, 0), Some(name));
        let inline = config(json!([{"name": "p", "issuer": "i", "pem_keys": [{"kid": "k", "alg": "EdDSA",
            "pem": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAOYVr2nhvkNcVA6ESXO250QcjU+m9acKSPw+DdZgStxY=\n-----END PUBLIC KEY-----\n"}]}]));
        assert_eq!(shared_name(&inline, 0), None);
    }
}
