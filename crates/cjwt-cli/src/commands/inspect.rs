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
    // A delegation credential `ROOT~LINK~…` (SPEC §16): the root, then the chain.
    if let Some((root, links)) = a.token.trim().split_once(cjwt_core::chain::SEPARATOR) {
        run(Args { token: root.to_string() })?;
        return chain(root, links);
    }
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

/// Shows each link of the chain under `root`, not verified: its signer, the
/// key it binds, whether it names its parent (`par_hash`) and its signer
/// (`iss`) as the proxy will require, its lifetime and its constraints.
fn chain(root: &str, links: &str) -> Result<u8, String> {
    use sha2::Digest;
    let shown = cjwt_core::chain::inspect(links).ok_or("the chain: a link is not a compact JWS")?;
    let root_claims = root.split('.').nth(1).and_then(|p| b64::decode(p.as_bytes()));
    let root_claims: Value = root_claims.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
    let mut parent_jkt = root_claims.pointer("/cnf/jkt").and_then(Value::as_str).map(str::to_owned);
    let mut parent_input = root.rfind('.').and_then(|end| root.get(..end)).unwrap_or_default().to_owned();
    out!("chain (not verified): {} link(s)", shown.len());
    for ((i, link), text) in shown.iter().enumerate().zip(links.trim().split(cjwt_core::chain::SEPARATOR)) {
        let claim = |name: &str| link.claims.get(name).map_or("-".to_string(), Value::to_string);
        let par = b64::encode(&sha2::Sha256::digest(parent_input.as_bytes()));
        let names_parent = link.claims.get("par_hash").and_then(Value::as_str) == Some(par.as_str());
        let signed_by_parent = link.signer.is_some() && link.signer == parent_jkt;
        out!(
            "link {}: jti={} del_depth={} signer={} binds={} parent_hash={} signer_is_parent_holder={}",
            i + 1,
            claim("jti"),
            claim("del_depth"),
            link.signer.as_deref().unwrap_or("-"),
            link.claims.get("cnf").and_then(|c| c.get("jkt")).map_or("-".to_string(), Value::to_string),
            if names_parent { "ok" } else { "WRONG" },
            if signed_by_parent { "yes" } else { "NO" },
        );
        for name in ["iat", "exp"] {
            if let Some(ts) = link.claims.get(name).and_then(Value::as_f64) {
                out!("  {name}: {}", utc(ts as i64));
            }
        }
        for (name, value) in &link.claims {
            if !["iss", "jti", "iat", "exp", "nbf", "par_hash", "del_depth", "cnf"].contains(&name.as_str()) {
                out!("  {name}: {value}");
            }
        }
        parent_jkt = link.claims.get("cnf").and_then(|c| c.get("jkt")).and_then(Value::as_str).map(str::to_owned);
        parent_input = text.rfind('.').and_then(|end| text.get(..end)).unwrap_or_default().to_owned();
    }
    Ok(0)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "out of range".into())
}
