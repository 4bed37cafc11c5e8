//! JWS algorithms cjwt verifies (RFC 7518, RFC 8037), parsed by exact, case-sensitive name.

/// A supported JWS `alg`. `none` and anything not listed here is not representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    EdDSA,
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    HS256,
    HS384,
    HS512,
}

/// The hash a signature algorithm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 12] = [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// Exact, case-sensitive lookup of a JWS `alg` name.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    pub fn hash(self) -> Hash {
        match self {
            Algorithm::EdDSA | Algorithm::HS512 | Algorithm::RS512 | Algorithm::PS512 => Hash::Sha512,
            Algorithm::ES384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::HS384 => Hash::Sha384,
            _ => Hash::Sha256,
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        )
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// Bit for [`AlgSet`].
    fn bit(self) -> u16 {
        let index = Algorithm::ALL.iter().position(|a| *a == self).unwrap_or(0);
        1u16 << index
    }
}

/// A small set of algorithms (one bit each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlgSet(u16);

impl AlgSet {
    pub const EMPTY: AlgSet = AlgSet(0);

    pub fn all() -> AlgSet {
        AlgSet(Algorithm::ALL.iter().fold(0, |acc, a| acc | a.bit()))
    }
    pub fn of(algs: &[Algorithm]) -> AlgSet {
        AlgSet(algs.iter().fold(0, |acc, a| acc | a.bit()))
    }
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }
    pub fn insert(&mut self, alg: Algorithm) {
        self.0 |= alg.bit();
    }
    pub fn union(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 | other.0)
    }
    pub fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact_and_case_sensitive() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        for bad in ["none", "None", "hs256", "HS256 ", "RS256\0", "ES256K", "HS1024", "ED25519", "ES512", ""] {
            assert_eq!(Algorithm::from_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn algset_membership() {
        let s = AlgSet::of(&[Algorithm::RS256, Algorithm::PS512]);
        assert!(s.contains(Algorithm::PS512) && !s.contains(Algorithm::HS256));
        assert_eq!(s.iter().count(), 2);
        assert!(AlgSet::EMPTY.is_empty());
    }
}
