//! The `mcp` constraint (SPEC §15): what an agent token may do over the Model
//! Context Protocol, decided on the parse of Envoy's MCP filter
//! ([`crate::request::mcp`]).
//!
//! ```json
//! "mcp": {"tools": ["get_order", "search_*"], "methods": ["resources/read"],
//!         "args": {"get_order": {"customer_id": ["42", "43"]}}}
//! ```
//!
//! In order, the first failure deciding:
//! 1. no parse of one JSON-RPC 2.0 message (filter missing or after cjwt, a batch,
//!    not JSON-RPC, a GET or DELETE): `mcp_not_parsed`;
//! 2. the method (exact, case-sensitive) is none of: the session's `initialize`
//!    and `ping`, a `notifications/…`, `tools/list` and `tools/call` when `tools`
//!    is given, and the names in `methods`: `mcp_method`;
//! 3. a `tools/call` whose `params.name` matches none of `tools` (an exact name,
//!    or a non-empty prefix ending in one `*`): `mcp_tool`;
//! 4. for each `args` entry whose key matches the tool the same way: each
//!    argument path (dotted, below `params.arguments`) is present and equals one
//!    of its values (strings, numbers, booleans; no type conversion): `mcp_argument`.
//!
//! Unknown keys inside `mcp` make the token `malformed_constraint`: the object is
//! must-understand as the claim is.

use crate::reason::Reason;
use crate::request::mcp::TOOLS_CALL;
use crate::request::view::RequestView;
use serde_json::{Map, Value};

/// The methods every token with `mcp` allows: the session's lifecycle, which
/// calls no tool.
pub const SESSION_METHODS: [&str; 2] = ["initialize", "ping"];
/// The prefix of JSON-RPC notifications (no answer, no tool), always allowed.
pub const NOTIFICATIONS: &str = "notifications/";

/// A compiled `mcp` value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mcp {
    /// Methods beyond the session's and those `tools` implies.
    methods: Vec<String>,
    /// `Some` when `tools` is given (then `tools/list` and `tools/call` are allowed).
    tools: Option<Vec<ToolPattern>>,
    /// (tool pattern, [(argument path, allowed values)]).
    args: Vec<(ToolPattern, ArgumentValues)>,
}

/// (argument path, allowed values) of one `args` entry.
type ArgumentValues = Vec<(String, Vec<Value>)>;

/// A tool name, or a prefix (`search_*`: every name that starts with `search_`).
#[derive(Clone, Debug, PartialEq)]
pub enum ToolPattern {
    /// Exactly this name.
    Exact(String),
    /// Every name starting with this (non-empty) prefix.
    Prefix(String),
}

impl ToolPattern {
    fn parse(s: &str) -> Result<ToolPattern, String> {
        match s.strip_suffix('*') {
            Some(prefix) if !prefix.is_empty() && !prefix.contains('*') => Ok(ToolPattern::Prefix(prefix.to_owned())),
            None if !s.is_empty() && !s.contains('*') => Ok(ToolPattern::Exact(s.to_owned())),
            _ => Err("mcp: a tool is a name, or a non-empty prefix ending in one `*`".into()),
        }
    }

    /// Whether `tool` is this name, or starts with this prefix (bytes, exactly).
    pub fn matches(&self, tool: &str) -> bool {
        match self {
            ToolPattern::Exact(name) => tool == name,
            ToolPattern::Prefix(prefix) => tool.starts_with(prefix.as_str()),
        }
    }

    fn text(&self) -> &str {
        match self {
            ToolPattern::Exact(s) | ToolPattern::Prefix(s) => s,
        }
    }

    /// True when every tool name this pattern matches, `parent` matches too.
    pub fn within(&self, parent: &ToolPattern) -> bool {
        match (self, parent) {
            (ToolPattern::Exact(c), ToolPattern::Exact(p)) => c == p,
            (ToolPattern::Exact(c) | ToolPattern::Prefix(c), ToolPattern::Prefix(p)) => c.starts_with(p.as_str()),
            (ToolPattern::Prefix(_), ToolPattern::Exact(_)) => false,
        }
    }
}

