//! Loading the plugin configuration: the bytes Envoy delivers (JSON text or a
//! protobuf `Struct`, decoded by [`super::pb_struct`]) into a compiled [`Config`].

use super::compile::{compile, err};
use super::model::{Config, ConfigError};
use super::raw::RawConfig;
use crate::encoding::json;

impl Config {
    /// Parses and compiles the plugin configuration JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        // Duplicate members are as ambiguous in configuration as in tokens.
        if let Err(e) = json::parse_value(bytes) {
            return err("(root)", format!("not valid JSON without duplicate members ({e:?})"));
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = match serde_path_to_error::deserialize(de) {
            Ok(raw) => raw,
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = e.into_inner().to_string();
                // serde says "missing field `x` at line 1 column 2" with the parent's
                // path: name the missing field itself (unknown fields are in the path).
                let message = message.split(" at line ").next().unwrap_or(&message).to_string();
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

    /// Compiles the plugin configuration as Envoy delivers it: JSON text (from a
    /// `StringValue` or `BytesValue`) or the wire bytes of a `google.protobuf.Struct`.
    pub fn from_plugin_bytes(bytes: &[u8]) -> Result<Config, ConfigError> {
        // Decided by what parses, not by the first byte: a Struct whose first entry
        // is 123 bytes long starts with `\n{` (SEC-12.11).
        if bytes.is_empty() || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Config::from_json(bytes);
        }
        match super::pb_struct::decode_struct(bytes) {
            Some(json) => Config::from_json(json.to_string().as_bytes()),
            // Report the JSON syntax error when it looks like JSON.
            None if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Config::from_json(bytes),
            None => err("(root)", "the plugin configuration is neither JSON nor a protobuf Struct"),
        }
    }
}
