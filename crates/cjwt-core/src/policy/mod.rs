//! The operator's policy for a request (SPEC §2 `rules`, `default_rule`): which
//! rule applies ([`rules`]) and what that rule requires of a verified token
//! ([`require`]).

pub mod require;
pub mod rules;

/// A configuration for the policy unit tests: one remote-only provider `corp`
/// (no keys needed), plus `extra` top-level members.
#[cfg(test)]
pub(crate) fn test_config(extra: serde_json::Value) -> crate::config::Config {
    let mut base = serde_json::json!({"providers": [{"name": "corp", "issuer": "https://idp.example.com",
        "remote_jwks": {"cluster": "idp", "path": "/jwks.json"}}]});
    if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    crate::config::Config::from_json(base.to_string().as_bytes()).unwrap()
}
