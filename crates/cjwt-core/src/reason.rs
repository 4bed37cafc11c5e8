//! The stable reason codes of SPEC §4: every refusal carries exactly one.
//!
//! The code string is part of the contract: it appears in the response body, in
//! `www-authenticate`, in the metric `cjwt.denied.<code>` and in the log line.
//!
//! Each reason is declared once, in the table at the end of this file: its
//! variant, its code and its [`Class`]. The class gives the HTTP status and the
//! RFC 6750 `error` of the challenge (SPEC §4's table), so a status is never
//! stated per reason. [`Reason`], [`Reason::ALL`], [`Reason::code`] and
//! [`Reason::class`] are generated from that table.

/// What kind of refusal a reason is: the rows of SPEC §4's response table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// 401, no token where one is required: `Bearer realm="<realm>"`, no `error`.
    Missing,
    /// 401, the token cannot be trusted: `error="invalid_token"`.
    Untrusted,
    /// 403, the token is trusted but a constraint or rule fails:
    /// `error="insufficient_scope"`.
    Forbidden,
    /// 503, the request could not be decided now (a store did not answer):
    /// `retry-after: 1`, no challenge, `error: temporarily_unavailable`.
    Unavailable,
    /// 401, the DPoP proof (or its absence) is at fault (SPEC §10): the `DPoP`
    /// challenge with `error="invalid_dpop_proof"` and `algs`.
    DpopProof,
    /// 401, the proof lacks a current server nonce (SPEC §10): the `DPoP`
    /// challenge with `error="use_dpop_nonce"` and a fresh `dpop-nonce` header.
    DpopNonce,
}

impl Class {
    /// The HTTP status of a refusal of this class.
    pub const fn status(self) -> u32 {
        match self {
            Class::Missing | Class::Untrusted | Class::DpopProof | Class::DpopNonce => 401,
            Class::Forbidden => 403,
            Class::Unavailable => 503,
        }
    }

    /// The RFC 6750 `error` of the `www-authenticate` challenge (and of the body):
    /// none for a missing token, `invalid_token` for the other 401s,
    /// `insufficient_scope` for 403s, `temporarily_unavailable` (RFC 6749 §4.1.2.1,
    /// body only: a 503 carries no challenge) for 503s.
    pub const fn oauth_error(self) -> Option<&'static str> {
        match self {
            Class::Missing => None,
            Class::Untrusted => Some("invalid_token"),
            Class::Forbidden => Some("insufficient_scope"),
            Class::Unavailable => Some("temporarily_unavailable"),
            Class::DpopProof => Some("invalid_dpop_proof"),
            Class::DpopNonce => Some("use_dpop_nonce"),
        }
    }
}

/// Declares [`Reason`] from one table of `Variant => "code", Class;` rows and
/// generates everything that enumerates reasons, so that no list can fall out of
/// step with another.
macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident => $code:literal, $class:ident; )+) => {
        /// Why a request was refused. 401 reasons mean the token cannot be trusted
        /// (or is missing); 403 reasons mean a trusted token does not permit this
        /// request. See [`Class`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )+
        }

        impl Reason {
            /// How many reasons there are.
            pub const COUNT: usize = [$( Reason::$variant ),+].len();

            /// Every reason, in table order (used to pre-define metrics).
            pub const ALL: [Reason; Reason::COUNT] = [$( Reason::$variant ),+];

            /// The stable code string.
            pub const fn code(self) -> &'static str {
                match self {
                    $( Reason::$variant => $code, )+
                }
            }

            /// The class: status and `www-authenticate` error.
            pub const fn class(self) -> Class {
                match self {
                    $( Reason::$variant => Class::$class, )+
                }
            }
        }
    };
}

impl Reason {
    /// HTTP status: 401 when the token is missing or untrusted, 403 otherwise.
    pub const fn status(self) -> u32 {
        self.class().status()
    }

