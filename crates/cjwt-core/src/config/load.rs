//! Loading the plugin configuration: the bytes Envoy delivers (JSON text or a
//! protobuf `Struct`, decoded by [`super::pb_struct`]) into a compiled [`Config`].

use super::compile::{compile, err};
use super::model::{Config, ConfigError, RegionSource};
use super::raw::RawConfig;
use crate::encoding::json;
use serde_json::Value;

/// What an adapter's host can do, where the builds differ: a configuration
/// that needs more than its build offers is refused when it is compiled
/// ([`Config::from_plugin_bytes_for`]), never half-served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether the host can read Envoy's node metadata (`region.node_metadata`).
    pub node_metadata: bool,
}

impl Capabilities {
    /// The proxy-wasm build: everything.
    pub const WASM: Capabilities = Capabilities { node_metadata: true };
    /// The native dynamic module: Envoy 1.40's ABI reads no node metadata.
    pub const NATIVE: Capabilities = Capabilities { node_metadata: false };
}

impl Config {
    /// [`Config::from_plugin_bytes`] for a build with `capabilities`.
    pub fn from_plugin_bytes_for(bytes: &[u8], capabilities: Capabilities) -> Result<Config, ConfigError> {
        let config = Config::from_plugin_bytes(bytes)?;
        if !capabilities.node_metadata && matches!(config.region, Some(RegionSource::NodeMetadata(_))) {
            return err(
                "region.node_metadata",
                "this build cannot read node metadata (Envoy 1.40's dynamic-module ABI has no such call); \
                 use region.header or region.value",
            );
        }
        Ok(config)
    }

    /// Parses and compiles the plugin configuration JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        // Duplicate members are as ambiguous in configuration as in tokens.
        match json::parse_value(bytes) {
            Ok(value) => from_value(value),
            Err(e) => err("(root)", format!("not valid JSON without duplicate members ({e:?})")),
        }
    }

    /// Compiles the plugin configuration as Envoy delivers it: JSON text (from a
    /// `StringValue` or `BytesValue`) or the wire bytes of a `google.protobuf.Struct`.
    pub fn from_plugin_bytes(bytes: &[u8]) -> Result<Config, ConfigError> {
        // The common case, strict JSON, is parsed once.
        if let Ok(value) = json::parse_value(bytes) {
            return from_value(value);
        }
        // Decided by what parses, not by the first byte: a Struct whose first entry
        // is 123 bytes long starts with `\n{` (SEC-12.11). JSON that only the strict
        // parser refuses (duplicate members) gets `from_json`'s error.
        if bytes.is_empty() || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Config::from_json(bytes);
        }
        match super::pb_struct::decode_struct(bytes) {
            // The decoder refuses duplicate keys itself, and bounds the depth.
            Some(value) => from_value(value),
            // Report the JSON syntax error when it looks like JSON.
            None if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Config::from_json(bytes),
            None => err("(root)", "the plugin configuration is neither JSON nor a protobuf Struct"),
        }
    }
}

/// Deserializes [`RawConfig`] from the already strictly parsed value (no second
/// parse of the text) and compiles it. serde_path_to_error names the field of a
/// shape error; a value carries no line/column, so the message has none either.
fn from_value(value: Value) -> Result<Config, ConfigError> {
    let raw: RawConfig =
        match serde_path_to_error::deserialize(value) {
            Ok(raw) => raw,
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = e.into_inner().to_string();
                // serde says "missing field `x`" with the parent's path: name the
                // missing field itself (unknown fields are in the path).
                let named = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                    .map(|name| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") });
                let field = named.unwrap_or_else(|| if path.is_empty() { "(root)".to_string() } else { path });
                return err(field, message);
            }
        };
    compile(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_strict_parse_still_refuses_duplicates_and_names_the_field() {
        for text in [&br#"{"providers": [], "providers": []}"#[..], br#"{"providers": [{"name": "p", "name": "q"}]}"#] {
            for e in [Config::from_json(text), Config::from_plugin_bytes(text)].map(|r| r.err()) {
                assert_eq!(e.map(|e| e.field), Some("(root)".to_string()), "{text:?}");
            }
        }
        let text = br#"{"providers": [{"name": "p", "issuer": "i", "jwks": {"keys": []}}], "rules": [{"auth": 1}]}"#;
        for e in [Config::from_json(text), Config::from_plugin_bytes(text)].map(|r| r.err()) {
            let e = e.expect("refused");
            assert_eq!(e.field, "rules[0].auth");
            assert!(!e.message.contains(" at line "), "{e}");
        }
        let e = Config::from_json(br#"{"providers": [{"issuer": "i"}]}"#).expect_err("refused");
        assert_eq!(e.to_string(), "providers[0].name: missing field `name`");
    }
}

#[cfg(test)]
mod capability_tests {
    use super::*;

    #[test]
    fn a_build_without_node_metadata_refuses_region_node_metadata_when_compiling() {
        let node =
            br#"{"providers": [{"name": "p", "issuer": "https://i", "remote_jwks": {"cluster": "idp", "path": "/k"}}],
                        "region": {"node_metadata": "REGION"}}"#;
        assert!(Config::from_plugin_bytes_for(node, Capabilities::WASM).is_ok());
        let e = Config::from_plugin_bytes_for(node, Capabilities::NATIVE).err().map(|e| e.field);
        assert_eq!(e.as_deref(), Some("region.node_metadata"));
        let header =
            br#"{"providers": [{"name": "p", "issuer": "https://i", "remote_jwks": {"cluster": "idp", "path": "/k"}}],
                          "region": {"header": "x-region"}}"#;
        assert!(Config::from_plugin_bytes_for(header, Capabilities::NATIVE).is_ok());
    }
}