/// Compiles the `mcp` value.
pub fn parse(value: &Value) -> Result<Mcp, String> {
    let obj = value.as_object().ok_or("mcp: must be an object")?;
    let mut mcp = Mcp::default();
    for (key, v) in obj {
        match key.as_str() {
            "methods" => {
                mcp.methods = super::strings("mcp.methods", v)?.into_iter().map(str::to_owned).collect();
                if mcp.methods.iter().any(String::is_empty) {
                    return Err("mcp.methods: an empty method".into());
                }
            }
            "tools" => {
                let tools = super::strings("mcp.tools", v)?;
                mcp.tools = Some(tools.into_iter().map(ToolPattern::parse).collect::<Result<_, _>>()?);
            }
            "args" => mcp.args = parse_args(v)?,
            _ => return Err("mcp: an unknown key".into()),
        }
    }
    Ok(mcp)
}

/// Whether `child` allows no MCP request `parent` refuses ([`Mcp::within`]).
/// A value that does not parse is not within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    match (parse(parent), parse(child)) {
        (Ok(parent), Ok(child)) => child.within(&parent),
        _ => false,
    }
}

fn parse_args(v: &Value) -> Result<Vec<(ToolPattern, ArgumentValues)>, String> {
    let tools = v.as_object().ok_or("mcp.args: must be an object of tools")?;
    tools
        .iter()
        .map(|(tool, paths)| {
            let paths: &Map<String, Value> = paths.as_object().ok_or("mcp.args: each tool maps argument paths")?;
            let paths = paths
                .iter()
                .map(|(path, allowed)| {
                    if path.is_empty() || path.split('.').any(str::is_empty) {
                        return Err("mcp.args: an empty argument path segment".to_string());
                    }
                    Ok((path.clone(), scalars(allowed)?))
                })
                .collect::<Result<_, _>>()?;
            Ok((ToolPattern::parse(tool)?, paths))
        })
        .collect()
}

/// A list of JSON scalars, or a single one as a one-element list.
fn scalars(v: &Value) -> Result<Vec<Value>, String> {
    let items = match v {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    if items.iter().all(|i| matches!(i, Value::String(_) | Value::Number(_) | Value::Bool(_))) {
        Ok(items)
    } else {
        Err("mcp.args: values are strings, numbers or booleans".into())
    }
}

/// Whether a value sent equals an allowed one: the same JSON type and value
/// (numbers by value: the MCP filter passes every number as a double).
fn same(sent: &Value, allowed: &Value) -> bool {
    match (sent, allowed) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().is_some() && a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

impl Mcp {
    /// Whether the JSON-RPC `method` is allowed (step 2).
    pub fn allows_method(&self, method: &str) -> bool {
        SESSION_METHODS.contains(&method)
            || (method.starts_with(NOTIFICATIONS) && method.len() > NOTIFICATIONS.len())
            || (self.tools.is_some() && (method == TOOLS_CALL || method == "tools/list"))
            || self.methods.iter().any(|m| m == method)
    }

    /// True when this value allows no MCP request `parent` refuses (SPEC §16):
    /// each of its `methods` is one `parent` allows; its `tools` (if any) lie
    /// inside `parent`'s `tools` (which must be given); and every `args` entry
    /// of `parent` is restated, for the same tool pattern, with every argument
    /// path and a subset of its values (more entries or paths may be added).
    pub fn within(&self, parent: &Mcp) -> bool {
        let methods = self.methods.iter().all(|m| parent.allows_method(m));
        let tools = match (&self.tools, &parent.tools) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(child), Some(parent)) => child.iter().all(|c| parent.iter().any(|p| c.within(p))),
        };
        let args = parent.args.iter().all(|(tool, paths)| {
            self.args.iter().any(|(t, mine)| {
                t == tool
                    && paths.iter().all(|(path, allowed)| {
                        mine.iter()
                            .any(|(p, values)| p == path && values.iter().all(|v| allowed.iter().any(|a| same(v, a))))
                    })
            })
        });
        methods && tools && args
    }
}

