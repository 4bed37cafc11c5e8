//! `cjwt status-list`: a signed Status List Token (draft-ietf-oauth-status-list)
//! from the indexes to revoke and suspend, for an identity provider to publish
//! and cjwt to fetch (SPEC §11).

use crate::commands::mint::load_key;
use crate::commands::now;
use crate::values::{self, AlgorithmParser};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint_raw;
use cjwt_core::revocation::status_list::{encode_status_list, INVALID, SUSPENDED};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// Arguments of `cjwt status-list`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The provider's private key (PKCS#8 PEM, or for HS* the secret file).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The algorithm (default: detected from the key).
    #[arg(long, value_name = "ALG", value_parser = AlgorithmParser)]
    alg: Option<Algorithm>,
    /// The `kid` header.
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// The list's URI: its `sub`, what tokens name in `status.status_list.uri`,
    /// and the configuration's `status_lists[].uri`.
    #[arg(long, value_name = "URI")]
    uri: String,
    /// The issuer (`iss`), optional.
    #[arg(long, value_name = "ISS")]
    iss: Option<String>,
    /// Number of entries (indexes 0..SIZE).
    #[arg(long, value_name = "N")]
    size: u64,
    /// Bits per entry: 1, 2, 4 or 8 (suspension needs 2 or more).
    #[arg(long, value_name = "BITS", default_value = "1")]
    bits: u8,
    /// Revoked indexes (status 1): `3,7,10-20`; repeatable.
    #[arg(long, value_name = "IDX", value_parser = values::indexes)]
    revoked: Vec<Vec<u64>>,
    /// Suspended indexes (status 2, needs --bits 2 or more): `3,7,10-20`; repeatable.
    #[arg(long, value_name = "IDX", value_parser = values::indexes)]
    suspended: Vec<Vec<u64>>,
    /// Expiry: `exp` = now + DURATION.
    #[arg(long, value_name = "DURATION", value_parser = values::duration, default_value = "24h")]
    exp: i64,
    /// How long a consumer may keep it (`ttl`).
    #[arg(long, value_name = "DURATION", value_parser = values::duration, default_value = "5m")]
    ttl: i64,
}

/// Largest list built: 2^27 entries (16 MiB at 1 bit, cjwt's `max_bytes` cap).
const MAX_ENTRIES: u64 = 1 << 27;

/// Prints the signed Status List Token.
pub fn run(a: Args) -> Result<u8, String> {
    if a.size == 0 || a.size > MAX_ENTRIES {
        return Err(format!("--size must be 1..={MAX_ENTRIES}"));
    }
    if a.ttl <= 0 || a.exp <= 0 {
        return Err("--exp and --ttl must be positive".into());
    }
    let size = usize::try_from(a.size).map_err(|_| "--size is too large")?;
    let mut statuses = vec![0u8; size];
    for (indexes, status, flag) in [(&a.revoked, INVALID, "--revoked"), (&a.suspended, SUSPENDED, "--suspended")] {
        for idx in indexes.iter().flatten() {
            let slot = usize::try_from(*idx).ok().and_then(|i| statuses.get_mut(i));
            match slot {
                Some(s) if *s == 0 => *s = status,
                Some(_) => return Err(format!("{flag}: index {idx} is listed twice")),
                None => return Err(format!("{flag}: index {idx} is not below --size {}", a.size)),
            }
        }
    }
    let claim = encode_status_list(a.bits, &statuses)?;
    let key = load_key(&a.key, a.alg)?;
    let now = now();
    let mut header = Map::new();
    header.insert("alg".into(), json!(key.alg().name()));
    header.insert("typ".into(), json!("statuslist+jwt"));
    if let Some(kid) = &a.kid {
        header.insert("kid".into(), json!(kid));
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(a.uri));
    if let Some(iss) = a.iss {
        claims.insert("iss".into(), json!(iss));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(a.exp)));
    claims.insert("ttl".into(), json!(a.ttl));
    claims.insert("status_list".into(), claim);
    out!("{}", mint_raw(&key, &Value::Object(header).to_string(), &Value::Object(claims).to_string()));
    Ok(0)
}
