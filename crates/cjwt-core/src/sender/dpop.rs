//! DPoP proof validation (RFC 9449 §4.3, SPEC §10), as one pure function of
//! the configuration, the proof header values, the request and the clock.
//!
//! Order: one proof, its JWS structure, `typ`, `alg`, a public `jwk`, the
//! signature under that `jwk`, `htm`, `htu`, `iat`, `jti`, `ath` (all
//! `invalid_dpop_proof`), the key thumbprint against `cnf.jkt`
//! (`dpop_key_mismatch`), the nonce (`use_dpop_nonce`), and last the replay
//! cache (`dpop_replay`), so that a proof refused for any other reason is not
//! remembered.

use super::nonce;
use super::replay::{ProofId, ReplayCache};
use crate::config::Dpop;
use crate::encoding::b64;
use crate::keys::algorithm::{AlgSet, Algorithm};
use crate::keys::host_crypto::HostCrypto;
use crate::keys::key::VerificationKey;
use crate::reason::Reason;
pub use crate::request::origin::parse_origin;
use crate::token::claims::{numeric_date, Rounding};
use crate::token::jws::{parse_holder_jws, HolderJws};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The longest proof accepted, bytes (an RSA-8192 `jwk` fits).
pub const MAX_PROOF_BYTES: usize = 8192;
/// The longest proof `jti` accepted, bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// JWK members that only private (or symmetric) keys carry.
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "r", "k"];
/// Proof header parameters refused: extensions cjwt does not understand, and
/// key references other than the embedded `jwk`.
const FORBIDDEN_HEADER: [&str; 6] = ["crit", "jku", "x5u", "x5c", "zip", "enc"];

/// What the proof must fit: the request as the client addressed it.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// `:method`.
    pub method: &'a str,
    /// The origin (`scheme://host[:port]`, as [`parse_origin`] gives it).
    pub origin: &'a str,
    /// The path in normal form, without query or fragment.
    pub path: &'a str,
    /// The access token as presented (for `ath`).
    pub token: &'a [u8],
}

/// The checks of SPEC §10 on the `DPoP` header values `proofs`, for a token
/// bound to `jkt`. The proof is never cached; only its id is remembered.
#[allow(clippy::too_many_arguments)] // each is one input of the decision
pub fn check(
    dpop: &Dpop,
    proofs: &[&[u8]],
    request: &ProofRequest<'_>,
    jkt: &str,
    crypto: &dyn HostCrypto,
    replay: &mut dyn ReplayCache,
    keys: &mut ProofKeys,
    now: i64,
) -> Result<(), Reason> {
    const INVALID: Reason = Reason::InvalidDpopProof;
    let [proof] = proofs else {
        return Err(INVALID);
    };
    if proof.len() > MAX_PROOF_BYTES {
        return Err(INVALID);
    }
    let proof = std::str::from_utf8(proof).map_err(|_| INVALID)?.trim_matches([' ', '\t']);
    let HolderJws { header_b64, header, claims, signing_input, signature } = parse_holder_jws(proof).ok_or(INVALID)?;

    match header.get("typ").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("dpop+jwt") => {}
        _ => return Err(INVALID),
    }
    let alg = header.get("alg").and_then(Value::as_str).and_then(Algorithm::from_name).ok_or(INVALID)?;
    if alg.is_hmac() || !dpop.algorithms.contains(alg) {
        return Err(INVALID);
    }
    if FORBIDDEN_HEADER.iter().any(|p| header.contains_key(*p)) {
        return Err(INVALID);
    }
    let jwk = header.get("jwk").and_then(Value::as_object).ok_or(INVALID)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(INVALID);
    }
    if !matches!(jwk.get("kty").and_then(Value::as_str), Some("EC" | "OKP" | "RSA")) {
        return Err(INVALID);
    }
    let key = keys.import(header_b64, jwk, dpop.algorithms).ok_or(INVALID)?;
    if !key.verify_with(crypto, alg, signing_input.as_bytes(), &signature) {
        return Err(INVALID);
    }

    if claims.get("htm").and_then(Value::as_str) != Some(request.method) {
        return Err(INVALID);
    }
    let htu = claims.get("htu").and_then(Value::as_str).ok_or(INVALID)?;
    match split_htu(htu) {
        Some((origin, path)) if origin == request.origin && path == request.path => {}
        _ => return Err(INVALID),
    }
    let iat = numeric_date(&claims, "iat", Rounding::Down).ok().flatten().ok_or(INVALID)?;
    if now.saturating_sub(iat).unsigned_abs() > dpop.max_age_seconds.unsigned_abs() {
        return Err(INVALID);
    }
    let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES);
    let jti = jti.ok_or(INVALID)?;
    let ath = b64::encode(&Sha256::digest(request.token));
    if claims.get("ath").and_then(Value::as_str) != Some(ath.as_str()) {
        return Err(INVALID);
    }

    if thumbprint(jwk).as_deref() != Some(jkt) {
        return Err(Reason::DpopKeyMismatch);
    }
    if let Some(key) = &dpop.nonce {
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if nonce::is_current(key, n, now) => {}
            _ => return Err(Reason::UseDpopNonce),
        }
    }
    // Remembered while the proof could be accepted: until `iat + max_age`.
    let expires_at = iat.saturating_add(dpop.max_age_seconds).saturating_add(1).max(now.saturating_add(1));
    match replay.first_seen(&ProofId::new(jkt, jti), expires_at, now, dpop.replay_max_entries) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(Reason::DpopReplay),
    }
}

