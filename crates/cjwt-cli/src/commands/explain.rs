//! `cjwt explain`: one request taken through the filter's own request
//! lifecycle (`cjwt_core::lifecycle::request`) and the plan Envoy would execute.

use crate::commands::{load_config, now};
use crate::values;
use cjwt_core::config::{RegionSource, TokenSource};
use cjwt_core::engine::Engine;
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::lifecycle::request::{Env, KeyWait, RequestFlow, Step};
use cjwt_core::outcome::metrics::Counter;
use cjwt_core::outcome::plan::Act;
use cjwt_core::request::static_host::StaticHost;
use cjwt_core::revocation::status_list::verify_status_list;
use cjwt_core::token::jws;
use cjwt_core::usage::MemoryCounter;
use std::net::IpAddr;
use std::path::PathBuf;

/// Arguments of `cjwt explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The plugin configuration (JSON, or a serialized protobuf Struct).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The token, placed where the configuration's first token source reads it.
    /// A delegation credential `ROOT~LINK~…` (`cjwt attenuate`, SPEC §16): the
    /// root is placed so, the links go in the `cjwt-chain` header.
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// The request method.
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// The request path, with its query.
    #[arg(long, value_name = "PATH", default_value = "/")]
    path: String,
    /// The client (peer) address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    ip: IpAddr,
    /// The `:authority`.
    #[arg(long, value_name = "HOST", default_value = "localhost")]
    host: String,
    /// The region, placed where the configuration reads it (node metadata or a header).
    #[arg(long, value_name = "R")]
    region: Option<String>,
    /// A request header; repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = values::name_value)]
    header: Vec<(String, String)>,
    /// The clock (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME", value_parser = values::rfc3339)]
    at: Option<i64>,
    /// A Status List Token (as fetched) for one of the configured `status_lists`,
    /// chosen by its `sub`; verified as Envoy verifies it; repeatable.
    #[arg(long, value_name = "FILE")]
    status_list: Vec<PathBuf>,
    /// The `:scheme` (the origin a DPoP proof's `htu` names is `SCHEME://HOST`).
    #[arg(long, value_name = "SCHEME", default_value = "https")]
    scheme: String,
    /// A DPoP proof (`cjwt dpop`): sent as the `DPoP` header, and the token under
    /// `Authorization: DPoP` instead of the configuration's first source.
    #[arg(long, value_name = "PROOF")]
    dpop: Option<String>,
    /// The client certificate's SHA-256 as Envoy gives it (lowercase hex, e.g.
    /// `openssl x509 -noout -fingerprint -sha256`, colons allowed), for
    /// certificate-bound tokens.
    #[arg(long, value_name = "HEX")]
    cert_sha256: Option<String>,
    /// The calling workload's mesh identity (the URI SAN of its certificate,
    /// e.g. a SPIFFE ID), for Txn-Tokens bound to their caller (SPEC §14,
    /// `require.caller`): the peer's, and the trusted hop's XFCC `URI`.
    #[arg(long, value_name = "URI")]
    caller: Option<String>,
    /// An MCP request body (JSON-RPC) as sent with `--method POST`: decided as
    /// Envoy's MCP filter before cjwt passes it on (one JSON-RPC 2.0 object is
    /// parsed; a batch, or anything else, is not), SPEC §15.
    #[arg(long, value_name = "JSON", conflicts_with = "mcp_method")]
    mcp_body: Option<String>,
    /// An MCP method, instead of `--mcp-body` (`tools/call`, with `--mcp-tool`).
    #[arg(long, value_name = "METHOD")]
    mcp_method: Option<String>,
    /// The tool of `--mcp-method tools/call`.
    #[arg(long, value_name = "TOOL", requires = "mcp_method")]
    mcp_tool: Option<String>,
}