    /// True for the 401 classes (the token is missing or cannot be trusted).
    pub const fn is_untrusted(self) -> bool {
        self.class().status() == 401
    }

    /// The RFC 6750 error code: none for a missing token, `invalid_token` for the
    /// other 401s, `insufficient_scope` for 403s.
    pub const fn oauth_error(self) -> Option<&'static str> {
        self.class().oauth_error()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

// The one table (SPEC §4 "Reason codes"). Order is the order of `Reason::ALL`.
reasons! {
    // 401: the credential.
    /// No credential where the rule requires one.
    MissingToken => "missing_token", Missing;
    /// More than one credential (two headers, header and query, ...).
    MultipleTokens => "multiple_tokens", Untrusted;
    /// The credential is longer than `max_token_bytes`.
    TokenTooLarge => "token_too_large", Untrusted;
    // 401: the token.
    /// Not a strict compact JWS/JWT, or a claim of the wrong type.
    MalformedToken => "malformed_token", Untrusted;
    /// `alg` unsupported, or not allowed for the provider or the key.
    UnsupportedAlgorithm => "unsupported_algorithm", Untrusted;
    /// No `iss`, or no provider with that issuer.
    UnknownIssuer => "unknown_issuer", Untrusted;
    /// The provider has no key with the token's `kid` (or `alg`).
    UnknownKey => "unknown_key", Untrusted;
    /// No key to verify with: the provider has none yet (remote JWKS not fetched).
    KeysUnavailable => "keys_unavailable", Untrusted;
    /// The signature does not verify.
    BadSignature => "bad_signature", Untrusted;
    /// `exp` has passed (clock skew included).
    Expired => "expired", Untrusted;
    /// `nbf` or `iat` is in the future (clock skew included).
    NotYetValid => "not_yet_valid", Untrusted;
    /// No `exp` while `require_expiration` holds.
    MissingExp => "missing_exp", Untrusted;
    /// `exp - iat` exceeds the configured lifetime cap.
    LifetimeTooLong => "lifetime_too_long", Untrusted;
    /// `aud` names none of the provider's audiences.
    WrongAudience => "wrong_audience", Untrusted;
    /// `typ` is not the required one.
    WrongTyp => "wrong_typ", Untrusted;
    /// A forbidden JWS header parameter (`crit`, `jku`, `jwk`, `x5u`, `x5c`, `zip`, `enc`, `cty`).
    ForbiddenHeader => "forbidden_header", Untrusted;
    /// The constraints claim is not as SPEC §3 defines it (or is ambiguous).
    MalformedConstraint => "malformed_constraint", Untrusted;
    // 401: revocation (SPEC §11 v2).
    /// The token is revoked: by the configuration's deny-list, or its status list
    /// says 1 (or any value but 0 and 2), or its index is out of the list's range.
    Revoked => "revoked", Untrusted;
    /// The token's status list says 2 (suspended).
    Suspended => "suspended", Untrusted;
    /// The token's `status` names a list that is not configured, or a status
    /// mechanism cjwt does not understand.
    UnknownStatusList => "unknown_status_list", Untrusted;
    /// No valid copy of the token's status list (never fetched, or expired).
    StatusUnavailable => "status_unavailable", Untrusted;
    // 403: the token's constraints.
    /// The constraints claim has a key the filter does not understand.
    UnknownConstraint => "unknown_constraint", Forbidden;
    /// The client IP is in none of the `ip` ranges.
    Ip => "ip", Forbidden;
    /// The method is none of `methods`.
    Method => "method", Forbidden;
    /// The path matches none of `paths`.
    Path => "path", Forbidden;
    /// The host matches none of `hosts`.
    Host => "host", Forbidden;
    /// The request's region is none of `region` (or there is no region source).
    Region => "region", Forbidden;
    /// Now is inside none of the `window`s.
    Window => "window", Forbidden;
    /// `max_uses` is used up (or the use could not be counted).
    MaxUses => "max_uses", Forbidden;
    /// A custom constraint does not hold (or its attribute is absent).
    Custom => "custom", Forbidden;
    /// `mcp`: no MCP filter parse of one JSON-RPC 2.0 message (SPEC §15).
    McpNotParsed => "mcp_not_parsed", Forbidden;
    /// `mcp`: the JSON-RPC method is not allowed.
    McpMethod => "mcp_method", Forbidden;
    /// `mcp`: the `tools/call` names no allowed tool.
    McpTool => "mcp_tool", Forbidden;
    /// `mcp`: a constrained tool argument is absent or has no allowed value.
    McpArgument => "mcp_argument", Forbidden;
    // 403: the rule's `require`.
    /// The required roles are not granted.
    Role => "role", Forbidden;
    /// The required scopes are not granted.
    Scope => "scope", Forbidden;
    /// A required claim check fails.
    Claim => "claim", Forbidden;
    /// The token's provider is not one of the rule's issuers.
    Issuer => "issuer", Forbidden;
    // 403: the request.
    /// The path is not in normal form where a decision depends on it.
    PathNotNormalized => "path_not_normalized", Forbidden;
    // 503: the mesh-wide usage store (SPEC §8 v2).
    /// The usage store could not count the use in time; the use may have been counted.
    UsageUnavailable => "usage_unavailable", Unavailable;
    // 401: sender-constrained tokens (SPEC §10 v2).
    /// A DPoP-bound token (`cnf.jkt`) presented under another scheme than `DPoP`.
    DpopRequired => "dpop_required", DpopProof;
    /// The `DPoP` scheme or a `DPoP` header with a token that has no `cnf.jkt`.
    UnexpectedDpop => "unexpected_dpop", DpopProof;
    /// The DPoP proof is missing, repeated, malformed or does not fit the request.
    InvalidDpopProof => "invalid_dpop_proof", DpopProof;
    /// The proof's `jti` was seen before within its window (or could not be recorded).
    DpopReplay => "dpop_replay", DpopProof;
    /// The proof's key is not the one the token is bound to (`cnf.jkt`).
    DpopKeyMismatch => "dpop_key_mismatch", DpopProof;
    /// Nonces are required and the proof carries no current one.
    UseDpopNonce => "use_dpop_nonce", DpopNonce;
    /// A certificate-bound token without a client certificate.
    CertificateRequired => "certificate_required", Untrusted;
    /// The client certificate is not the one the token is bound to.
    CertificateMismatch => "certificate_mismatch", Untrusted;
    /// The `x-forwarded-client-cert` header is not well formed (unbalanced
    /// quotes, a dangling escape, an element that is not `key=value` pairs).
    CertificateHeaderMalformed => "certificate_header_malformed", Untrusted;
    /// `cnf` holds a binding the configuration does not enable (or does not know).
    UnsupportedBinding => "unsupported_binding", Untrusted;
    // Transaction Tokens (SPEC §14, draft-ietf-oauth-transaction-tokens).
    /// A rule requires a Txn-Token and the request carries no `Txn-Token` header.
    MissingTxnToken => "missing_txn_token", Missing;
    /// A Txn-Token (`typ: txntoken+jwt`) presented in `Authorization`: it is
    /// read from the `Txn-Token` header only, and is never an access token.
    TxnTokenInAuthorization => "txn_token_in_authorization", Untrusted;
    /// The Txn-Token's `aud` is not this mesh's trust domain.
    WrongTrustDomain => "wrong_trust_domain", Untrusted;
    /// The Txn-Token lacks one of `txn`, `sub`, `scope`, `req_wl`, `iat`, `exp`
    /// (or has it with the wrong type), or its `rctx`/`tctx` is not an object.
    IncompleteTxnToken => "incomplete_txn_token", Untrusted;
    /// The Txn-Token's requesting workload (`req_wl`) is none of the rule's.
    Workload => "workload", Forbidden;
    /// `require.caller`: the request carries no caller identity (no peer
    /// certificate with a URI SAN, no trusted XFCC element with one `URI`).
    CallerUnidentified => "caller_unidentified", Untrusted;
    /// `require.caller`: the caller's identity is not one the rule accepts (or
    /// not the Txn-Token's `req_wl`): a Txn-Token replayed from elsewhere.
    CallerMismatch => "caller_mismatch", Untrusted;
    /// The gateway could not sign the Txn-Token of an allowed request.
    TxnIssueFailed => "txn_issue_failed", Unavailable;
    /// Exchanged issuing: the Txn-Token Service did not answer within its
    /// `timeout_ms`, could not be called, or answered with another status than 200.
    TxnServiceUnavailable => "txn_service_unavailable", Unavailable;
    /// Exchanged issuing: the service's answer is not a Txn-Token the gateway
    /// may use (not its type, a bad signature, another trust domain or subject,
    /// expired, too long-lived, malformed).
    TxnExchangeInvalid => "txn_exchange_invalid", Unavailable;
    // Holder attenuation (SPEC §16): the `cjwt-chain` header's delegation chain.
    /// The chain is not links of strict compact JWS `~`-separated in one
    /// `cjwt-chain` header, or a link lacks a required member or has it wrong
    /// (`typ`, `jwk`, `iss`, `jti`, `exp`, `cnf.jkt`, `del_depth`, constraints).
    ChainMalformed => "chain_malformed", Untrusted;
    /// The `cjwt-chain` header is longer than `attenuation.max_bytes`.
    ChainSize => "chain_size", Untrusted;
    /// The chain has more links than `attenuation.max_depth`.
    ChainDepth => "chain_depth", Untrusted;
    /// A link is signed by another key than its parent's bound key (`cnf.jkt`),
    /// or names another issuer, or the root token is not DPoP-bound.
    ChainKey => "chain_key", Untrusted;
    /// A link's signature does not verify (or its algorithm is not allowed).
    ChainSignature => "chain_signature", Untrusted;
    /// A link's `par_hash` is not its parent's: spliced from another chain, or reordered.
    ChainParent => "chain_parent", Untrusted;
    /// A link has expired, or is not yet valid.
    ChainExpired => "chain_expired", Untrusted;
    /// A link widens its parent: a constraint that allows more, a key nobody
    /// understands, or a lifetime past its parent's.
    ChainWidens => "chain_widens", Untrusted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// SPEC §4 "Decisions and responses", paragraph "Reason codes": the v1 codes
    /// with their status, in the SPEC's order. Hard-coded so that the crate stands
    /// alone; update it with the SPEC.
    const SPEC_REASONS: [(&str, u32); 68] = [
        ("missing_token", 401),
        ("multiple_tokens", 401),
        ("token_too_large", 401),
        ("malformed_token", 401),
        ("unsupported_algorithm", 401),
        ("unknown_issuer", 401),
        ("unknown_key", 401),
        ("keys_unavailable", 401),
        ("bad_signature", 401),
        ("expired", 401),
        ("not_yet_valid", 401),
        ("missing_exp", 401),
        ("lifetime_too_long", 401),
        ("wrong_audience", 401),
        ("wrong_typ", 401),
        ("forbidden_header", 401),
        ("malformed_constraint", 401),
        // §11 (v2), after the token reasons.
        ("revoked", 401),
        ("suspended", 401),
        ("unknown_status_list", 401),
        ("status_unavailable", 401),
        ("unknown_constraint", 403),
        ("ip", 403),
        ("method", 403),
        ("path", 403),
        ("host", 403),
        ("region", 403),
        ("window", 403),
        ("max_uses", 403),
        ("custom", 403),
        ("mcp_not_parsed", 403),
        ("mcp_method", 403),
        ("mcp_tool", 403),
        ("mcp_argument", 403),
        ("role", 403),
        ("scope", 403),
        ("claim", 403),
        ("issuer", 403),
        ("path_not_normalized", 403),
        ("usage_unavailable", 503),
        ("dpop_required", 401),
        ("unexpected_dpop", 401),
        ("invalid_dpop_proof", 401),
        ("dpop_replay", 401),
        ("dpop_key_mismatch", 401),
        ("use_dpop_nonce", 401),
        ("certificate_required", 401),
        ("certificate_mismatch", 401),
        ("certificate_header_malformed", 401),
        ("unsupported_binding", 401),
        // §14 (v3): Transaction Tokens.
        ("missing_txn_token", 401),
        ("txn_token_in_authorization", 401),
        ("wrong_trust_domain", 401),
        ("incomplete_txn_token", 401),
        ("workload", 403),
        ("caller_unidentified", 401),
        ("caller_mismatch", 401),
        ("txn_issue_failed", 503),
        ("txn_service_unavailable", 503),
        ("txn_exchange_invalid", 503),
        // §16 (v3): delegation chains.
        ("chain_malformed", 401),
        ("chain_size", 401),
        ("chain_depth", 401),
        ("chain_key", 401),
        ("chain_signature", 401),
        ("chain_parent", 401),
        ("chain_expired", 401),
        ("chain_widens", 401),
    ];

    /// The reasons SPEC §4 says v2 adds (§8 `usage_unavailable`, 503; §10 and §11,
    /// 401), which this build does not implement yet. When one is added to the
    /// table, move it to [`SPEC_REASONS`].
    const SPEC_V2_NOT_YET: [&str; 0] = [];

    /// Each variant with its SPEC code, spelled by hand. The `match` is
    /// exhaustive on purpose: a reason added to the table does not compile until
    /// it is listed here, and so checked against the SPEC.
    fn spec_code(r: Reason) -> &'static str {
        match r {
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
            Reason::Revoked => "revoked",
            Reason::Suspended => "suspended",
            Reason::UnknownStatusList => "unknown_status_list",
            Reason::StatusUnavailable => "status_unavailable",
            Reason::UnknownConstraint => "unknown_constraint",
            Reason::Ip => "ip",
            Reason::Method => "method",
            Reason::Path => "path",
            Reason::Host => "host",
            Reason::Region => "region",
            Reason::Window => "window",
            Reason::MaxUses => "max_uses",
            Reason::Custom => "custom",
            Reason::McpNotParsed => "mcp_not_parsed",
            Reason::McpMethod => "mcp_method",
            Reason::McpTool => "mcp_tool",
            Reason::McpArgument => "mcp_argument",
            Reason::Role => "role",
            Reason::Scope => "scope",
            Reason::Claim => "claim",
            Reason::Issuer => "issuer",
            Reason::PathNotNormalized => "path_not_normalized",
            Reason::UsageUnavailable => "usage_unavailable",
            Reason::DpopRequired => "dpop_required",
            Reason::UnexpectedDpop => "unexpected_dpop",
            Reason::InvalidDpopProof => "invalid_dpop_proof",
            Reason::DpopReplay => "dpop_replay",
            Reason::DpopKeyMismatch => "dpop_key_mismatch",
            Reason::UseDpopNonce => "use_dpop_nonce",
            Reason::CertificateRequired => "certificate_required",
            Reason::CertificateMismatch => "certificate_mismatch",
            Reason::CertificateHeaderMalformed => "certificate_header_malformed",
            Reason::UnsupportedBinding => "unsupported_binding",
            Reason::MissingTxnToken => "missing_txn_token",
            Reason::TxnTokenInAuthorization => "txn_token_in_authorization",
            Reason::WrongTrustDomain => "wrong_trust_domain",
            Reason::IncompleteTxnToken => "incomplete_txn_token",
            Reason::Workload => "workload",
            Reason::CallerUnidentified => "caller_unidentified",
            Reason::CallerMismatch => "caller_mismatch",
            Reason::TxnIssueFailed => "txn_issue_failed",
            Reason::TxnServiceUnavailable => "txn_service_unavailable",
            Reason::TxnExchangeInvalid => "txn_exchange_invalid",
            Reason::ChainMalformed => "chain_malformed",
            Reason::ChainSize => "chain_size",
            Reason::ChainDepth => "chain_depth",
            Reason::ChainKey => "chain_key",
            Reason::ChainSignature => "chain_signature",
            Reason::ChainParent => "chain_parent",
            Reason::ChainExpired => "chain_expired",
            Reason::ChainWidens => "chain_widens",
        }
    }

