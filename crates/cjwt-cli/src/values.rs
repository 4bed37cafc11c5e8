//! Value parsers: every typed flag is checked while the arguments are parsed,
//! so an error names the flag and the value.

use cjwt_core::constraints::ip::IpRange;
use cjwt_core::constraints::window::Window;
use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::request::paths::{HostPattern, PathPattern};
use clap::builder::{PossibleValue, TypedValueParser};
use serde_json::Value;

/// A comma-separated list given to one flag (`--methods GET,HEAD`): items
/// trimmed, empty items dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct List(pub Vec<String>);

/// Flattens repeated list flags into one list.
pub fn flatten(lists: Vec<List>) -> Vec<String> {
    lists.into_iter().flat_map(|l| l.0).collect()
}

fn split(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

/// `--methods`, `--roles`: a plain comma-separated list.
pub fn list(s: &str) -> Result<List, String> {
    Ok(List(split(s)))
}

/// `--ip`: comma-separated addresses or CIDR ranges, each in the filter's strict form.
pub fn cidr_list(s: &str) -> Result<List, String> {
    let items = split(s);
    if let Some(bad) = items.iter().find(|i| IpRange::parse(i).is_none()) {
        return Err(format!("ip: malformed address or range {bad:?}"));
    }
    Ok(List(items))
}

/// `--hosts`: comma-separated host patterns.
pub fn host_list(s: &str) -> Result<List, String> {
    let items = split(s);
    if let Some(bad) = items.iter().find(|i| HostPattern::parse(i).is_err()) {
        return Err(format!("hosts: malformed pattern {bad:?}"));
    }
    Ok(List(items))
}

/// `--paths`: one path pattern (patterns may contain commas, so no list).
pub fn path_pattern(s: &str) -> Result<String, String> {
    PathPattern::parse(s).map(|_| s.to_owned()).map_err(|_| format!("paths: malformed pattern {s:?}"))
}

/// `--window`: the shorthand `[DAYS] HH:MM-HH:MM [TZ]`, checked as the filter checks it.
pub fn window(s: &str) -> Result<Value, String> {
    let w = cjwt_core::mint::claims::parse_window(s)?;
    Window::parse(&w).map_err(|e| format!("window: {e}"))?;
    Ok(w)
}

/// `90s`, `15m`, `2h`, `7d`, or plain seconds; positive.
pub fn duration(s: &str) -> Result<i64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at_checked(split).ok_or_else(|| format!("bad duration {s:?}"))?;
    let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?} (a number, then s, m, h or d)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration {s:?} (use s, m, h or d)")),
    };
    if n <= 0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    n.checked_mul(mult).ok_or_else(|| format!("duration {s:?} is too long"))
}

/// `2026-11-30T10:00:00Z` (RFC 3339) as Unix seconds.
pub fn rfc3339(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp()).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// `name=value` (`--constraint`, `--header`).
pub fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if !n.is_empty() => Ok((n.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not name=value")),
    }
}

/// `TOOL.PATH=VALUE` (`--mcp-arg`): the tool is up to the first `.`, the argument
/// path (dotted, below `params.arguments`) up to the first `=`.
pub fn mcp_arg(s: &str) -> Result<(String, String, String), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("{s:?} is not TOOL.PATH=VALUE"))?;
    match key.split_once('.') {
        Some((tool, path)) if !tool.is_empty() && !path.is_empty() => Ok((tool.into(), path.into(), value.into())),
        _ => Err(format!("{s:?} is not TOOL.PATH=VALUE")),
    }
}

