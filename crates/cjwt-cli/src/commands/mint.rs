//! `cjwt mint`: a signed token with standard claims and constraints.

use crate::commands::{load_config, now, random_hex};
use crate::values::{self, AlgorithmParser, List};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::claims::{ConstraintsSpec, DEFAULT_CONSTRAINTS_CLAIM};
use cjwt_core::mint::{mint, SigningKey};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Arguments of `cjwt mint`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The private key: PKCS#8 PEM, or for HS* the base64url secret file.
    #[arg(long, value_name = "FILE", help_heading = "Key")]
    key: PathBuf,
    /// The algorithm (default: detected from the key; required for HS*).
    #[arg(long, value_name = "ALG", value_parser = AlgorithmParser, help_heading = "Key")]
    alg: Option<Algorithm>,
    /// The `kid` header.
    #[arg(long, value_name = "KID", help_heading = "Key")]
    kid: Option<String>,

    /// The issuer (`iss`).
    #[arg(long, value_name = "ISS", help_heading = "Claims")]
    iss: String,
    /// The subject (`sub`).
    #[arg(long, value_name = "SUB", help_heading = "Claims")]
    sub: Option<String>,
    /// An audience (`aud`); repeat for several.
    #[arg(long, value_name = "AUD", help_heading = "Claims")]
    aud: Vec<String>,
    /// Lifetime: `exp` = now + TTL (`90s`, `15m`, `2h`, `7d`, or seconds).
    #[arg(long, value_name = "DURATION", value_parser = values::duration, help_heading = "Claims")]
    ttl: i64,
    /// Not before: `nbf` = now + DURATION.
    #[arg(long, value_name = "DURATION", value_parser = values::duration, help_heading = "Claims")]
    nbf: Option<i64>,
    /// The token id (`jti`): `auto` for a random one.
    #[arg(long, value_name = "auto|ID", help_heading = "Claims")]
    jti: Option<String>,
    /// Roles, comma-separated (`roles`).
    #[arg(long, value_name = "A,B", value_parser = values::list, help_heading = "Claims")]
    roles: Option<List>,
    /// Scopes, space-separated (`scope`).
    #[arg(long, value_name = "\"X Y\"", help_heading = "Claims")]
    scope: Option<String>,
    /// The token's entry in a status list: `status.status_list` {idx, uri}.
    #[arg(long, value_name = "IDX,URI", value_parser = values::status_ref, help_heading = "Claims")]
    status: Option<(u64, String)>,
    /// Any claim: the value is JSON, or else a string; repeatable.
    #[arg(long, value_name = "NAME=JSON", value_parser = values::claim, help_heading = "Claims")]
    claim: Vec<(String, Value)>,

    /// Client addresses or CIDR ranges, comma-separated; repeatable.
    #[arg(long, value_name = "CIDR", value_parser = values::cidr_list, help_heading = "Constraints")]
    ip: Vec<List>,
    /// HTTP methods, comma-separated; repeatable.
    #[arg(long, value_name = "GET,HEAD", value_parser = values::list, help_heading = "Constraints")]
    methods: Vec<List>,
    /// A path pattern (`/v1/orders/**`); repeatable.
    #[arg(long, value_name = "PATTERN", value_parser = values::path_pattern, help_heading = "Constraints")]
    paths: Vec<String>,
    /// Host patterns, comma-separated (`*.example.com`); repeatable.
    #[arg(long, value_name = "HOST", value_parser = values::host_list, help_heading = "Constraints")]
    hosts: Vec<List>,
    /// A region; repeatable.
    #[arg(long, value_name = "R", help_heading = "Constraints")]
    region: Vec<String>,
    /// A time window `[DAYS] HH:MM-HH:MM [TZ]`, e.g. 'mon-fri 09:00-17:30 Europe/Berlin'; repeatable.
    #[arg(long, value_name = "WINDOW", value_parser = values::window, help_heading = "Constraints")]
    window: Vec<Value>,
    /// How often the token may be used (adds a random `jti` if none is given).
    #[arg(long, value_name = "N", help_heading = "Constraints")]
    max_uses: Option<u64>,
    /// MCP tools the agent may call (`tools/call`; `search_*` for a prefix), comma-separated; repeatable (SPEC §15).
    #[arg(long, value_name = "TOOL,TOOL", value_parser = values::list, help_heading = "Constraints")]
    mcp_tools: Vec<List>,
    /// MCP methods allowed beyond the session's and the tools' (`resources/read`), comma-separated; repeatable.
    #[arg(long, value_name = "METHOD", value_parser = values::list, help_heading = "Constraints")]
    mcp_methods: Vec<List>,
    /// An allowed value of a tool's argument, `TOOL.PATH=VALUE` (a string); repeat for several values.
    #[arg(long, value_name = "TOOL.PATH=VALUE", value_parser = values::mcp_arg, help_heading = "Constraints")]
    mcp_arg: Vec<(String, String, String)>,
    /// A custom constraint value; repeat a name for several values.
    #[arg(long, value_name = "NAME=VALUE", value_parser = values::name_value, help_heading = "Constraints")]
    constraint: Vec<(String, String)>,
    /// The name of the constraints claim (the filter's `claim_names.constraints`) [default: cnst].
    #[arg(long, value_name = "NAME", value_parser = values::claim_name, conflicts_with = "config", help_heading = "Constraints")]
    constraints_claim: Option<String>,
    /// A plugin configuration to mint for: its `claim_names.constraints` names the constraints claim.
    #[arg(long, value_name = "FILE", help_heading = "Constraints")]
    config: Option<PathBuf>,

    /// Bind the token to this holder key (PKCS#8 PEM, e.g. from `cjwt keygen`):
    /// `cnf.jkt`, so it is only accepted with a DPoP proof signed by that key.
    #[arg(long, value_name = "FILE", help_heading = "Sender constraints")]
    bind_key: Option<PathBuf>,
    /// Bind the token to this client certificate (PEM): `cnf["x5t#S256"]`, so it is
    /// only accepted over a TLS connection (or trusted XFCC) with that certificate.
    #[arg(long, value_name = "FILE", help_heading = "Sender constraints")]
    bind_cert: Option<PathBuf>,
}

