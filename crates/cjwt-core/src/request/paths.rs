//! Path and host patterns (SPEC §3), compiled once, matched without allocation.
//!
//! Paths: `/a/b` is exact; a `*` segment matches exactly one non-empty segment; a
//! final `**` matches zero or more segments. Case-sensitive. Hosts: exact after
//! ASCII lowercasing; `*.example.com` matches exactly one extra label.

/// One segment of a compiled path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
}

/// A compiled path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Ends in `**`.
    rest: bool,
}

impl PathPattern {
    /// Compiles a pattern. It must start with `/`, be in normal form itself, and
    /// use `*` and `**` only as whole segments (`**` only last).
    pub fn parse(pattern: &str) -> Result<PathPattern, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern {pattern:?} must start with '/'"));
        }
        // Patterns match the path without query or fragment: such a pattern never matches.
        if pattern.contains(['?', '#']) {
            return Err(format!("path pattern {pattern:?} has a query or fragment; paths are matched without them"));
        }
        if !is_normalized(pattern) {
            return Err(format!("path pattern {pattern:?} is not in normal form"));
        }
        let raw = split_segments(pattern);
        let count = raw.len();
        let mut segments = Vec::with_capacity(count);
        let mut rest = false;
        for (i, seg) in raw.into_iter().enumerate() {
            match seg {
                "**" if i + 1 == count => rest = true,
                "**" => return Err(format!("path pattern {pattern:?}: `**` is only allowed as the last segment")),
                "*" => segments.push(Segment::One),
                s if s.contains('*') => {
                    return Err(format!("path pattern {pattern:?}: `*` must be a whole segment"));
                }
                s => segments.push(Segment::Literal(s.to_owned())),
            }
        }
        Ok(PathPattern { segments, rest })
    }

    /// Matches a normalised request path (without query).
    pub fn matches(&self, path: &str) -> bool {
        let mut segs = split_iter(path);
        for want in &self.segments {
            match (want, segs.next()) {
                (Segment::Literal(l), Some(s)) if l == s => {}
                (Segment::One, Some(s)) if !s.is_empty() => {}
                _ => return false,
            }
        }
        self.rest || segs.next().is_none()
    }

    /// True when every path this pattern matches, `parent` matches too (SPEC
    /// §16): segment by segment, a parent literal needs the same literal, a
    /// parent `*` a literal or `*`; past the parent's segments, only a parent
    /// ending in `**` allows more (and a child `**`).
    pub fn within(&self, parent: &PathPattern) -> bool {
        let mut mine = self.segments.iter();
        for want in &parent.segments {
            match (want, mine.next()) {
                (Segment::Literal(p), Some(Segment::Literal(c))) if p == c => {}
                (Segment::One, Some(Segment::Literal(c))) if !c.is_empty() => {}
                (Segment::One, Some(Segment::One)) => {}
                _ => return false,
            }
        }
        parent.rest || (mine.next().is_none() && !self.rest)
    }

    /// An upper estimate of the heap this pattern holds (its segment list and
    /// literal segments, with allocator overhead).
    pub fn heap_bytes(&self) -> usize {
        let list = self.segments.capacity().saturating_mul(std::mem::size_of::<Segment>()).saturating_add(16);
        self.segments.iter().fold(list, |sum, s| match s {
            Segment::Literal(l) => sum.saturating_add(l.capacity()).saturating_add(16),
            Segment::One => sum,
        })
    }
}

/// Segments after the leading `/`; the root path has none.
fn split_iter(path: &str) -> impl Iterator<Item = &str> {
    let body = path.strip_prefix('/').unwrap_or(path);
    let empty_root = body.is_empty();
    body.split('/').filter(move |_| !empty_root)
}

fn split_segments(path: &str) -> Vec<&str> {
    split_iter(path).collect()
}

/// The path part of `:path`: up to the first `?` or `#`.
pub fn path_only(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// The query part of `:path` (after the first `?`, before any `#`), if any.
pub fn query_only(path: &str) -> Option<&str> {
    let start = path.find('?')?;
    let rest = path.get(start + 1..)?;
    let end = rest.find('#').unwrap_or(rest.len());
    rest.get(..end)
}

/// True when `path` (without query) is in the normal form SPEC §3 requires:
/// starts with `/`; no `//`; no `.` or `..` segments; no `;` or `\`; no
/// percent-encoded `/`, `\` or `.` in any case.
pub fn is_normalized(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("//") || path.contains(';') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") {
        return false;
    }
    !split_iter(path).any(|s| s == "." || s == "..")
}

/// The zero-based `index`-th segment after the leading `/`.
pub fn path_segment(path: &str, index: usize) -> Option<&str> {
    split_iter(path).nth(index)
}

/// A compiled host pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// An exact host name, lowercased, without a trailing dot.
    Exact(String),
    /// `*.suffix`: stores `.suffix`.
    OneLabel(String),
}