/// Prints `allow` (exit 0) or `refuse STATUS REASON` (exit 3 for 401, 4 for 403).
pub fn run(a: Args) -> Result<u8, String> {
    let config = load_config(&a.config)?;
    let (root, links) = cjwt_core::chain::mint::split(&a.token);
    let (token, links) = (root.to_string(), links.map(str::to_string));
    let mut path = a.path;
    // The credential is placed where the configuration's first source reads it.
    if let Some(TokenSource::Query(name)) = config.token_from().first() {
        let sep = if path.contains('?') { '&' } else { '?' };
        path = format!("{path}{sep}{name}={}", token);
    }
    let peer = match a.ip {
        IpAddr::V4(ip) => format!("{ip}:50000"),
        IpAddr::V6(ip) => format!("[{ip}]:50000"),
    };
    let mut host = StaticHost::new()
        .at(a.at.unwrap_or_else(now))
        .header(":method", &a.method)
        .header(":path", &path)
        .header(":authority", &a.host)
        .header(":scheme", &a.scheme)
        .peer(&peer);
    // The certificate as the peer's, and as the element a trusted hop appends
    // to `x-forwarded-client-cert` (read only where the configuration says so).
    let mut xfcc = Vec::new();
    if let Some(hex) = &a.cert_sha256 {
        let hex: String = hex.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
        host = host.property(&["connection", "sha256_peer_certificate_digest"], &hex);
        xfcc.push(format!("Hash={hex}"));
    }
    if let Some(uri) = &a.caller {
        host = host.property(&["connection", "uri_san_peer_certificate"], uri);
        xfcc.push(format!("URI={uri}"));
    }
    if !xfcc.is_empty() {
        host = host.header("x-forwarded-client-cert", &xfcc.join(";"));
    }
    let body = match (&a.mcp_body, &a.mcp_method) {
        (Some(body), _) => Some(body.clone()),
        (None, Some(method)) => {
            let rpc = match &a.mcp_tool {
                Some(tool) => {
                    serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": tool}})
                }
                None => serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method}),
            };
            Some(rpc.to_string())
        }
        (None, None) => None,
    };
    // The MCP filter parses only a POST's body, and only one JSON-RPC object.
    if let Some(body) = body.filter(|_| a.method == "POST") {
        if serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v.is_object()) {
            host = host
                .property(&cjwt_core::request::mcp::PROPERTY, &body)
                .property_bytes(&cjwt_core::request::mcp::IS_MCP_REQUEST, [1u8]);
        }
    }
    for (name, value) in &a.header {
        host = host.header(&name.to_ascii_lowercase(), value);
    }
    if let Some(region) = &a.region {
        match config.region() {
            Some(RegionSource::NodeMetadata(key)) => host = host.property(&["xds", "node", "metadata", key], region),
            Some(RegionSource::Header(h)) => host = host.header(h, region),
            Some(RegionSource::Static(_)) | None => {
                eprintln!("note: --region ignored: the configuration takes the region from {:?}", config.region())
            }
        }
    }
    // A Transaction Token (typ `txntoken+jwt`, SPEC §14) goes where a sidecar
    // reads it, the `Txn-Token` header, whatever the configuration's sources.
    let txn = cjwt_core::token::jws::parse_jws(&token)
        .is_ok_and(|t| cjwt_core::token::verify::is_txn_token(t.typ.as_deref()));
    match config.token_from().first() {
        _ if txn => {
            out!("note: a Txn-Token: sent in the txn-token header");
            host = host.header(cjwt_core::txn::HEADER, &token);
        }
        _ if a.dpop.is_some() => {
            host = host.header("authorization", &format!("DPoP {}", token));
            host = host.header("dpop", a.dpop.as_deref().unwrap_or_default());
        }
        Some(TokenSource::Header { name, prefix }) => host = host.header(name, &format!("{prefix}{}", token)),
        Some(TokenSource::Cookie(name)) => host = host.header("cookie", &format!("{name}={}", token)),
        Some(TokenSource::Query(_)) | None => {}
    }
    if let Some(links) = &links {
        out!("note: a delegation chain of {} link(s): sent in the cjwt-chain header", links.split('~').count());
        host = host.header(cjwt_core::chain::HEADER, links);
    }
    let at = a.at.unwrap_or_else(now);
    let mut store = Fetched::new(config.provider_count());
    for path in &a.status_list {
        let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let list = list_for(&config, &body).map_err(|e| format!("{}: {e}", path.display()))?;
        let verified = verify_status_list(&config, list, &store, &PureRust, &body, at)
            .map_err(|e| format!("{}: status list refused: {e}", path.display()))?;
        store.set_status_list(list, verified).map_err(|e| format!("{}: status list refused: {e}", path.display()))?;
    }
    let mut engine = Engine::new(config);
    let replay = cjwt_core::sender::replay::ProcessReplay::new();
    let mut counter = MemoryCounter::default();
    let mut flow = RequestFlow::new();
    // The lifecycle Envoy runs, with no key fetch to wait for and no store to ask.
    let mut replay = &replay;
    let env = Env { host: &host, keys: &store, crypto: &PureRust, counter: &mut counter, replay: &mut replay };
    let mut step = flow.start(&mut engine, env, 0);
    if let Step::KeysMissing { .. } = step {
        let env = Env { host: &host, keys: &store, crypto: &PureRust, counter: &mut counter, replay: &mut replay };
        step = flow.on_key_wait(&mut engine, env, KeyWait::DoNotWait, 0);
    }
    let plan = match step {
        Step::Act(plan) => plan,
        // What Envoy does next: ask the store; 401 `dpop_replay` when the proof
        // was recorded before, 403 `max_uses` when used up, 503
        // `usage_unavailable` when it does not answer in time.
        // Exchanged issuing (SPEC §14): ask the Txn-Token Service first.
        Step::AwaitStore(call) if call.content_type == cjwt_core::txn::exchange::FORM => {
            out!(
                "allow if the Txn-Token Service answers with a valid Txn-Token for this subject (else refuse 503 txn_service_unavailable or txn_exchange_invalid)"
            );
            out!("exchange call: POST {} to cluster {:?}", call.path, call.cluster);
            return Ok(0);
        }
        Step::AwaitStore(call) => {
            match (call.records_proof, call.counts_use) {
                (true, true) => out!(
                    "allow if the usage store records this DPoP proof and counts this use (else refuse 401 dpop_replay, 403 max_uses, or 503 usage_unavailable)"
                ),
                (true, false) => out!(
                    "allow if the usage store records this DPoP proof as new (else refuse 401 dpop_replay, or 503 usage_unavailable)"
                ),
                (false, _) => out!(
                    "allow if the usage store counts this use (else refuse 403 max_uses, or 503 usage_unavailable)"
                ),
            }
            out!("store call: POST {} to cluster {:?}", call.path, call.cluster);
            return Ok(0);
        }
        Step::AwaitKeys | Step::KeysMissing { .. } | Step::Nothing => {
            return Err("internal: the flow did not end".into())
        }
    };
    let field = |name: &str| plan.audit.iter().find(|(f, _)| *f == name).map(|(_, v)| v.as_str());
    let code = field("reason").unwrap_or("?");
    let code = match plan.act {
        Act::Refuse(refusal) => {
            out!("refuse {} {code}", refusal.status);
            return Ok(if refusal.status == 401 { 3 } else { 4 });
        }
        Act::Forward(ops) if code == "allowed" => {
            out!("allow");
            if let Some(iss) = field("iss") {
                let provider = engine.config().provider_for_issuer(iss).map_or("?", |p| p.name.as_str());
                out!("issuer: {iss}  (provider {provider})");
            }
            ops
        }
        // `mode: dry_run`: Envoy forwards the request and only counts the refusal.
        Act::Forward(ops) => {
            let status = plan.counters.iter().find_map(|c| match c {
                Counter::DryRunDenied(reason) => Some(reason.status()),
                _ => None,
            });
            out!("allow (dry_run: would refuse {} {code})", status.unwrap_or(0));
            ops
        }
    };
    // The request as it goes upstream: Envoy applies these operations in order.
    for (name, value) in code {
        match &value {
            Some(v) => out!("forward: set {name}: {v}"),
            None => out!("forward: remove {name}"),
        }
        // The Txn-Token a gateway issues: its claims, as the next hop reads them.
        if let (cjwt_core::txn::HEADER, Some(v)) = (name.as_str(), value) {
            if let Ok(t) = jws::parse(&v) {
                out!("txn-token claims: {}", serde_json::Value::Object(t.claims));
            }
        }
    }
    Ok(0)
}

/// The configured status list a Status List Token is for: the one whose `uri`
/// is its `sub` (read unverified; [`verify_status_list`] checks it).
fn list_for(config: &cjwt_core::config::Config, body: &[u8]) -> Result<usize, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8")?.trim();
    let token = jws::parse(text).map_err(|_| "not a compact JWS")?;
    let sub = token.claims.get("sub").and_then(serde_json::Value::as_str).ok_or("the list has no `sub`")?;
    config.status_list_index(sub).ok_or_else(|| format!("no configured status list has uri {sub:?}"))
}