/// `name=JSON` (`--claim`); a value that is not JSON is taken as a string.
pub fn claim(s: &str) -> Result<(String, Value), String> {
    let (name, value) =
        s.split_once('=').filter(|(n, _)| !n.is_empty()).ok_or_else(|| format!("{s:?} is not name=JSON"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
    Ok((name.to_owned(), value))
}

/// A claim name or dotted path, as `claim_names.*` accepts it.
pub fn claim_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.starts_with('.') || s.ends_with('.') || s.contains("..") {
        return Err(format!("{s:?} is not a claim name or a dotted path"));
    }
    Ok(s.to_owned())
}

/// `--alg`: one of the JOSE names cjwt supports (listed in `--help`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AlgorithmParser;

impl TypedValueParser for AlgorithmParser {
    type Value = Algorithm;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Algorithm, clap::Error> {
        let name = value.to_string_lossy();
        Algorithm::from_name(&name).ok_or_else(|| {
            let flag = arg.map(|a| a.to_string()).unwrap_or_else(|| "--alg".into());
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{flag}': unsupported algorithm {name:?}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Algorithm::ALL.iter().map(|a| PossibleValue::new(a.name()))))
    }
}

/// `IDX,URI`: a status-list entry for `mint --status`.
pub fn status_ref(s: &str) -> Result<(u64, String), String> {
    let (idx, uri) = s.split_once(',').ok_or("expected IDX,URI")?;
    let idx = idx.trim().parse::<u64>().map_err(|_| format!("{idx:?} is not an index (a non-negative integer)"))?;
    if uri.is_empty() {
        return Err("the URI is empty".into());
    }
    Ok((idx, uri.to_string()))
}

/// Indexes and ranges, comma-separated: `3,7,10-20` (at most 2^27 in all).
pub fn indexes(s: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("{x:?} is not an index"));
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(part)?, parse(part)?),
        };
        if from > to || to - from >= 1 << 27 || out.len() as u64 + (to - from) >= 1 << 27 {
            return Err(format!("{part:?} is not a range of at most 2^27 indexes"));
        }
        out.extend(from..=to);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_must_be_positive() {
        assert_eq!(duration("90"), Ok(90));
        assert_eq!(duration("90s"), Ok(90));
        assert_eq!(duration("15m"), Ok(900));
        assert_eq!(duration("2h"), Ok(7200));
        assert_eq!(duration("7d"), Ok(604_800));
        assert!(duration("soon").unwrap_err().contains("bad duration"));
        assert!(duration("5w").unwrap_err().contains("use s, m, h or d"));
        assert!(duration("0m").unwrap_err().contains("must be positive"));
        assert!(duration("99999999999999999d").unwrap_err().contains("too long"));
    }

    #[test]
    fn lists_are_split_trimmed_and_checked() {
        assert_eq!(list("GET, HEAD,,"), Ok(List(vec!["GET".into(), "HEAD".into()])));
        assert_eq!(cidr_list("10.0.0.0/8,::1"), Ok(List(vec!["10.0.0.0/8".into(), "::1".into()])));
        assert!(cidr_list("10.0.0.0/8,010.0.0.0/8").unwrap_err().contains("ip: malformed"));
        assert!(host_list("a*.example.com").unwrap_err().contains("hosts: malformed"));
        assert!(path_pattern("/a/**/b").unwrap_err().contains("paths: malformed"));
        assert_eq!(flatten(vec![List(vec!["a".into()]), List(vec!["b".into()])]), vec!["a", "b"]);
    }

    #[test]
    fn name_value_pairs_and_claims() {
        assert_eq!(name_value("tenant=acme=1"), Ok(("tenant".into(), "acme=1".into())));
        assert!(name_value("tenant").is_err());
        assert!(name_value("=x").is_err());
        assert_eq!(claim("n=3"), Ok(("n".into(), Value::from(3))));
        assert_eq!(claim("s=text"), Ok(("s".into(), Value::from("text"))));
        assert_eq!(claim_name("https://example.com/cnst"), Ok("https://example.com/cnst".into()));
        assert!(claim_name("a..b").is_err());
        assert!(claim_name("").is_err());
    }

    #[test]
    fn windows_are_checked_with_the_filters_parser() {
        assert!(window("mon-fri 09:00-17:30 Europe/Berlin").is_ok());
        assert!(window("mon-fri 9:00-17:30").unwrap_err().starts_with("window"));
        assert!(window("mon-fri 09:00-17:30 Mars/Base").unwrap_err().contains("unknown time zone"));
    }
}