impl HostPattern {
    /// Compiles a host pattern: a host name without port (one trailing dot
    /// allowed), or `*.` followed by one.
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        // `example.com.` is the same DNS name as `example.com`: one trailing dot goes.
        let lower = pattern.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower).to_owned();
        if lower.is_empty()
            || lower.contains(char::is_whitespace)
            || lower.contains(['/', '?', '#', '@'])
            || lower.ends_with('.')
            || lower.contains("..")
        {
            return Err(format!("host pattern {pattern:?} is not a host name"));
        }
        // Hosts are matched without their port, so a pattern with one never matches.
        let bracketed = lower.starts_with('[') && lower.ends_with(']') && !lower.contains("]:");
        if lower.contains(':') && !bracketed {
            return Err(format!("host pattern {pattern:?} has a port; hosts are matched without one"));
        }
        if let Some(suffix) = lower.strip_prefix('*') {
            if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                return Err(format!("host pattern {pattern:?}: `*` is only allowed as a whole first label"));
            }
            return Ok(HostPattern::OneLabel(suffix.to_owned()));
        }
        if lower.contains('*') {
            return Err(format!("host pattern {pattern:?}: `*` is only allowed as a whole first label"));
        }
        Ok(HostPattern::Exact(lower))
    }

    /// Matches a host already normalised by [`normalize_host`].
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::OneLabel(suffix) => {
                host.strip_suffix(suffix.as_str()).is_some_and(|label| !label.is_empty() && !label.contains('.'))
            }
        }
    }

    /// True when every host this pattern matches, `parent` matches too (SPEC
    /// §16): the same pattern, or an exact name `parent` matches.
    pub fn within(&self, parent: &HostPattern) -> bool {
        match self {
            HostPattern::Exact(h) => parent.matches(h),
            HostPattern::OneLabel(_) => self == parent,
        }
    }

    /// An upper estimate of the heap this pattern holds (its name, with allocator overhead).
    pub fn heap_bytes(&self) -> usize {
        match self {
            HostPattern::Exact(s) | HostPattern::OneLabel(s) => s.capacity().saturating_add(16),
        }
    }
}

/// `:authority` without port, ASCII-lowercased. IPv6 literals keep their brackets.
pub fn normalize_host(authority: &str) -> String {
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        }
    } else {
        match authority.rfind(':') {
            Some(colon) => authority.get(..colon).unwrap_or(authority),
            None => authority,
        }
    };
    let mut host = host.to_ascii_lowercase();
    // One trailing dot: `admin.example.com.` names `admin.example.com` (SEC-12.2).
    if host.ends_with('.') && !host.starts_with('[') {
        host.pop();
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_paths_match_only_themselves() {
        assert!(p("/a/b").matches("/a/b"));
        assert!(!p("/a/b").matches("/a/b/c"));
        assert!(!p("/a/b").matches("/a"));
        assert!(!p("/a/b").matches("/A/b"), "case-sensitive");
        assert!(p("/").matches("/"));
        assert!(!p("/").matches("/a"));
    }

    #[test]
    fn single_star_matches_exactly_one_segment() {
        assert!(p("/a/*/c").matches("/a/x/c"));
        assert!(!p("/a/*/c").matches("/a/c"));
        assert!(!p("/a/*/c").matches("/a/x/y/c"));
        assert!(!p("/a/*").matches("/a/"), "empty segment is not a segment");
    }

    #[test]
    fn double_star_matches_zero_or_more_trailing_segments() {
        assert!(p("/v1/orders/**").matches("/v1/orders"));
        assert!(p("/v1/orders/**").matches("/v1/orders/7"));
        assert!(p("/v1/orders/**").matches("/v1/orders/7/items/2"));
        assert!(!p("/v1/orders/**").matches("/v1/ordersX"));
        assert!(!p("/v1/orders/**").matches("/v1"));
        assert!(p("/**").matches("/"));
        assert!(p("/**").matches("/anything/at/all"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["a/b", "/a/**/b", "/a*", "/a/b*c", "/a//b", "/a/../b", "/a;x", "/%2e", "/a?x=1", "/a#f", "/?"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normal_form_check_catches_bypass_spellings() {
        for bad in [
            "/a//b",
            "/a/./b",
            "/a/../admin",
            "/..",
            "/a/%2F",
            "/a/%2f",
            "/a%5Cb",
            "/a/%2e%2e/b",
            "/a/..;/b",
            "/a;jsessionid=1",
            "a",
            "",
            "/a\\b",
            "//",
        ] {
            assert!(!is_normalized(bad), "{bad}");
        }
        for good in ["/", "/a", "/a/b/", "/a/b.c", "/a/..b", "/%41"] {
            assert!(is_normalized(good), "{good}");
        }
    }

    #[test]
    fn path_query_and_segments_split_as_spec() {
        assert_eq!(path_only("/a/b?x=1#f"), "/a/b");
        assert_eq!(path_only("/a#f?x"), "/a");
        assert_eq!(query_only("/a?x=1&y=2#f"), Some("x=1&y=2"));
        assert_eq!(query_only("/a"), None);
        assert_eq!(path_segment("/t/acme/x", 0), Some("t"));
        assert_eq!(path_segment("/t/acme/x", 1), Some("acme"));
        assert_eq!(path_segment("/t", 1), None);
        assert_eq!(path_segment("/", 0), None);
    }

    #[test]
    fn hosts_match_exactly_or_one_label() {
        let exact = HostPattern::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.matches("api.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("a.b.example.com"));
        assert!(!wild.matches(".example.com"));
        assert!(!wild.matches("evilexample.com"));
        let dotted = HostPattern::parse("Admin.Example.com.").unwrap();
        assert!(dotted.matches(&normalize_host("admin.example.com")));
        assert!(exact.matches(&normalize_host("api.example.com.")));
        assert!(exact.matches(&normalize_host("API.example.com.:443")));
        assert!(!exact.matches(&normalize_host("api.example.com..")));
        assert!(wild.matches(&normalize_host("x.example.com.")));
        assert!(HostPattern::parse("[::1]").is_ok());
        for bad in [
            "",
            "a*.example.com",
            "*example.com",
            "*.",
            "x.*.com",
            "a b",
            ".",
            "a..b",
            "admin.example.com:443",
            "admin.example.com..",
            "[::1]:443",
            "::1",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authority_is_normalised() {
        assert_eq!(normalize_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(normalize_host("example.com"), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
    }
}
