//! The stable reason codes of SPEC §4: every refusal carries exactly one.
//!
//! The code string is part of the contract: it appears in the response body, in
//! `www-authenticate`, in the metric `cjwt.denied.<code>` and in the log line.

/// Why a request was refused. 401 reasons mean the token cannot be trusted (or is
/// missing); 403 reasons mean a trusted token does not permit this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // 401: credential and token
    MissingToken,
    MultipleTokens,
    TokenTooLarge,
    MalformedToken,
    UnsupportedAlgorithm,
    UnknownIssuer,
    UnknownKey,
    KeysUnavailable,
    BadSignature,
    Expired,
    NotYetValid,
    MissingExp,
    LifetimeTooLong,
    WrongAudience,
    WrongTyp,
    ForbiddenHeader,
    MalformedConstraint,
    // 403: rules and constraints
    UnknownConstraint,
    Ip,
    Method,
    Path,
    Host,
    Region,
    Window,
    MaxUses,
    Custom,
    Role,
    Scope,
    Claim,
    Issuer,
    PathNotNormalized,
}

impl Reason {
    /// Every reason, in declaration order (used to pre-define metrics).
    pub const ALL: [Reason; 31] = [
        Reason::MissingToken,
        Reason::MultipleTokens,
        Reason::TokenTooLarge,
        Reason::MalformedToken,
        Reason::UnsupportedAlgorithm,
        Reason::UnknownIssuer,
        Reason::UnknownKey,
        Reason::KeysUnavailable,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::MissingExp,
        Reason::LifetimeTooLong,
        Reason::WrongAudience,
        Reason::WrongTyp,
        Reason::ForbiddenHeader,
        Reason::MalformedConstraint,
        Reason::UnknownConstraint,
        Reason::Ip,
        Reason::Method,
        Reason::Path,
        Reason::Host,
        Reason::Region,
        Reason::Window,
        Reason::MaxUses,
        Reason::Custom,
        Reason::Role,
        Reason::Scope,
        Reason::Claim,
        Reason::Issuer,
        Reason::PathNotNormalized,
    ];

    /// The stable code string.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::MultipleTokens => "multiple_tokens",
            Reason::TokenTooLarge => "token_too_large",
            Reason::MalformedToken => "malformed_token",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::UnknownKey => "unknown_key",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::MissingExp => "missing_exp",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongTyp => "wrong_typ",
            Reason::ForbiddenHeader => "forbidden_header",
            Reason::MalformedConstraint => "malformed_constraint",
            Reason::UnknownConstraint => "unknown_constraint",
            Reason::Ip => "ip",
            Reason::Method => "method",
            Reason::Path => "path",
            Reason::Host => "host",
            Reason::Region => "region",
            Reason::Window => "window",
            Reason::MaxUses => "max_uses",
            Reason::Custom => "custom",
            Reason::Role => "role",
            Reason::Scope => "scope",
            Reason::Claim => "claim",
            Reason::Issuer => "issuer",
            Reason::PathNotNormalized => "path_not_normalized",
        }
    }

    /// HTTP status: 401 when the token is missing or untrusted, 403 otherwise.
    pub fn status(self) -> u32 {
        if self.is_untrusted() {
            401
        } else {
            403
        }
    }

    /// True for the 401 class.
    pub fn is_untrusted(self) -> bool {
        matches!(
            self,
            Reason::MissingToken
                | Reason::MultipleTokens
                | Reason::TokenTooLarge
                | Reason::MalformedToken
                | Reason::UnsupportedAlgorithm
                | Reason::UnknownIssuer
                | Reason::UnknownKey
                | Reason::KeysUnavailable
                | Reason::BadSignature
                | Reason::Expired
                | Reason::NotYetValid
                | Reason::MissingExp
                | Reason::LifetimeTooLong
                | Reason::WrongAudience
                | Reason::WrongTyp
                | Reason::ForbiddenHeader
                | Reason::MalformedConstraint
        )
    }

    /// The RFC 6750 error code: none for a missing token, `invalid_token` for the
    /// other 401s, `insufficient_scope` for 403s.
    pub fn oauth_error(self) -> Option<&'static str> {
        match self {
            Reason::MissingToken => None,
            r if r.is_untrusted() => Some("invalid_token"),
            _ => Some("insufficient_scope"),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_split_401_403_as_spec() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate {}", r.code());
        }
        assert_eq!(Reason::ALL.iter().filter(|r| r.status() == 401).count(), 17);
        assert_eq!(Reason::MalformedConstraint.status(), 401);
        assert_eq!(Reason::UnknownConstraint.status(), 403);
        assert_eq!(Reason::PathNotNormalized.status(), 403);
        assert_eq!(Reason::MissingToken.oauth_error(), None);
        assert_eq!(Reason::Expired.oauth_error(), Some("invalid_token"));
        assert_eq!(Reason::Ip.oauth_error(), Some("insufficient_scope"));
    }
}