/// Proof keys imported recently (per engine, so per worker), by the encoded
/// proof header that carried them: a client signs every proof with the same key
/// and header, so its JWK is imported (points decoded, RSA checked, SPKI built)
/// once rather than on every request. The import is a pure function of the JWK
/// and the configured algorithms, so a hit gives what importing again would;
/// only successful imports are kept, at most [`MAX_PROOF_KEYS`] (then the map
/// starts over).
#[derive(Default)]
pub struct ProofKeys {
    keys: HashMap<String, VerificationKey>,
}

/// Most proof keys [`ProofKeys`] holds.
pub const MAX_PROOF_KEYS: usize = 256;

impl ProofKeys {
    /// The key of `jwk`, carried in the proof header `header_b64`: from the
    /// map, or imported now; `None` when the JWK is refused.
    pub fn import(
        &mut self,
        header_b64: &str,
        jwk: &Map<String, Value>,
        algorithms: AlgSet,
    ) -> Option<&VerificationKey> {
        if !self.keys.contains_key(header_b64) {
            let key = VerificationKey::from_jwk(jwk, Some(algorithms)).ok()?;
            if self.keys.len() >= MAX_PROOF_KEYS {
                self.keys.clear();
            }
            self.keys.insert(header_b64.to_owned(), key);
        }
        self.keys.get(header_b64)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The RFC 7638 SHA-256 thumbprint (base64url) of a public JWK: the required
/// members in lexicographic order, no whitespace. `None` for other key types
/// or members that are not strings.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str).and_then(|s| serde_json::to_string(s).ok());
    let canonical = match jwk.get("kty").and_then(Value::as_str)? {
        "EC" => format!("{{\"crv\":{},\"kty\":\"EC\",\"x\":{},\"y\":{}}}", member("crv")?, member("x")?, member("y")?),
        "OKP" => format!("{{\"crv\":{},\"kty\":\"OKP\",\"x\":{}}}", member("crv")?, member("x")?),
        "RSA" => format!("{{\"e\":{},\"kty\":\"RSA\",\"n\":{}}}", member("e")?, member("n")?),
        _ => return None,
    };
    Some(b64::encode(&Sha256::digest(canonical.as_bytes())))
}

/// A proof's `htu` as (origin, path): the origin as [`parse_origin`] gives it,
/// the path up to the query or fragment (`/` when empty).
pub fn split_htu(htu: &str) -> Option<(String, &str)> {
    let (scheme, rest) = htu.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let path = tail.get(..tail.find(['?', '#']).unwrap_or(tail.len()))?;
    let origin = parse_origin(&format!("{scheme}://{authority}"))?;
    Some((origin, if path.is_empty() { "/" } else { path }))
}

#[cfg(test)]
mod tests {
    use super::super::replay::ProcessReplay;
    use super::*;
    use crate::config::NonceKey;
    use crate::keys::host_crypto::PureRust;
    use p256::ecdsa::signature::Signer;
    use serde_json::json;