    #[test]
    fn all_is_complete_and_codes_are_unique() {
        assert_eq!(Reason::ALL.len(), Reason::COUNT);
        let mut codes = HashSet::new();
        let mut variants = HashSet::new();
        for r in Reason::ALL {
            assert_eq!(r.code(), spec_code(r), "{r:?}");
            assert!(codes.insert(r.code()), "duplicate code {}", r.code());
            assert!(variants.insert(r), "{r:?} twice in ALL");
            assert_eq!(r.to_string(), r.code());
        }
        // Every variant `spec_code` names (all of them, by exhaustiveness) has its
        // code in ALL, so ALL lists every variant.
        let listed: HashSet<&str> = Reason::ALL.iter().map(|r| spec_code(*r)).collect();
        assert_eq!(listed, codes);
        assert_eq!(Reason::ALL.len(), SPEC_REASONS.len(), "ALL has a reason the SPEC does not list");
    }

    #[test]
    fn every_spec_reason_exists_with_the_spec_status() {
        for (code, status) in SPEC_REASONS {
            let r = Reason::ALL.iter().find(|r| r.code() == code);
            let r = r.unwrap_or_else(|| panic!("SPEC §4 reason {code} is missing"));
            assert_eq!(r.status(), status, "{code}");
        }
        let spec: Vec<&str> = SPEC_REASONS.iter().map(|(c, _)| *c).collect();
        let ours: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(ours, spec, "ALL follows the SPEC's order");
        for code in SPEC_V2_NOT_YET {
            assert!(!ours.contains(&code), "{code} is implemented now: move it to SPEC_REASONS");
        }
    }

