//! The one signing key on the request path: the gateway's Txn-Token key
//! (SPEC §14), Ed25519 (EdDSA) or P-256 (ES256), in both builds. Both are
//! pure RustCrypto code the verifier already links (ed25519-dalek, p256 with
//! deterministic RFC 6979 nonces): no random source, no new dependency.
//! Everything else that signs (`cjwt mint`, the tests) is `mint`, host-only.

use crate::keys::algorithm::Algorithm;

/// A private key that signs Txn-Tokens. `Debug` shows the algorithm only.
#[derive(Clone)]
pub enum TxnSigningKey {
    /// Ed25519, JWS `EdDSA`.
    Ed25519(Box<ed25519_dalek::SigningKey>),
    /// P-256, JWS `ES256`.
    P256(Box<p256::ecdsa::SigningKey>),
}

impl std::fmt::Debug for TxnSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxnSigningKey({})", self.alg().name())
    }
}

impl TxnSigningKey {
    /// Reads a PKCS#8 PEM private key, Ed25519 or P-256. The error never
    /// quotes the text (it is a secret).
    pub fn from_pkcs8_pem(pem: &str) -> Result<TxnSigningKey, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let pem = pem.trim();
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(TxnSigningKey::Ed25519(Box::new(k)));
        }
        {
            use p256::pkcs8::DecodePrivateKey as _;
            if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                return Ok(TxnSigningKey::P256(Box::new(k)));
            }
        }
        Err("not a PKCS#8 PEM private key of Ed25519 or P-256".to_string())
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> Algorithm {
        match self {
            TxnSigningKey::Ed25519(_) => Algorithm::EdDSA,
            TxnSigningKey::P256(_) => Algorithm::ES256,
        }
    }

    /// Signs `input` (JOSE encoding: R || S for ES256); `None` if the signer fails.
    pub fn sign(&self, input: &[u8]) -> Option<Vec<u8>> {
        match self {
            TxnSigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Some(k.sign(input).to_bytes().to_vec())
            }
            TxnSigningKey::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.try_sign(input).ok()?;
                Some(sig.to_bytes().to_vec())
            }
        }
    }

    /// The public key as a JWK (for the sidecars' `jwks`), with `kid` if given.
    pub fn public_jwk(&self, kid: Option<&str>) -> serde_json::Value {
        use crate::encoding::b64;
        let mut jwk = match self {
            TxnSigningKey::Ed25519(k) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64::encode(k.verifying_key().as_bytes())
            }),
            TxnSigningKey::P256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                let (x, y) = (point.x().map(|x| b64::encode(x)), point.y().map(|y| b64::encode(y)));
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
            }
        };
        if let serde_json::Value::Object(m) = &mut jwk {
            m.insert("alg".into(), self.alg().name().into());
            if let Some(kid) = kid {
                m.insert("kid".into(), kid.into());
            }
        }
        jwk
    }
}
