//! `cjwt`: keys, minting, inspecting and explaining decisions — on the same core
//! the Envoy filter runs, so what it says is what the filter does.
//!
//! Exit codes: 0 success / allowed; 1 error (bad arguments, files, configuration);
//! 3 refused with 401; 4 refused with 403.

use cjwt_core::config::{Config, RegionSource};
use cjwt_core::constraints::Constraints;
use cjwt_core::encoding::b64;
use cjwt_core::engine::{Decision, Engine};
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::mint::{mint, SigningKey};
use cjwt_core::request::host::{Host, MemoryCounter};
use cjwt_core::token::verify::InlineOnly;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "usage:
  cjwt keygen --alg EdDSA|ES256|ES384|RS256|RS384|RS512|PS256|PS384|PS512|HS256|HS384|HS512 [--kid K] --out DIR
  cjwt mint --key FILE [--alg ALG] [--kid K] --iss ISS [--sub SUB] [--aud AUD]... --ttl 15m
            [--jti auto|ID] [--roles a,b] [--scope \"x y\"] [--claim name=JSON]...
            [--ip CIDR]... [--methods GET,HEAD] [--paths PATTERN]... [--hosts HOST]... [--region R]...
            [--window 'mon-fri 09:00-17:30 Europe/Berlin']... [--max-uses N] [--constraint name=value]...
  cjwt inspect TOKEN
  cjwt explain --config plugin.json --token TOKEN [--method GET] [--path /] [--ip 127.0.0.1] [--host H]
               [--region R] [--header name=value]... [--at 2026-11-30T10:00:00Z]
  cjwt check-config plugin.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("keygen") => keygen(&args[1..]),
        Some("mint") => mint_cmd(&args[1..]),
        Some("inspect") => inspect(&args[1..]),
        Some("explain") => explain(&args[1..]),
        Some("check-config") => check_config(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(0)
        }
        _ => Err(format!("unknown or missing subcommand\n{USAGE}")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cjwt: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--flag value` pairs (repeatable).
struct Args {
    flags: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse(raw: &[String], known: &[&str]) -> Result<Args, String> {
        let mut flags: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if !known.contains(&name) {
                    return Err(format!("unknown option --{name}"));
                }
                let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                flags.entry(name.to_string()).or_default().push(value.clone());
            } else {
                return Err(format!("unexpected argument {a:?}"));
            }
        }
        Ok(Args { flags })
    }
    fn one(&self, name: &str) -> Result<Option<&str>, String> {
        match self.flags.get(name).map(Vec::as_slice) {
            None => Ok(None),
            Some([v]) => Ok(Some(v.as_str())),
            Some(_) => Err(format!("--{name} given more than once")),
        }
    }
    fn required(&self, name: &str) -> Result<&str, String> {
        self.one(name)?.ok_or_else(|| format!("--{name} is required"))
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.flags.get(name).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default()
    }
}

fn parse_alg(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(name).ok_or_else(|| format!("unsupported algorithm {name:?}"))
}

fn keygen(raw: &[String]) -> Result<u8, String> {
    let a = Args::parse(raw, &["alg", "kid", "out"])?;
    let alg = parse_alg(a.required("alg")?)?;
    let kid =
        a.one("kid")?.map(str::to_owned).unwrap_or_else(|| format!("{}-{}", alg.name().to_lowercase(), &hex_id()[..8]));
    let dir = std::path::PathBuf::from(a.required("out")?);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = SigningKey::generate(alg)?;
    let private = dir.join(format!("{kid}.pem"));
    let public = dir.join(format!("{kid}.jwks.json"));
    let jwks =
        serde_json::to_string_pretty(&json!({"keys": [key.public_jwk(Some(&kid))]})).map_err(|e| e.to_string())?;
    write_private(&private, &key.to_pem()?)?;
    if alg.is_hmac() {
        // The filter needs the secret itself: the "public" file is secret too.
        write_private(&public, &format!("{jwks}\n"))?;
    } else {
        std::fs::write(&public, format!("{jwks}\n")).map_err(|e| format!("{}: {e}", public.display()))?;
    }
    println!("{}\n{}", private.display(), public.display());
    Ok(0)
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), String> {
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

fn hex_id() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `90s`, `15m`, `2h`, `7d`, or plain seconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration {s:?} (use s, m, h or d)")),
    };
    if n <= 0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(n * mult)
}

/// `mon-fri 09:00-17:30 Europe/Berlin`, `sat,sun 10:00-14:00`, `22:00-06:00 +01:00`.
fn parse_window(s: &str) -> Result<Value, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut w = Map::new();
    let mut parts = s.split_whitespace().peekable();
    if let Some(first) = parts.peek() {
        if first.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            let mut days = Vec::new();
            for item in first.split(',') {
                match item.split_once('-') {
                    Some((a, b)) => {
                        let i = DAYS.iter().position(|d| *d == a).ok_or_else(|| format!("unknown day {a:?}"))?;
                        let j = DAYS.iter().position(|d| *d == b).ok_or_else(|| format!("unknown day {b:?}"))?;
                        let mut k = i;
                        loop {
                            days.push(DAYS[k]);
                            if k == j {
                                break;
                            }
                            k = (k + 1) % 7;
                        }
                    }
                    None => {
                        days.push(DAYS.iter().find(|d| **d == item).ok_or_else(|| format!("unknown day {item:?}"))?)
                    }
                }
            }
            w.insert("days".into(), json!(days));
            parts.next();
        }
    }
    let range = parts.next().ok_or_else(|| format!("window {s:?} needs HH:MM-HH:MM"))?;
    let (start, end) = range.split_once('-').ok_or_else(|| format!("window {s:?} needs HH:MM-HH:MM"))?;
    w.insert("start".into(), json!(start));
    w.insert("end".into(), json!(end));
    if let Some(tz) = parts.next() {
        w.insert("tz".into(), json!(tz));
    }
    if parts.next().is_some() {
        return Err(format!("window {s:?} has extra words"));
    }
    Ok(Value::Object(w))
}

fn split_list(values: Vec<&str>) -> Vec<String> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

fn load_key(path: &str, alg: Option<&str>) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    if let Some(alg) = alg {
        return SigningKey::from_pem(parse_alg(alg)?, &text);
    }
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::ES384, Algorithm::RS256] {
        if let Ok(k) = SigningKey::from_pem(alg, &text) {
            return Ok(k);
        }
    }
    Err(format!("{path}: not a PKCS#8 private key (for an HMAC secret, pass --alg HS256|HS384|HS512)"))
}

fn mint_cmd(raw: &[String]) -> Result<u8, String> {
    let a = Args::parse(
        raw,
        &[
            "key",
            "alg",
            "kid",
            "iss",
            "sub",
            "aud",
            "ttl",
            "jti",
            "roles",
            "scope",
            "claim",
            "ip",
            "methods",
            "paths",
            "hosts",
            "region",
            "window",
            "max-uses",
            "constraint",
            "nbf",
        ],
    )?;
    let key = load_key(a.required("key")?, a.one("alg")?)?;
    let now = now();
    let ttl = parse_duration(a.required("ttl")?)?;
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(a.required("iss")?));
    if let Some(sub) = a.one("sub")? {
        claims.insert("sub".into(), json!(sub));
    }
    match a.all("aud").as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), json!(one));
        }
        many => {
            claims.insert("aud".into(), json!(many));
        }
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    if let Some(nbf) = a.one("nbf")? {
        claims.insert("nbf".into(), json!(now + parse_duration(nbf)?));
    }
    match a.one("jti")? {
        Some("auto") => {
            claims.insert("jti".into(), json!(hex_id()));
        }
        Some(j) => {
            claims.insert("jti".into(), json!(j));
        }
        None => {}
    }
    if let Some(roles) = a.one("roles")? {
        claims.insert("roles".into(), json!(split_list(vec![roles])));
    }
    if let Some(scope) = a.one("scope")? {
        claims.insert("scope".into(), json!(scope));
    }
    for c in a.all("claim") {
        let (name, value) = c.split_once('=').ok_or_else(|| format!("--claim {c:?} is not name=JSON"))?;
        let value: Value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        claims.insert(name.into(), value);
    }
    let mut cnst = Map::new();
    let lists = [("ip", "ip"), ("methods", "methods"), ("paths", "paths"), ("hosts", "hosts"), ("region", "region")];
    for (flag, key) in lists {
        let values = a.all(flag);
        if !values.is_empty() {
            let items = if matches!(flag, "methods" | "hosts" | "ip") {
                split_list(values)
            } else {
                values.iter().map(|v| v.to_string()).collect()
            };
            cnst.insert(key.into(), json!(items));
        }
    }
    let windows = a.all("window").into_iter().map(parse_window).collect::<Result<Vec<_>, _>>()?;
    if !windows.is_empty() {
        cnst.insert("window".into(), Value::Array(windows));
    }
    if let Some(n) = a.one("max-uses")? {
        let n: u64 = n.parse().map_err(|_| format!("--max-uses {n:?} is not a positive integer"))?;
        cnst.insert("max_uses".into(), json!(n));
        if !claims.contains_key("jti") {
            claims.insert("jti".into(), json!(hex_id()));
        }
    }
    let mut custom_names = Vec::new();
    for c in a.all("constraint") {
        let (name, value) = c.split_once('=').ok_or_else(|| format!("--constraint {c:?} is not name=value"))?;
        custom_names.push(name.to_string());
        let entry = cnst.entry(name.to_string()).or_insert_with(|| json!([]));
        if let Value::Array(items) = entry {
            items.push(json!(value));
        } else {
            return Err(format!("--constraint {name:?} clashes with a built-in constraint"));
        }
    }
    if !cnst.is_empty() {
        let value = Value::Object(cnst);
        // Refuse what the filter would refuse, so nobody mints a token that can never work.
        let names: Vec<&str> = custom_names.iter().map(String::as_str).collect();
        let parsed = Constraints::parse(&value, &names, claims.contains_key("jti"))
            .map_err(|e| format!("constraint refused: {e}"))?;
        if let Some(unknown) = parsed.unknown {
            return Err(format!("constraint refused: unknown constraint {unknown:?}"));
        }
        claims.insert("cnst".into(), value);
    }
    println!("{}", mint(&key, a.one("kid")?, &Value::Object(claims)));
    Ok(0)
}

fn utc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "out of range".into())
}

fn inspect(raw: &[String]) -> Result<u8, String> {
    let token = raw.first().ok_or("inspect needs a TOKEN")?;
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(_s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a compact JWS (three dot-separated parts)".into());
    };
    let decode = |seg: &str, what: &str| -> Result<Value, String> {
        let bytes = b64::decode(seg.as_bytes()).ok_or_else(|| format!("{what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{what} is not JSON: {e}"))
    };
    let header = decode(h, "header")?;
    let payload = decode(p, "payload")?;
    println!("header (not verified):\n{}", serde_json::to_string_pretty(&header).map_err(|e| e.to_string())?);
    println!("claims (not verified):\n{}", serde_json::to_string_pretty(&payload).map_err(|e| e.to_string())?);
    for name in ["iat", "nbf", "exp"] {
        if let Some(ts) = payload.get(name).and_then(Value::as_f64) {
            println!("{name}: {}", utc(ts as i64));
        }
    }
    Ok(0)
}

/// The request `explain` evaluates.
struct CliHost {
    headers: Vec<(String, Vec<u8>)>,
    properties: HashMap<Vec<String>, Vec<u8>>,
    now: i64,
}

impl Host for CliHost {
    fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.iter().map(|s| s.to_string()).collect::<Vec<_>>()).cloned()
    }
    fn now(&self) -> i64 {
        self.now
    }
}

fn load_config(path: &str) -> Result<Config, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    Config::from_plugin_bytes(&bytes).map_err(|e| format!("{path}: configuration refused: {e}"))
}

fn explain(raw: &[String]) -> Result<u8, String> {
    let a = Args::parse(raw, &["config", "token", "method", "path", "ip", "host", "region", "header", "at"])?;
    let config = load_config(a.required("config")?)?;
    let at = match a.one("at")? {
        None => now(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t).map_err(|e| format!("--at {t:?}: {e}"))?.timestamp(),
    };
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), a.one("method")?.unwrap_or("GET").into()),
        (":path".into(), a.one("path")?.unwrap_or("/").into()),
        (":authority".into(), a.one("host")?.unwrap_or("localhost").into()),
    ];
    for h in a.all("header") {
        let (n, v) = h.split_once('=').ok_or_else(|| format!("--header {h:?} is not name=value"))?;
        headers.push((n.to_ascii_lowercase(), v.as_bytes().to_vec()));
    }
    let token = a.required("token")?;
    let mut properties = HashMap::new();
    let ip = a.one("ip")?.unwrap_or("127.0.0.1");
    let peer = if ip.contains(':') { format!("[{ip}]:50000") } else { format!("{ip}:50000") };
    properties.insert(vec!["source".to_string(), "address".to_string()], peer.into_bytes());
    if let Some(region) = a.one("region")? {
        match &config.region {
            Some(RegionSource::NodeMetadata(key)) => {
                properties.insert(
                    vec!["xds".into(), "node".into(), "metadata".into(), key.clone()],
                    region.as_bytes().to_vec(),
                );
            }
            Some(RegionSource::Header(h)) => headers.push((h.clone(), region.as_bytes().to_vec())),
            Some(RegionSource::Static(_)) | None => {
                eprintln!("note: --region ignored: the configuration takes the region from {:?}", config.region)
            }
        }
    }
    // The credential is placed where the configuration's first source reads it.
    match config.token_from.first() {
        Some(cjwt_core::config::TokenSource::Header { name, prefix }) => {
            headers.push((name.clone(), format!("{prefix}{token}").into_bytes()))
        }
        Some(cjwt_core::config::TokenSource::Cookie(name)) => {
            headers.push(("cookie".into(), format!("{name}={token}").into_bytes()))
        }
        Some(cjwt_core::config::TokenSource::Query(name)) => {
            if let Some((_, path)) = headers.iter_mut().find(|(n, _)| n == ":path") {
                let sep = if path.contains(&b'?') { "&" } else { "?" };
                path.extend_from_slice(format!("{sep}{name}={token}").as_bytes());
            }
        }
        None => {}
    }
    let host = CliHost { headers, properties, now: at };
    let mut engine = Engine::new(config);
    match engine.decide(&host, &InlineOnly, &PureRust, &mut MemoryCounter::default()).decision {
        Decision::Allow { token, .. } => {
            println!("allow");
            if let Some(t) = token {
                println!(
                    "issuer: {}  (provider {})",
                    t.issuer(),
                    engine.config.providers.get(t.provider).map(|p| p.name.as_str()).unwrap_or("?")
                );
            }
            Ok(0)
        }
        Decision::Deny(d) => {
            println!("refuse {} {}", d.reason.status(), d.reason.code());
            Ok(if d.reason.status() == 401 { 3 } else { 4 })
        }
        // `mode: dry_run`: Envoy forwards the request and only counts the refusal.
        Decision::DryRunDeny(d) => {
            println!("allow (dry_run: would refuse {} {})", d.reason.status(), d.reason.code());
            Ok(0)
        }
    }
}

fn check_config(raw: &[String]) -> Result<u8, String> {
    let path = raw.first().ok_or("check-config needs a file")?;
    let config = load_config(path)?;
    println!("ok: {} provider(s), {} rule(s), mode {:?}", config.providers.len(), config.rules.len(), config.mode);
    Ok(0)
}