    #[test]
    fn class_gives_the_spec_challenge_error() {
        // SPEC §4 table: no token → no `error`; untrusted → invalid_token; 403 →
        // insufficient_scope; SPEC §10: the DPoP reasons → invalid_dpop_proof, and
        // use_dpop_nonce → use_dpop_nonce.
        const DPOP: [&str; 5] =
            ["dpop_required", "unexpected_dpop", "invalid_dpop_proof", "dpop_replay", "dpop_key_mismatch"];
        for r in Reason::ALL {
            let want = match (r, r.status()) {
                (Reason::MissingToken | Reason::MissingTxnToken, _) => None,
                (Reason::UseDpopNonce, _) => Some("use_dpop_nonce"),
                (_, 401) if DPOP.contains(&r.code()) => Some("invalid_dpop_proof"),
                (_, 401) => Some("invalid_token"),
                (_, 403) => Some("insufficient_scope"),
                (_, 503) => Some("temporarily_unavailable"),
                (_, s) => panic!("{r:?}: status {s} is not in SPEC §4"),
            };
            assert_eq!(r.oauth_error(), want, "{r:?}");
            assert_eq!(r.is_untrusted(), r.status() == 401, "{r:?}");
        }
        assert_eq!(Reason::MissingToken.class(), Class::Missing);
        assert_eq!(Reason::MalformedConstraint.status(), 401);
        assert_eq!(Reason::UnknownConstraint.status(), 403);
        assert_eq!(Reason::PathNotNormalized.status(), 403);
    }
}
