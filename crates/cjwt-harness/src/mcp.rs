//! Envoy's MCP filter as the suites and the demo put it before cjwt.

/// The `http_filters` head of the harness Envoy with Envoy's MCP filter before
/// cjwt (SPEC §15 "Pairing with the MCP filter"): its parse stored as filter
/// state too (cjwt reads it there), duplicate keys refused, the tool name and
/// the constrained argument (`customer_id`) extracted for `tools/call`.
const FILTER: &str = r#"          http_filters:
          - name: envoy.filters.http.mcp
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp
              traffic_mode: PASS_THROUGH
              request_storage_mode: DYNAMIC_METADATA_AND_FILTER_STATE
              reject_duplicate_keys: true
              parser_config:
                methods:
                - method: tools/call
                  extraction_rules:
                  - path: params.name
                  - path: params.arguments.customer_id
          - name: cjwt
"#;

/// The [`crate::envoy::Options`] edit that puts the MCP filter before cjwt.
pub fn filter_edit() -> (String, String) {
    ("          http_filters:\n          - name: cjwt\n".to_string(), FILTER.to_string())
}