    // RFC 9449 §4.1 (Figure 3/4) and §7.1 (Figure 13): the example key, its
    // thumbprint (§6.1), the token-endpoint proof and the resource proof with
    // its access token.
    const RFC_X: &str = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
    const RFC_Y: &str = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";
    const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    const RFC_HEADER: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19";
    const RFC_TOKEN_PROOF: &str = "eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    const RFC_RESOURCE_PROOF: &str = "eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
    const RFC_ACCESS_TOKEN: &[u8] = b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    const RFC_NOW: i64 = 1_562_262_618;

    fn config() -> Dpop {
        Dpop {
            algorithms: AlgSet::of(&[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256]),
            algs: "ES256 EdDSA RS256".into(),
            max_age_seconds: 60,
            public_origin: None,
            nonce: None,
            replay_max_entries: 65536,
            replay_in_usage_store: false,
        }
    }

    fn resource() -> ProofRequest<'static> {
        ProofRequest {
            method: "GET",
            origin: "https://resource.example.org",
            path: "/protectedresource",
            token: RFC_ACCESS_TOKEN,
        }
    }

    fn run(dpop: &Dpop, proof: &str, request: &ProofRequest<'_>, jkt: &str, now: i64) -> Result<(), Reason> {
        check(
            dpop,
            &[proof.as_bytes()],
            request,
            jkt,
            &PureRust,
            &mut ProcessReplay::new(),
            &mut ProofKeys::default(),
            now,
        )
    }

    #[test]
    fn rfc_9449_examples() {
        let jwk = json!({"kty": "EC", "x": RFC_X, "y": RFC_Y, "crv": "P-256"});
        assert_eq!(thumbprint(jwk.as_object().unwrap()).as_deref(), Some(RFC_JKT));
        let proof = format!("{RFC_HEADER}.{RFC_RESOURCE_PROOF}");
        assert_eq!(run(&config(), &proof, &resource(), RFC_JKT, RFC_NOW), Ok(()));
        // The token-endpoint proof has no `ath`: never valid for a resource.
        let token_proof = format!("{RFC_HEADER}.{RFC_TOKEN_PROOF}");
        let token_endpoint =
            ProofRequest { method: "POST", origin: "https://server.example.com", path: "/token", ..resource() };
        assert_eq!(run(&config(), &token_proof, &token_endpoint, RFC_JKT, RFC_NOW), Err(Reason::InvalidDpopProof));
        // Another token, method, path or origin.
        let other_token = ProofRequest { token: b"another-token", ..resource() };
        let other_method = ProofRequest { method: "POST", ..resource() };
        let other_path = ProofRequest { path: "/other", ..resource() };
        let other_origin = ProofRequest { origin: "https://resource.example.com", ..resource() };
        for r in [other_token, other_method, other_path, other_origin] {
            assert_eq!(run(&config(), &proof, &r, RFC_JKT, RFC_NOW), Err(Reason::InvalidDpopProof), "{r:?}");
        }
        // The token is bound to another key.
        assert_eq!(run(&config(), &proof, &resource(), "AAAA", RFC_NOW), Err(Reason::DpopKeyMismatch));
        // `iat` within max_age either way, inclusive.
        assert_eq!(run(&config(), &proof, &resource(), RFC_JKT, RFC_NOW + 60), Ok(()));
        assert_eq!(run(&config(), &proof, &resource(), RFC_JKT, RFC_NOW + 61), Err(Reason::InvalidDpopProof));
        assert_eq!(run(&config(), &proof, &resource(), RFC_JKT, RFC_NOW - 60), Ok(()));
        assert_eq!(run(&config(), &proof, &resource(), RFC_JKT, RFC_NOW - 61), Err(Reason::InvalidDpopProof));
        // ES256 not allowed.
        let mut eddsa_only = config();
        eddsa_only.algorithms = AlgSet::of(&[Algorithm::EdDSA]);
        assert_eq!(run(&eddsa_only, &proof, &resource(), RFC_JKT, RFC_NOW), Err(Reason::InvalidDpopProof));
        // A public origin: the proof names the public host, the request another one.
        let behind_lb = ProofRequest { origin: "https://resource.example.org", ..resource() };
        assert_eq!(run(&config(), &proof, &behind_lb, RFC_JKT, RFC_NOW), Ok(()));
    }

