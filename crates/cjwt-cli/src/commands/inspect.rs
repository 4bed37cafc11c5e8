//! `cjwt inspect`: a token's header and claims, not verified.

use cjwt_core::encoding::b64;
use serde_json::Value;

/// Arguments of `cjwt inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The compact JWS to show.
    #[arg(value_name = "TOKEN")]
    token: String,
}

/// Prints the header, the claims and `iat`/`nbf`/`exp` in UTC.
pub fn run(a: Args) -> Result<u8, String> {
    let mut parts = a.token.trim().split('.');
    let (Some(h), Some(p), Some(_s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a compact JWS (three dot-separated parts)".into());
    };
    let decode = |seg: &str, what: &str| -> Result<Value, String> {
        let bytes = b64::decode(seg.as_bytes()).ok_or_else(|| format!("{what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{what} is not JSON: {e}"))
    };
    let header = decode(h, "header")?;
    let payload = decode(p, "payload")?;
    out!("header (not verified):\n{}", serde_json::to_string_pretty(&header).map_err(|e| e.to_string())?);
    out!("claims (not verified):\n{}", serde_json::to_string_pretty(&payload).map_err(|e| e.to_string())?);
    for name in ["iat", "nbf", "exp"] {
        if let Some(ts) = payload.get(name).and_then(Value::as_f64) {
            out!("{name}: {}", utc(ts as i64));
        }
    }
    // A Transaction Token (SPEC §14): what it says about the transaction.
    if cjwt_core::token::verify::is_txn_token(header.get("typ").and_then(Value::as_str)) {
        let text = |name: &str| payload.get(name).and_then(Value::as_str).unwrap_or("-").to_string();
        out!(
            "txn-token: txn={} sub={} scope={} req_wl={} aud={}",
            text("txn"),
            text("sub"),
            text("scope"),
            text("req_wl"),
            text("aud")
        );
        for name in ["rctx", "tctx"] {
            match payload.get(name) {
                Some(Value::Object(members)) => {
                    for (member, value) in members {
                        out!("{name}.{member}: {value}");
                    }
                }
                Some(other) => out!("{name}: {other} (not an object)"),
                None => out!("{name}: none"),
            }
        }
    }
    Ok(0)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "out of range".into())
}