/// Prints the signed token.
pub fn run(a: Args) -> Result<u8, String> {
    let key = load_key(&a.key, a.alg)?;
    let constraints_claim = match (&a.config, a.constraints_claim) {
        (Some(path), _) => load_config(path)?.constraints_claim().to_string(),
        (None, Some(name)) => name,
        (None, None) => DEFAULT_CONSTRAINTS_CLAIM.to_string(),
    };
    let now = now();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(a.iss));
    if let Some(sub) = a.sub {
        claims.insert("sub".into(), json!(sub));
    }
    match a.aud.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), json!(one));
        }
        many => {
            claims.insert("aud".into(), json!(many));
        }
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(a.ttl)));
    if let Some(nbf) = a.nbf {
        claims.insert("nbf".into(), json!(now.saturating_add(nbf)));
    }
    match a.jti.as_deref() {
        Some("auto") => {
            claims.insert("jti".into(), json!(random_hex(16)));
        }
        Some(j) => {
            claims.insert("jti".into(), json!(j));
        }
        None => {}
    }
    if let Some(roles) = a.roles {
        claims.insert("roles".into(), json!(roles.0));
    }
    if let Some(scope) = a.scope {
        claims.insert("scope".into(), json!(scope));
    }
    if let Some((idx, uri)) = a.status {
        claims.insert("status".into(), json!({"status_list": {"idx": idx, "uri": uri}}));
    }
    for (name, value) in a.claim {
        claims.insert(name, value);
    }
    if a.max_uses.is_some() && !claims.contains_key("jti") {
        claims.insert("jti".into(), json!(random_hex(16)));
    }
    let spec = ConstraintsSpec { custom: a.constraint, ..ConstraintsSpec::default() }
        .with("ip", values::flatten(a.ip))
        .with("methods", values::flatten(a.methods))
        .with("paths", a.paths)
        .with("hosts", values::flatten(a.hosts))
        .with("region", a.region)
        .with("window", a.window)
        .with("max_uses", a.max_uses)
        .with("mcp", mcp_claim(values::flatten(a.mcp_tools), values::flatten(a.mcp_methods), a.mcp_arg));
    if let Some(value) = spec.to_claim(claims.contains_key("jti"))? {
        claims.insert(constraints_claim, value);
    }
    let mut cnf = Map::new();
    if let Some(path) = &a.bind_key {
        let holder = load_key(path, None)?;
        let jkt =
            cjwt_core::mint::jkt(&holder).ok_or_else(|| format!("{}: no thumbprint for this key", path.display()))?;
        cnf.insert("jkt".into(), json!(jkt));
    }
    if let Some(path) = &a.bind_cert {
        cnf.insert("x5t#S256".into(), json!(certificate_x5t(path)?));
    }
    if !cnf.is_empty() {
        claims.insert("cnf".into(), Value::Object(cnf));
    }
    out!("{}", mint(&key, a.kid.as_deref(), &Value::Object(claims)));
    Ok(0)
}

/// The RFC 8705 `x5t#S256` of the first certificate in a PEM file: base64url
/// of the SHA-256 of its DER.
pub fn certificate_x5t(path: &Path) -> Result<String, String> {
    use base64::Engine;
    use sha2::Digest;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .ok_or_else(|| format!("{}: no PEM CERTIFICATE block", path.display()))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("{}: the certificate is not base64: {e}", path.display()))?;
    Ok(cjwt_core::encoding::b64::encode(&sha2::Sha256::digest(&der)))
}

/// Loads the private key for `alg`, or tries the asymmetric kinds in turn.
pub fn load_key(path: &Path, alg: Option<Algorithm>) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(alg) = alg {
        return SigningKey::from_pem(alg, &text);
    }
    [Algorithm::EdDSA, Algorithm::ES256, Algorithm::ES384, Algorithm::RS256]
        .into_iter()
        .find_map(|alg| SigningKey::from_pem(alg, &text).ok())
        .ok_or_else(|| {
            format!("{}: not a PKCS#8 private key (for an HMAC secret, pass --alg HS256|HS384|HS512)", path.display())
        })
}

/// The `mcp` constraint of `--mcp-tools`, `--mcp-methods` and `--mcp-arg` (none when no flag is given).
pub fn mcp_claim(tools: Vec<String>, methods: Vec<String>, args: Vec<(String, String, String)>) -> Option<Value> {
    if tools.is_empty() && methods.is_empty() && args.is_empty() {
        return None;
    }
    let mut mcp = Map::new();
    if !tools.is_empty() {
        mcp.insert("tools".into(), json!(tools));
    }
    if !methods.is_empty() {
        mcp.insert("methods".into(), json!(methods));
    }
    let mut by_tool = Map::new();
    for (tool, path, value) in args {
        let paths = by_tool.entry(tool).or_insert_with(|| json!({}));
        if let Some(values) = paths.as_object_mut().map(|p| p.entry(path).or_insert_with(|| json!([]))) {
            if let Some(list) = values.as_array_mut() {
                list.push(json!(value));
            }
        }
    }
    if !by_tool.is_empty() {
        mcp.insert("args".into(), Value::Object(by_tool));
    }
    Some(Value::Object(mcp))
}