    #[test]
    fn a_proof_is_accepted_once_and_only_alone() {
        let proof = format!("{RFC_HEADER}.{RFC_RESOURCE_PROOF}");
        let mut cache = ProcessReplay::new();
        let dpop = config();
        let go = |cache: &mut ProcessReplay, proofs: &[&[u8]]| {
            check(&dpop, proofs, &resource(), RFC_JKT, &PureRust, cache, &mut ProofKeys::default(), RFC_NOW)
        };
        assert_eq!(go(&mut cache, &[proof.as_bytes(), proof.as_bytes()]), Err(Reason::InvalidDpopProof));
        assert_eq!(go(&mut cache, &[]), Err(Reason::InvalidDpopProof));
        assert!(cache.is_empty(), "refused proofs are not remembered");
        assert_eq!(go(&mut cache, &[proof.as_bytes()]), Ok(()));
        assert_eq!(go(&mut cache, &[proof.as_bytes()]), Err(Reason::DpopReplay));
        let joined = format!("{proof},{proof}");
        assert_eq!(go(&mut ProcessReplay::new(), &[joined.as_bytes()]), Err(Reason::InvalidDpopProof));
        let failing = check(
            &dpop,
            &[proof.as_bytes()],
            &resource(),
            RFC_JKT,
            &PureRust,
            &mut super::super::replay::NoReplayCache,
            &mut ProofKeys::default(),
            RFC_NOW,
        );
        assert_eq!(failing, Err(Reason::DpopReplay), "a cache that cannot answer refuses");
    }

