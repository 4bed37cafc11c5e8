//! Keys: algorithms, import (JWK and PEM, with every refusal), RSA verification,
//! and the host's crypto (Envoy's BoringSSL through `verify_signature`).

pub mod algorithm;
pub mod host_crypto;
pub mod key;
#[cfg(feature = "native-crypto")]
pub mod native;
pub mod rsa;
pub mod signing;
