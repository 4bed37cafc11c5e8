//! `cjwt keygen`: a new signing key, as a private PEM and a public JWKS.

use crate::commands::random_hex;
use crate::values::AlgorithmParser;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::SigningKey;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arguments of `cjwt keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The algorithm the key signs with.
    #[arg(long, value_name = "ALG", value_parser = AlgorithmParser)]
    alg: Algorithm,
    /// The key id (default: the algorithm and 8 random hex digits).
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// The directory to write `KID.pem` and `KID.jwks.json` into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Writes the key pair and prints the two file names.
pub fn run(a: Args) -> Result<u8, String> {
    let kid = a.kid.unwrap_or_else(|| format!("{}-{}", a.alg.name().to_lowercase(), random_hex(4)));
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let key = SigningKey::generate(a.alg)?;
    let private = a.out.join(format!("{kid}.pem"));
    let public = a.out.join(format!("{kid}.jwks.json"));
    let jwks =
        serde_json::to_string_pretty(&json!({"keys": [key.public_jwk(Some(&kid))]})).map_err(|e| e.to_string())?;
    write_private(&private, &key.to_pem()?)?;
    if a.alg.is_hmac() {
        // The filter needs the secret itself: the "public" file is secret too.
        write_private(&public, &format!("{jwks}\n"))?;
    } else {
        std::fs::write(&public, format!("{jwks}\n")).map_err(|e| format!("{}: {e}", public.display()))?;
    }
    out!("{}\n{}", private.display(), public.display());
    Ok(0)
}

/// Writes `text` to a file only its owner can read (mode 0600).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}
