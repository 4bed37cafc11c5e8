//! The origin of a request or a URL (`scheme://authority`), in the one form
//! compared (SPEC §10: a DPoP proof's `htu`, the configured `origin`).

/// An origin in the one form compared: `scheme://authority`, ASCII-lowercased,
/// without the scheme's default port; `http` or `https` only; no user info,
/// path, query or fragment (a single trailing `/` is allowed and dropped).
pub fn parse_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"-._~:[]%".contains(&b);
    if authority.is_empty() || !authority.bytes().all(valid) {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    if authority.is_empty() || authority.ends_with(':') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_in_one_form() {
        assert_eq!(parse_origin("HTTPS://Api.Example.com:443").as_deref(), Some("https://api.example.com"));
        assert_eq!(parse_origin("http://a:80/").as_deref(), Some("http://a"));
        assert_eq!(parse_origin("http://a:8080").as_deref(), Some("http://a:8080"));
        assert_eq!(parse_origin("https://[::1]:443").as_deref(), Some("https://[::1]"));
        for bad in ["ftp://a", "https://", "https://a/b", "https://u@a", "a", "https://a:", "https://a?q"] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }
}
