//! JWS algorithms cjwt verifies (RFC 7518, RFC 8037), parsed by exact, case-sensitive name.

/// A supported JWS `alg`. `none` and anything not listed here is not representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 signatures (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt 32 bytes).
    PS256,
    /// RSASSA-PSS with SHA-384 (MGF1 SHA-384, salt 48 bytes).
    PS384,
    /// RSASSA-PSS with SHA-512 (MGF1 SHA-512, salt 64 bytes).
    PS512,
    /// HMAC with SHA-256 (shared secret).
    HS256,
    /// HMAC with SHA-384 (shared secret).
    HS384,
    /// HMAC with SHA-512 (shared secret).
    HS512,
}

/// The hash a signature algorithm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (32-byte digest).
    Sha256,
    /// SHA-384 (48-byte digest).
    Sha384,
    /// SHA-512 (64-byte digest).
    Sha512,
}

impl Algorithm {
    /// Every supported algorithm, in a fixed order (the bit order of [`AlgSet`]).
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

    /// The JWS `alg` name (RFC 7518), e.g. `"ES256"`.
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

    /// The hash of the signature (SHA-512 for EdDSA, as Ed25519 uses internally).
    pub fn hash(self) -> Hash {
        match self {
            Algorithm::EdDSA | Algorithm::HS512 | Algorithm::RS512 | Algorithm::PS512 => Hash::Sha512,
            Algorithm::ES384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::HS384 => Hash::Sha384,
            _ => Hash::Sha256,
        }
    }

    /// Whether it is an RSA algorithm (RS* or PS*).
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

    /// Whether it is a symmetric HMAC algorithm (HS*).
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
    /// The set with no algorithm.
    pub const EMPTY: AlgSet = AlgSet(0);

    /// The set of every supported algorithm ([`Algorithm::ALL`]).
    pub fn all() -> AlgSet {
        AlgSet(Algorithm::ALL.iter().fold(0, |acc, a| acc | a.bit()))
    }
    /// The set of the listed algorithms.
    pub fn of(algs: &[Algorithm]) -> AlgSet {
        AlgSet(algs.iter().fold(0, |acc, a| acc | a.bit()))
    }
    /// Whether `alg` is in the set.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }
    /// Adds `alg` (no effect if already present).
    pub fn insert(&mut self, alg: Algorithm) {
        self.0 |= alg.bit();
    }
    /// The algorithms in either set.
    pub fn union(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 | other.0)
    }
    /// The algorithms in both sets.
    pub fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }
    /// Whether the set has no algorithm.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The algorithms in the set, in the order of [`Algorithm::ALL`].
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