    /// Signs a proof with a P-256 key: `header` members are added to
    /// `{"typ", "alg", "jwk"}` (a `null` removes one).
    fn es256_proof(key: &p256::ecdsa::SigningKey, header: Value, claims: Value) -> (String, String) {
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64::encode(point.x().unwrap()), "y": b64::encode(point.y().unwrap())});
        let jkt = thumbprint(jwk.as_object().unwrap()).unwrap();
        let mut h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        for (k, v) in header.as_object().unwrap() {
            if v.is_null() {
                h.as_object_mut().unwrap().remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        let input = format!("{}.{}", b64::encode(h.to_string().as_bytes()), b64::encode(claims.to_string().as_bytes()));
        let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
        (format!("{input}.{}", b64::encode(&sig.to_bytes())), jkt)
    }

    fn claims(now: i64) -> Value {
        let ath = b64::encode(&Sha256::digest(b"the-token"));
        json!({"jti": "j1", "htm": "GET", "htu": "https://api.example.com/orders?x=1#f", "iat": now, "ath": ath})
    }

    fn api() -> ProofRequest<'static> {
        ProofRequest { method: "GET", origin: "https://api.example.com", path: "/orders", token: b"the-token" }
    }

    #[test]
    fn every_proof_check_with_a_fixed_clock() {
        let now = 1_800_000_000;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let ok = |header: Value, c: Value| {
            let (proof, jkt) = es256_proof(&key, header, c);
            run(&config(), &proof, &api(), &jkt, now)
        };
        assert_eq!(ok(json!({}), claims(now)), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = claims(now);
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v;
            }
            c
        };
        let invalid = Err(Reason::InvalidDpopProof);
        // Header.
        assert_eq!(ok(json!({"typ": "JWT"}), claims(now)), invalid);
        assert_eq!(ok(json!({"typ": null}), claims(now)), invalid);
        assert_eq!(ok(json!({"typ": "DPoP+JWT"}), claims(now)), Ok(()), "media types are case-insensitive");
        assert_eq!(ok(json!({"alg": "none"}), claims(now)), invalid);
        assert_eq!(ok(json!({"alg": "HS256"}), claims(now)), invalid);
        assert_eq!(ok(json!({"alg": "ES384"}), claims(now)), invalid);
        assert_eq!(ok(json!({"crit": ["x"]}), claims(now)), invalid);
        assert_eq!(ok(json!({"jwk": null}), claims(now)), invalid);
        assert_eq!(ok(json!({"jwk": {"kty": "oct", "k": "AAAA", "alg": "HS256"}}), claims(now)), invalid);
        // A private jwk is refused even when it would verify.
        let (proof, jkt) = es256_proof(&key, json!({}), claims(now));
        let private = {
            let point = key.verifying_key().to_encoded_point(false);
            json!({"kty": "EC", "crv": "P-256", "x": b64::encode(point.x().unwrap()), "y": b64::encode(point.y().unwrap()), "d": b64::encode(&key.to_bytes())})
        };
        assert_eq!(ok(json!({"jwk": private}), claims(now)), invalid);
        // The signature under another key.
        let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let (other_proof, _) = es256_proof(&other, json!({}), claims(now));
        let (h, rest) = proof.split_once('.').unwrap();
        let (_, other_sig) = other_proof.rsplit_once('.').unwrap();
        let (payload, _) = rest.rsplit_once('.').unwrap();
        assert_eq!(run(&config(), &format!("{h}.{payload}.{other_sig}"), &api(), &jkt, now), invalid);
        // Claims.
        assert_eq!(ok(json!({}), with("htm", json!("get"))), invalid);
        assert_eq!(ok(json!({}), with("htm", Value::Null)), invalid);
        assert_eq!(ok(json!({}), with("htu", json!("https://api.example.com/other"))), invalid);
        assert_eq!(ok(json!({}), with("htu", json!("http://api.example.com/orders"))), invalid);
        assert_eq!(ok(json!({}), with("htu", json!("HTTPS://API.example.com:443/orders"))), Ok(()));
        assert_eq!(ok(json!({}), with("htu", json!("https://api.example.com:8443/orders"))), invalid);
        assert_eq!(ok(json!({}), with("htu", json!("https://user@api.example.com/orders"))), invalid);
        assert_eq!(ok(json!({}), with("htu", json!(1))), invalid);
        assert_eq!(ok(json!({}), with("iat", json!(now - 61))), invalid);
        assert_eq!(ok(json!({}), with("iat", json!(now + 61))), invalid);
        assert_eq!(ok(json!({}), with("iat", json!(now as f64 + 0.5))), Ok(()));
        assert_eq!(ok(json!({}), with("iat", json!("now"))), invalid);
        assert_eq!(ok(json!({}), with("iat", Value::Null)), invalid);
        assert_eq!(ok(json!({}), with("jti", Value::Null)), invalid);
        assert_eq!(ok(json!({}), with("jti", json!(""))), invalid);
        assert_eq!(ok(json!({}), with("jti", json!("x".repeat(257)))), invalid);
        assert_eq!(ok(json!({}), with("ath", Value::Null)), invalid);
        assert_eq!(ok(json!({}), with("ath", json!(b64::encode(&Sha256::digest(b"another"))))), invalid);
        // Structure.
        for bad in ["", "a.b", "a.b.c.d", "..", "a b.c.d", &format!("{proof}.")] {
            assert_eq!(run(&config(), bad, &api(), &jkt, now), invalid, "{bad:?}");
        }
        let long = "a".repeat(MAX_PROOF_BYTES + 1);
        assert_eq!(run(&config(), &long, &api(), &jkt, now), invalid);
    }

    #[test]
    fn eddsa_and_rs256_proofs() {
        let now = 1_800_000_000;
        let claims = claims(now);
        let payload = b64::encode(claims.to_string().as_bytes());
        // EdDSA.
        let ed = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(ed.verifying_key().as_bytes())});
        let jkt = thumbprint(jwk.as_object().unwrap()).unwrap();
        let header = b64::encode(json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}).to_string().as_bytes());
        let input = format!("{header}.{payload}");
        use ed25519_dalek::Signer as _;
        let proof = format!("{input}.{}", b64::encode(&ed.sign(input.as_bytes()).to_bytes()));
        assert_eq!(run(&config(), &proof, &api(), &jkt, now), Ok(()));
        // RS256.
        use rsa::pkcs1v15::SigningKey;
        use rsa::signature::SignatureEncoding;
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let jwk = json!({"kty": "RSA", "n": b64::encode(&public.n().to_bytes_be()), "e": b64::encode(&public.e().to_bytes_be())});
        let jkt = thumbprint(jwk.as_object().unwrap()).unwrap();
        let header = b64::encode(json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}).to_string().as_bytes());
        let input = format!("{header}.{payload}");
        let sig = SigningKey::<sha2::Sha256>::new(private).sign(input.as_bytes());
        let proof = format!("{input}.{}", b64::encode(&sig.to_bytes()));
        assert_eq!(run(&config(), &proof, &api(), &jkt, now), Ok(()));
    }

    #[test]
    fn nonces_when_configured() {
        let now = 1_800_000_000;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let mut dpop = config();
        let nonce_key = NonceKey { secret: vec![1; 32], rotate_seconds: 300 };
        dpop.nonce = Some(nonce_key.clone());
        let mut c = claims(now);
        let (proof, jkt) = es256_proof(&key, json!({}), c.clone());
        assert_eq!(run(&dpop, &proof, &api(), &jkt, now), Err(Reason::UseDpopNonce));
        c["nonce"] = json!("stale");
        let (proof, _) = es256_proof(&key, json!({}), c.clone());
        assert_eq!(run(&dpop, &proof, &api(), &jkt, now), Err(Reason::UseDpopNonce));
        c["nonce"] = json!(nonce::current(&nonce_key, now));
        let (proof, _) = es256_proof(&key, json!({}), c);
        assert_eq!(run(&dpop, &proof, &api(), &jkt, now), Ok(()));
    }

    #[test]
    fn proof_keys_are_imported_once_per_header_and_refusals_are_not_kept() {
        let now = 1_800_000_000;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let mut keys = ProofKeys::default();
        let mut replay = ProcessReplay::new();
        for jti in ["a", "b", "c"] {
            let mut c = claims(now);
            c["jti"] = json!(jti);
            let (proof, jkt) = es256_proof(&key, json!({}), c);
            assert_eq!(
                check(&config(), &[proof.as_bytes()], &api(), &jkt, &PureRust, &mut replay, &mut keys, now),
                Ok(())
            );
        }
        assert_eq!(keys.len(), 1, "one client key, one import");
        // A refused JWK is not kept; a key whose signature fails is kept but the proof refused.
        let (bad, jkt) =
            es256_proof(&key, json!({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}), claims(now));
        assert_eq!(
            check(&config(), &[bad.as_bytes()], &api(), &jkt, &PureRust, &mut replay, &mut keys, now),
            Err(Reason::InvalidDpopProof)
        );
        assert_eq!(keys.len(), 1);
        let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let (proof, _) = es256_proof(&key, json!({}), claims(now));
        let (forged, _) = es256_proof(&other, json!({}), claims(now));
        let (h, _) = proof.split_once('.').unwrap();
        let (_, rest) = forged.split_once('.').unwrap();
        let mixed = format!("{h}.{rest}");
        assert_eq!(
            check(&config(), &[mixed.as_bytes()], &api(), &jkt, &PureRust, &mut replay, &mut keys, now),
            Err(Reason::InvalidDpopProof)
        );
        // Bounded.
        for i in 0..(MAX_PROOF_KEYS + 3) {
            let k = p256::ecdsa::SigningKey::from_slice(&[u8::try_from(i % 250).unwrap() + 1; 32]).unwrap();
            let mut c = claims(now);
            c["jti"] = json!(format!("k{i}"));
            let (proof, _) = es256_proof(&k, json!({"kid": i}), c);
            let _ = check(&config(), &[proof.as_bytes()], &api(), "x", &PureRust, &mut replay, &mut keys, now);
            assert!(keys.len() <= MAX_PROOF_KEYS);
        }
    }

    #[test]
    fn htu_splits_into_origin_and_path() {
        assert_eq!(split_htu("https://a/b/c?q#f"), Some(("https://a".into(), "/b/c")));
        assert_eq!(split_htu("https://a?q"), Some(("https://a".into(), "/")));
        assert_eq!(split_htu("https://a#f"), Some(("https://a".into(), "/")));
    }
}