/// Holds when the MCP request is one the token allows (the steps above).
pub fn check(mcp: &Mcp, view: &RequestView<'_>) -> Result<(), Reason> {
    let request = view.mcp().ok_or(Reason::McpNotParsed)?;
    if !mcp.allows_method(&request.method) {
        return Err(Reason::McpMethod);
    }
    if !request.is_tool_call() {
        return Ok(());
    }
    let tool = request.tool.as_deref().ok_or(Reason::McpTool)?;
    if !mcp.tools.iter().flatten().any(|t| t.matches(tool)) {
        return Err(Reason::McpTool);
    }
    for (_, paths) in mcp.args.iter().filter(|(t, _)| t.matches(tool)) {
        for (path, allowed) in paths {
            let sent = request.argument(path).ok_or(Reason::McpArgument)?;
            if !allowed.iter().any(|a| same(sent, a)) {
                return Err(Reason::McpArgument);
            }
        }
    }
    Ok(())
}

impl super::Footprint for Mcp {
    fn heap_bytes(&self) -> usize {
        let strings = |v: &Vec<String>| super::Footprint::heap_bytes(v);
        let tools = self.tools.as_ref().map_or(0, |t| {
            t.iter().fold(super::vec_bytes(t), |s, p| s.saturating_add(p.text().len()).saturating_add(16))
        });
        let args = self.args.iter().fold(super::vec_bytes(&self.args), |s, (t, paths)| {
            paths.iter().fold(s.saturating_add(t.text().len()).saturating_add(super::vec_bytes(paths)), |s, (p, vs)| {
                vs.iter().fold(s.saturating_add(p.capacity()).saturating_add(super::vec_bytes(vs)), |s, v| {
                    s.saturating_add(v.as_str().map_or(0, str::len)).saturating_add(16)
                })
            })
        });
        strings(&self.methods).saturating_add(tools).saturating_add(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::mcp::{IS_MCP_REQUEST, PROPERTY};
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    fn host(parse: Option<Value>) -> TestHost {
        let host = TestHost::new("POST", "/mcp");
        match parse {
            Some(p) => host.property(&PROPERTY, &p.to_string()).property(&IS_MCP_REQUEST, "\u{1}"),
            None => host,
        }
    }

    fn call(tool: &str, arguments: Value) -> Option<Value> {
        Some(
            json!({"jsonrpc": "2.0", "id": 1.0, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}),
        )
    }

    fn method(m: &str) -> Option<Value> {
        Some(json!({"jsonrpc": "2.0", "id": 1.0, "method": m}))
    }

    #[test]
    fn the_table() {
        let agent = json!({"tools": ["get_order", "search_orders"], "args": {"get_order": {"customer_id": ["42"]}}});
        let prefixed = json!({"tools": ["orders.*"], "args": {"orders.*": {"tenant": "acme"}}});
        let typed = json!({"tools": ["t"], "args": {"t": {"n": [42], "b": true, "deep.id": "x"}}});
        // (constraint, the MCP filter's parse or None, want)
        let table: &[(&Value, Option<Value>, Result<(), Reason>)] = &[
            (&agent, call("get_order", json!({"customer_id": "42"})), Ok(())),
            (&agent, call("search_orders", json!({})), Ok(())),
            (&agent, call("delete_order", json!({})), Err(Reason::McpTool)),
            (&agent, call("get_order", json!({"customer_id": "43"})), Err(Reason::McpArgument)),
            (&agent, call("get_order", json!({"customer_id": 42})), Err(Reason::McpArgument)),
            (&agent, call("get_order", json!({})), Err(Reason::McpArgument)),
            (&agent, call("GET_ORDER", json!({"customer_id": "42"})), Err(Reason::McpTool)),
            (&agent, call("get_order ", json!({"customer_id": "42"})), Err(Reason::McpTool)),
            (&agent, call("get_order\u{0}", json!({"customer_id": "42"})), Err(Reason::McpTool)),
            (&agent, Some(json!({"jsonrpc": "2.0", "method": "tools/call", "params": {}})), Err(Reason::McpTool)),
            (
                &agent,
                Some(json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": 7}})),
                Err(Reason::McpTool),
            ),
            (&agent, method("initialize"), Ok(())),
            (&agent, method("ping"), Ok(())),
            (&agent, method("notifications/initialized"), Ok(())),
            (&agent, method("notifications/"), Err(Reason::McpMethod)),
            (&agent, method("tools/list"), Ok(())),
            (&agent, method("Tools/Call"), Err(Reason::McpMethod)),
            (&agent, method("tools/call "), Err(Reason::McpMethod)),
            (&agent, method("resources/read"), Err(Reason::McpMethod)),
            (&agent, method("__jsonrpc_response"), Err(Reason::McpMethod)),
            (&agent, None, Err(Reason::McpNotParsed)),
            (&agent, Some(json!([{"jsonrpc": "2.0", "method": "tools/call"}])), Err(Reason::McpNotParsed)),
            (&agent, Some(json!({"jsonrpc": "1.0", "method": "tools/list"})), Err(Reason::McpNotParsed)),
            (&json!({"methods": ["resources/read"]}), method("resources/read"), Ok(())),
            (&json!({"methods": ["resources/read"]}), method("tools/list"), Err(Reason::McpMethod)),
            (&json!({"methods": ["tools/call"]}), call("get_order", json!({})), Err(Reason::McpTool)),
            (&json!({}), method("initialize"), Ok(())),
            (&json!({"tools": []}), call("get_order", json!({})), Err(Reason::McpTool)),
            (&json!({"tools": []}), method("tools/list"), Ok(())),
            (&prefixed, call("orders.get", json!({"tenant": "acme"})), Ok(())),
            (&prefixed, call("orders.", json!({"tenant": "acme"})), Ok(())),
            (&prefixed, call("orders_get", json!({"tenant": "acme"})), Err(Reason::McpTool)),
            (&prefixed, call("orders.get", json!({"tenant": "evil"})), Err(Reason::McpArgument)),
            (&typed, call("t", json!({"n": 42.0, "b": true, "deep": {"id": "x"}})), Ok(())),
            (&typed, call("t", json!({"n": "42", "b": true, "deep": {"id": "x"}})), Err(Reason::McpArgument)),
            (&typed, call("t", json!({"n": 42, "b": "true", "deep": {"id": "x"}})), Err(Reason::McpArgument)),
            (&typed, call("t", json!({"n": 42, "b": true, "deep.id": "x"})), Err(Reason::McpArgument)),
            (&typed, call("t", json!({"n": [42], "b": true, "deep": {"id": "x"}})), Err(Reason::McpArgument)),
        ];
        for (value, parse_value, want) in table {
            let mcp = super::parse(value).unwrap();
            let host = host(parse_value.clone());
            assert_eq!(check(&mcp, &host.view()), *want, "{value} {parse_value:?}");
        }
    }

    #[test]
    fn a_parse_past_the_size_limit_or_not_called_mcp_is_no_parse() {
        use crate::request::mcp::IS_EXCEEDING_LIMIT;
        let mcp = super::parse(&json!({"tools": ["get_order"]})).unwrap();
        let whole = host(call("get_order", json!({})));
        assert_eq!(check(&mcp, &whole.view()), Ok(()));
        let truncated = host(call("get_order", json!({}))).property(&IS_EXCEEDING_LIMIT, "\u{1}");
        assert_eq!(check(&mcp, &truncated.view()), Err(Reason::McpNotParsed));
        let not_mcp = host(call("get_order", json!({}))).property(&IS_MCP_REQUEST, "\u{0}");
        assert_eq!(check(&mcp, &not_mcp.view()), Err(Reason::McpNotParsed));
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        for bad in [
            json!(["get_order"]),
            json!("get_order"),
            json!({"tool": ["get_order"]}),
            json!({"tools": [1]}),
            json!({"tools": ["*"]}),
            json!({"tools": ["a*b"]}),
            json!({"tools": ["a**"]}),
            json!({"tools": [""]}),
            json!({"methods": [""]}),
            json!({"methods": {"tools/call": true}}),
            json!({"args": []}),
            json!({"args": {"t": ["x"]}}),
            json!({"args": {"t": {"a": {"b": 1}}}}),
            json!({"args": {"t": {"a": [null]}}}),
            json!({"args": {"t": {"a..b": "x"}}}),
            json!({"args": {"t": {"": "x"}}}),
            json!({"args": {"*": {"a": "x"}}}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
