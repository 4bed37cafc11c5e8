//! `cjwt dpop`: a DPoP proof (RFC 9449) for one request, to try a DPoP-bound
//! token with curl:
//!
//! ```text
//! curl -H "authorization: DPoP $TOKEN" \
//!      -H "dpop: $(cjwt dpop --key holder.pem --method GET --url https://api.example.com/v1/orders --token $TOKEN)" ...
//! ```

use crate::commands::mint::load_key;
use crate::commands::{now, random_hex};
use crate::values::AlgorithmParser;
use cjwt_core::keys::algorithm::Algorithm;
use std::path::PathBuf;

/// Arguments of `cjwt dpop`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The holder's private key (PKCS#8 PEM): the key the token is bound to (`cjwt mint --bind-key`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The algorithm (default: detected from the key).
    #[arg(long, value_name = "ALG", value_parser = AlgorithmParser)]
    alg: Option<Algorithm>,
    /// The request method (`htm`).
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// The URL the client calls (`htu`; query and fragment are dropped), e.g. `https://api.example.com/v1/orders`.
    #[arg(long, value_name = "URL")]
    url: String,
    /// The access token the proof goes with (`ath`).
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// The server's nonce (from a `dpop-nonce` response header).
    #[arg(long, value_name = "NONCE")]
    nonce: Option<String>,
}

/// Prints the proof.
pub fn run(a: Args) -> Result<u8, String> {
    if !(a.url.starts_with("https://") || a.url.starts_with("http://")) {
        return Err(format!("--url {:?}: an http or https URL is required", a.url));
    }
    let key = load_key(&a.key, a.alg)?;
    let proof = cjwt_core::mint::dpop_proof(
        &key,
        &a.method,
        &a.url,
        Some(a.token.trim()),
        now(),
        &random_hex(16),
        a.nonce.as_deref(),
    )?;
    out!("{proof}");
    Ok(0)
}
