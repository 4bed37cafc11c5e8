//! `cjwt attenuate`: the holder of a DPoP-bound token (or of a chain's last
//! link) derives a narrower link for the next holder, offline (SPEC §16).
//! Nothing that widens is signed.

use crate::commands::mint::{load_key, mcp_claim};
use crate::commands::{load_config, now, random_hex};
use crate::values::{self, List};
use cjwt_core::chain::mint::{attenuate, LinkSpec};
use cjwt_core::encoding::b64;
use cjwt_core::mint::claims::{ConstraintsSpec, DEFAULT_CONSTRAINTS_CLAIM};
use serde_json::Value;
use std::path::PathBuf;

/// Arguments of `cjwt attenuate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The credential held: the root token, or `ROOT~LINK~…` as a previous `cjwt attenuate` printed it.
    #[arg(long, value_name = "PARENT")]
    token: String,
    /// The holder's private key (PKCS#8 PEM): the key the credential's last part binds (`cnf.jkt`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The next holder's key (PKCS#8 PEM): the new link binds its thumbprint (`cnf.jkt`).
    #[arg(long, value_name = "FILE")]
    bind_key: PathBuf,
    /// Lifetime: `exp` = now + TTL (`90s`, `5m`, `2h`), no later than the parent's [default: the parent's `exp`].
    #[arg(long, value_name = "DURATION", value_parser = values::duration)]
    ttl: Option<i64>,
    /// The link's `jti` [default: random].
    #[arg(long, value_name = "ID")]
    jti: Option<String>,

    /// Client addresses or CIDR ranges, comma-separated; repeatable.
    #[arg(long, value_name = "CIDR", value_parser = values::cidr_list, help_heading = "Constraints (only narrower)")]
    ip: Vec<List>,
    /// HTTP methods, comma-separated; repeatable.
    #[arg(long, value_name = "GET,HEAD", value_parser = values::list, help_heading = "Constraints (only narrower)")]
    methods: Vec<List>,
    /// A path pattern; repeatable.
    #[arg(long, value_name = "PATTERN", value_parser = values::path_pattern, help_heading = "Constraints (only narrower)")]
    paths: Vec<String>,
    /// Host patterns, comma-separated; repeatable.
    #[arg(long, value_name = "HOST", value_parser = values::host_list, help_heading = "Constraints (only narrower)")]
    hosts: Vec<List>,
    /// A region; repeatable.
    #[arg(long, value_name = "R", help_heading = "Constraints (only narrower)")]
    region: Vec<String>,
    /// A time window `[DAYS] HH:MM-HH:MM [TZ]`; repeatable.
    #[arg(long, value_name = "WINDOW", value_parser = values::window, help_heading = "Constraints (only narrower)")]
    window: Vec<Value>,
    /// How often the link may be used (counted for this link, and for every level above it).
    #[arg(long, value_name = "N", help_heading = "Constraints (only narrower)")]
    max_uses: Option<u64>,
    /// MCP tools the next holder may call, comma-separated; repeatable.
    #[arg(long, value_name = "TOOL,TOOL", value_parser = values::list, help_heading = "Constraints (only narrower)")]
    tools: Vec<List>,
    /// MCP methods beyond the session's and the tools', comma-separated; repeatable.
    #[arg(long, value_name = "METHOD", value_parser = values::list, help_heading = "Constraints (only narrower)")]
    mcp_methods: Vec<List>,
    /// An allowed value of a tool's argument, `TOOL.PATH=VALUE`; repeatable.
    #[arg(long, value_name = "TOOL.PATH=VALUE", value_parser = values::mcp_arg, help_heading = "Constraints (only narrower)")]
    mcp_arg: Vec<(String, String, String)>,
    /// A custom constraint value; repeat a name for several values.
    #[arg(long, value_name = "NAME=VALUE", value_parser = values::name_value, help_heading = "Constraints (only narrower)")]
    constraint: Vec<(String, String)>,
    /// The plugin configuration the chain is for: its constraints claim and custom constraints.
    #[arg(long, value_name = "FILE", help_heading = "Constraints (only narrower)")]
    config: Option<PathBuf>,
}

/// Prints the longer credential, `ROOT~LINK~…~NEW`.
pub fn run(a: Args) -> Result<u8, String> {
    let holder = load_key(&a.key, None)?;
    let next = load_key(&a.bind_key, None)?;
    let next_jkt = cjwt_core::mint::jkt(&next).ok_or("--bind-key: no thumbprint for this key")?;
    let config = a.config.as_deref().map(load_config).transpose()?;
    let claim = config.as_ref().map_or(DEFAULT_CONSTRAINTS_CLAIM.to_string(), |c| c.constraints_claim().to_string());
    let mut names: Vec<String> =
        config.as_ref().map_or_else(Vec::new, |c| c.custom_constraint_names().into_iter().map(str::to_owned).collect());
    names.extend(a.constraint.iter().map(|(n, _)| n.clone()));
    let spec = ConstraintsSpec { custom: a.constraint, ..ConstraintsSpec::default() }
        .with("ip", values::flatten(a.ip))
        .with("methods", values::flatten(a.methods))
        .with("paths", a.paths)
        .with("hosts", values::flatten(a.hosts))
        .with("region", a.region)
        .with("window", a.window)
        .with("max_uses", a.max_uses)
        .with("mcp", mcp_claim(values::flatten(a.tools), values::flatten(a.mcp_methods), a.mcp_arg));
    let constraints = spec.to_claim(true)?;
    let now = now();
    let exp = match a.ttl {
        Some(ttl) => now.saturating_add(ttl),
        None => parent_exp(&a.token).ok_or("the parent has no `exp`: give --ttl")?,
    };
    let link = LinkSpec { jti: a.jti.unwrap_or_else(|| random_hex(16)), iat: now, exp, constraints, next_jkt };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    out!("{}", attenuate(&holder, &a.token, &link, &claim, &names)?);
    Ok(0)
}

/// The `exp` of the credential's last part (not verified).
fn parent_exp(credential: &str) -> Option<i64> {
    let last = credential.trim().rsplit(cjwt_core::chain::SEPARATOR).next()?;
    let payload = last.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&b64::decode(payload.as_bytes())?).ok()?;
    claims.get("exp").and_then(Value::as_i64)
}
