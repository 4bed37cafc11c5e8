//! The MCP request as Envoy's MCP filter (`envoy.filters.http.mcp`) parsed it
//! (SPEC §15): read once per decision, from the filter state object the filter
//! stores under [`FILTER_STATE_KEY`] (its `request_storage_mode` must include
//! `FILTER_STATE`). The object serializes as the JSON the filter extracted: `jsonrpc`,
//! `method`, `id` and the `params` fields its `ParserConfig` names (`params.name`
//! for `tools/call`, and each argument rule).
//!
//! The record is absent (and a token with `mcp` is refused) when the MCP filter
//! did not run before cjwt, did not parse the body as one JSON-RPC 2.0 message
//! (a batch, a non-JSON body, a GET or DELETE), or stored nothing.

use serde_json::Value;

/// The filter state key the MCP filter of Envoy 1.40 stores its parse under.
pub const FILTER_STATE_KEY: &str = "envoy.filters.http.mcp.request";

/// The host property path of the MCP filter's parse (the proxy-wasm property
/// path; the native module maps it to the filter state getter).
pub const PROPERTY: [&str; 2] = ["filter_state", FILTER_STATE_KEY];

/// The MCP filter's dynamic metadata namespace.
pub const NAMESPACE: &str = "envoy.filters.http.mcp";

/// The filter's verdict that the body is one MCP (JSON-RPC 2.0) message: a bool
/// in its dynamic metadata (`request_storage_mode` must include it). One byte, 1
/// for true, as both hosts give a bool.
pub const IS_MCP_REQUEST: [&str; 4] = ["metadata", "filter_metadata", NAMESPACE, "is_mcp_request"];

/// Set (true) when the body was longer than the filter's `max_request_body_size`
/// and it passed on a parse of the first bytes only: what came after (a second
/// `name`, say) was never seen, so there is no parse to decide on.
pub const IS_EXCEEDING_LIMIT: [&str; 4] = ["metadata", "filter_metadata", NAMESPACE, "is_exceeding_limit"];

/// The JSON-RPC method of a `tools/call` request.
pub const TOOLS_CALL: &str = "tools/call";

/// One MCP request: its JSON-RPC method, the tool name of a `tools/call`, and the
/// arguments the filter extracted.
#[derive(Clone, Debug, PartialEq)]
pub struct McpRequest {
    /// `method`, exactly as sent.
    pub method: String,
    /// `params.name` when it is a string (the tool of a `tools/call`).
    pub tool: Option<String>,
    /// `params.arguments` as extracted (only the configured argument paths).
    pub arguments: Value,
}

impl McpRequest {
    /// Reads the MCP filter's JSON: `None` unless it is an object with
    /// `"jsonrpc": "2.0"` and a string `method`.
    pub fn parse(raw: &[u8]) -> Option<McpRequest> {
        let value: Value = serde_json::from_slice(raw).ok()?;
        let obj = value.as_object()?;
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return None;
        }
        let method = obj.get("method")?.as_str()?.to_owned();
        let params = obj.get("params");
        let tool = params.and_then(|p| p.get("name")).and_then(Value::as_str).map(str::to_owned);
        let arguments = params.and_then(|p| p.get("arguments")).cloned().unwrap_or(Value::Null);
        Some(McpRequest { method, tool, arguments })
    }

    /// The parse a host gives: the filter state JSON, only when the filter's
    /// metadata says it parsed one MCP message whole ([`IS_MCP_REQUEST`] true,
    /// [`IS_EXCEEDING_LIMIT`] not true). Anything else is no parse.
    pub fn read(property: impl Fn(&[&str]) -> Option<Vec<u8>>) -> Option<McpRequest> {
        if property(&IS_MCP_REQUEST)? != [1] || property(&IS_EXCEEDING_LIMIT).is_some_and(|v| v != [0]) {
            return None;
        }
        McpRequest::parse(&property(&PROPERTY)?)
    }

    /// Whether this is a `tools/call`.
    pub fn is_tool_call(&self) -> bool {
        self.method == TOOLS_CALL
    }

    /// The argument at a dotted path below `params.arguments` (`customer.id`),
    /// if the filter extracted it.
    pub fn argument(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.arguments, |v, key| v.as_object()?.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_json_is_read_strictly() {
        let call = br#"{"id":1.0,"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"c":{"id":"42"}},"name":"get_order"}}"#;
        let r = McpRequest::parse(call).unwrap();
        assert_eq!((r.method.as_str(), r.tool.as_deref(), r.is_tool_call()), ("tools/call", Some("get_order"), true));
        assert_eq!(r.argument("c.id"), Some(&Value::from("42")));
        assert_eq!(r.argument("c"), r.arguments.get("c"));
        assert_eq!(r.argument("d"), None);
        for bad in [
            &br#"{"jsonrpc":"1.0","method":"tools/call"}"#[..],
            br#"{"method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","method":7}"#,
            br#"{"jsonrpc":"2.0"}"#,
            br#"[{"jsonrpc":"2.0","method":"tools/call"}]"#,
            b"not json",
            b"",
        ] {
            assert_eq!(McpRequest::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let n = McpRequest::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!((n.tool, n.arguments), (None, Value::Null));
    }

    #[test]
    fn only_a_whole_parse_the_filter_calls_mcp_is_read() {
        let body = br#"{"jsonrpc":"2.0","method":"tools/list"}"#.to_vec();
        /// (is_mcp_request, is_exceeding_limit, read?)
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, bool);
        let table: &[Case] = &[
            (Some(&[1]), None, true),
            (Some(&[1]), Some(&[0]), true),
            (Some(&[1]), Some(&[1]), false),
            (Some(&[1]), Some(&[]), false),
            (Some(&[0]), None, false),
            (None, None, false),
            (Some(b"true"), None, false),
        ];
        for (is_mcp, exceeding, want) in table {
            let property = |path: &[&str]| match path {
                p if p == IS_MCP_REQUEST => is_mcp.map(<[u8]>::to_vec),
                p if p == IS_EXCEEDING_LIMIT => exceeding.map(<[u8]>::to_vec),
                p if p == PROPERTY => Some(body.clone()),
                _ => None,
            };
            assert_eq!(McpRequest::read(property).is_some(), *want, "{is_mcp:?} {exceeding:?}");
        }
    }
}
