//! Forwarding verified claims upstream (SPEC §5).
//!
//! Client copies of every configured header are removed on every request, then
//! verified values are set (replacing, never appending). Non-string claims are
//! forwarded as JSON; values with control characters are not forwarded.

use crate::config::{Forward, TokenSource};
use crate::encoding::b64;
use crate::request::credential::Found;
use crate::request::query;
use crate::request::view::RequestView;
use crate::token::claims::lookup;
use crate::token::verify::VerifiedToken;
use serde_json::Value;

/// Header edits to apply to the upstream request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Header names to remove entirely.
    pub remove: Vec<String>,
    /// Headers to set (after removal).
    pub set: Vec<(String, String)>,
    /// A rewritten `:path` (when a query-parameter token is removed).
    pub path: Option<String>,
    /// A cookie to drop from the `cookie` header(s) (when a cookie token is removed).
    pub drop_cookie: Option<String>,
}

/// The names whose client copies are always stripped.
pub fn stripped_headers(forward: &Forward) -> impl Iterator<Item = &str> {
    forward.claims_to_headers.iter().map(|(_, h)| h.as_str()).chain(forward.payload_header.as_deref())
}

/// Edits for a request that goes upstream (allowed, or refused in `dry_run`).
/// `token` is `None` when no token was verified; `credential` is the one found,
/// stripped when `remove_token` is set, verified or not.
pub fn edits(
    forward: &Forward,
    token: Option<&VerifiedToken>,
    credential: Option<&Found>,
    request: &RequestView<'_>,
) -> HeaderEdits {
    let mut out =
        HeaderEdits { remove: stripped_headers(forward).map(str::to_owned).collect(), ..HeaderEdits::default() };
    // `x_cjwt_sub` is `x-cjwt-sub` to CGI-style upstreams (HTTP_X_CJWT_SUB): strip
    // every spelling of a forwarded header, not just the canonical one (SEC-12.9).
    for (name, _) in request.headers() {
        if name.contains('_') && !out.remove.contains(name) {
            let canonical = name.replace('_', "-");
            if stripped_headers(forward).any(|h| h == canonical) {
                out.remove.push(name.clone());
            }
        }
    }
    if forward.remove_token {
        let request_path =
            request.header_values(":path").next().and_then(|p| std::str::from_utf8(p).ok()).unwrap_or("/");
        match credential.map(|c| &c.source) {
            // A Txn-Token goes upstream unchanged (SPEC §14): never removed.
            Some(TokenSource::Header { name, .. }) if name == crate::txn::HEADER => {}
            Some(TokenSource::Header { name, .. }) => out.remove.push(name.clone()),
            Some(TokenSource::Query(param)) => out.path = Some(remove_query_param(request_path, param)),
            Some(TokenSource::Cookie(name)) => out.drop_cookie = Some(name.clone()),
            None => {}
        }
        // A delegation chain (SPEC §16) is part of the credential: its links go too.
        if request.header_values(crate::chain::HEADER).next().is_some() {
            out.remove.push(crate::chain::HEADER.to_string());
        }
    }
    let Some(token) = token else {
        return out;
    };
    for (claim, header) in &forward.claims_to_headers {
        let value = match lookup(&token.claims, claim) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if value.bytes().all(|b| b >= 0x20 && b != 0x7f) {
            out.set.push((header.clone(), value));
        }
    }
    if let Some(header) = &forward.payload_header {
        out.set.push((header.clone(), b64::encode(&token.payload)));
    }
    out
}

/// `:path` without the parameter `param` in any spelling (see [`query::without`]).
pub fn remove_query_param(path: &str, param: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept = query::without(query, param);
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// A `cookie` header value without the cookie `name`; `None` when nothing is left.
pub fn remove_cookie(value: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|p| p.split_once('=').map_or(*p, |(k, _)| k) != name && !p.is_empty())
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_cookie_removal() {
        assert_eq!(remove_query_param("/a?access_token=x&b=1", "access_token"), "/a?b=1");
        assert_eq!(remove_query_param("/a?access_token=x", "access_token"), "/a");
        assert_eq!(remove_query_param("/a", "access_token"), "/a");
        assert_eq!(remove_cookie("a=1; jwt=x; b=2", "jwt"), Some("a=1; b=2".into()));
        assert_eq!(remove_cookie("jwt=x", "jwt"), None);
    }
}
