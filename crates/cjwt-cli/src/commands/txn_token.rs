//! `cjwt txn-token`: a Transaction Token (SPEC §14), signed as the gateway
//! signs them (`cjwt_core::txn::issue::sign`), for testing sidecars.

use crate::commands::{now, random_hex};
use crate::values;
use cjwt_core::keys::signing::TxnSigningKey;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;

/// Arguments of `cjwt txn-token`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The private key: PKCS#8 PEM, Ed25519 (EdDSA) or P-256 (ES256).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The `kid` header.
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// The trust domain (`aud`).
    #[arg(long, value_name = "DOMAIN")]
    trust_domain: String,
    /// The subject (`sub`).
    #[arg(long, value_name = "SUB")]
    sub: String,
    /// The purpose (`scope`).
    #[arg(long, value_name = "SCOPE")]
    scope: String,
    /// The requesting workload (`req_wl`).
    #[arg(long, value_name = "WORKLOAD")]
    req_wl: String,
    /// Lifetime: `exp` = now + TTL (at most 300 s, the sidecar's default bound).
    #[arg(long, value_name = "DURATION", value_parser = values::duration, default_value = "60")]
    ttl: i64,
    /// The transaction id (`txn`) [default: random].
    #[arg(long, value_name = "ID")]
    txn: Option<String>,
    /// The issuer (`iss`) [default: none, as the draft allows].
    #[arg(long, value_name = "ISS")]
    iss: Option<String>,
    /// `rctx.req_ip`: the original caller's address.
    #[arg(long, value_name = "ADDR")]
    req_ip: Option<IpAddr>,
    /// `rctx.authn`.
    #[arg(long, value_name = "bearer|dpop|mtls", default_value = "bearer")]
    authn: String,
    /// `rctx.region`.
    #[arg(long, value_name = "R")]
    region: Option<String>,
    /// `tctx.cnst`: the constraints that hold downstream, as JSON (`ip`,
    /// `region`, `window`, custom names; e.g. '{"ip": ["192.0.2.0/24"]}').
    #[arg(long, value_name = "JSON")]
    cnst: Option<String>,
    /// Any `tctx` member: the value is JSON, or else a string; repeatable.
    #[arg(long, value_name = "NAME=JSON", value_parser = values::claim)]
    tctx: Vec<(String, Value)>,
}

/// Prints the Txn-Token.
pub fn run(a: Args) -> Result<u8, String> {
    if !(1..=300).contains(&a.ttl) {
        return Err("--ttl: a Txn-Token lives 1 s to 300 s".into());
    }
    let pem = std::fs::read_to_string(&a.key).map_err(|e| format!("{}: {e}", a.key.display()))?;
    let key = TxnSigningKey::from_pkcs8_pem(&pem).map_err(|e| format!("{}: {e}", a.key.display()))?;
    let at = now();
    let mut rctx = Map::new();
    if let Some(ip) = a.req_ip {
        rctx.insert("req_ip".into(), ip.to_string().into());
    }
    rctx.insert("authn".into(), a.authn.into());
    if let Some(region) = a.region {
        rctx.insert("region".into(), region.into());
    }
    let mut tctx: Map<String, Value> = a.tctx.into_iter().collect();
    if let Some(cnst) = a.cnst {
        let value: Value = serde_json::from_str(&cnst).map_err(|e| format!("--cnst: not JSON: {e}"))?;
        tctx.insert("cnst".into(), value);
    }
    let mut claims = json!({
        "aud": a.trust_domain, "txn": a.txn.unwrap_or_else(|| random_hex(16)), "sub": a.sub,
        "scope": a.scope, "req_wl": a.req_wl, "iat": at, "exp": at + a.ttl,
        "rctx": rctx, "tctx": tctx,
    });
    if let (Some(iss), Value::Object(c)) = (a.iss, &mut claims) {
        c.insert("iss".into(), iss.into());
    }
    let token = cjwt_core::txn::issue::sign(&key, a.kid.as_deref(), &claims).ok_or("the signer failed")?;
    out!("{token}");
    Ok(0)
}
