//! The constraints claim of a token to mint (SPEC §3), built from plain lists
//! and the window shorthand, and checked the way the filter will check it, so
//! that nobody mints a token that can never work.

use crate::constraints::{Constraints, Mint, KINDS};
use serde_json::{json, Map, Value};

/// The name the constraints claim has unless `claim_names.constraints` says otherwise.
pub const DEFAULT_CONSTRAINTS_CLAIM: &str = "cnst";

/// The constraints a token to mint carries. Kinds given no value are left out of the claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConstraintsSpec {
    /// Built-in constraint values as (kind name, value) pairs (see
    /// [`crate::constraints::KINDS`]): a list kind collects its values in the
    /// order given (`ip`, `methods`, `paths`, `hosts`, `region`: strings;
    /// `window`: window objects, e.g. from [`parse_window`]); a one-value kind
    /// (`max_uses`, which needs a string `jti`) takes its one value.
    pub builtin: Vec<(String, Value)>,
    /// Custom constraints as (name, value) pairs; repeated names make a list.
    pub custom: Vec<(String, String)>,
}

impl ConstraintsSpec {
    /// True when the spec constrains nothing (the token gets no constraints claim).
    pub fn is_empty(&self) -> bool {
        self.to_object().map(|m| m.is_empty()).unwrap_or(false)
    }

    /// The claim's value, or `None` when there is nothing to constrain. Refuses
    /// what the filter would refuse (`malformed_constraint`, `unknown_constraint`);
    /// `has_jti` says whether the token carries a string `jti` (`max_uses` needs one).
    /// The names in [`ConstraintsSpec::custom`] count as configured custom constraints.
    pub fn to_claim(&self, has_jti: bool) -> Result<Option<Value>, String> {
        let object = self.to_object()?;
        if object.is_empty() {
            return Ok(None);
        }
        let value = Value::Object(object);
        let names: Vec<&str> = self.custom.iter().map(|(n, _)| n.as_str()).collect();
        let parsed = Constraints::parse(&value, &names, has_jti).map_err(|e| format!("constraint refused: {e}"))?;
        if let Some(unknown) = parsed.unknown {
            return Err(format!("constraint refused: unknown constraint {unknown:?}"));
        }
        Ok(Some(value))
    }

    /// Adds `values` for the built-in kind `name`.
    pub fn with(mut self, name: &str, values: impl IntoIterator<Item = impl Into<Value>>) -> ConstraintsSpec {
        self.builtin.extend(values.into_iter().map(|v| (name.to_owned(), v.into())));
        self
    }

    fn to_object(&self) -> Result<Map<String, Value>, String> {
        let mut c = Map::new();
        if let Some((name, _)) = self.builtin.iter().find(|(name, _)| KINDS.iter().all(|k| k.name != *name)) {
            return Err(format!("{name:?} is not a built-in constraint"));
        }
        for kind in KINDS {
            let mut values = self.builtin.iter().filter(|(name, _)| name == kind.name).map(|(_, v)| v.clone());
            let value = match (kind.mint, values.next()) {
                (_, None) => continue,
                (Mint::List, Some(first)) => Value::Array(std::iter::once(first).chain(values).collect()),
                (Mint::One, Some(one)) => match values.next() {
                    None => one,
                    Some(_) => return Err(format!("{} takes one value", kind.name)),
                },
            };
            c.insert(kind.name.into(), value);
        }
        for (name, value) in &self.custom {
            match c.entry(name.clone()).or_insert_with(|| json!([])) {
                Value::Array(items) => items.push(json!(value)),
                _ => return Err(format!("--constraint {name:?} clashes with a built-in constraint")),
            }
        }
        Ok(c)
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The window shorthand `[DAYS] HH:MM-HH:MM [TZ]` as a window object: for example
/// `mon-fri 09:00-17:30 Europe/Berlin`, `sat,sun 10:00-14:00`, `22:00-06:00 +01:00`.
/// Day ranges wrap (`fri-mon`). Times and zones are checked later, by
/// [`ConstraintsSpec::to_claim`], with the filter's own parser.
pub fn parse_window(s: &str) -> Result<Value, String> {
    let mut w = Map::new();
    let mut parts = s.split_whitespace().peekable();
    if let Some(first) = parts.next_if(|p| p.starts_with(|c: char| c.is_ascii_alphabetic())) {
        let mut days = Vec::new();
        for item in first.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (i, j) = (day(a)?, day(b)?);
                    let span = (j + 7 - i) % 7;
                    days.extend(DAYS.iter().copied().cycle().skip(i).take(span + 1));
                }
                None => days.extend(DAYS.iter().copied().skip(day(item)?).take(1)),
            }
        }
        w.insert("days".into(), json!(days));
    }
    let range = parts.next().ok_or_else(|| format!("window {s:?} needs HH:MM-HH:MM"))?;
    let (start, end) = range.split_once('-').ok_or_else(|| format!("window {s:?} needs HH:MM-HH:MM"))?;
    w.insert("start".into(), json!(start));
    w.insert("end".into(), json!(end));
    if let Some(tz) = parts.next() {
        w.insert("tz".into(), json!(tz));
    }
    if parts.next().is_some() {
        return Err(format!("window {s:?} has extra words"));
    }
    Ok(Value::Object(w))
}

fn day(name: &str) -> Result<usize, String> {
    DAYS.iter().position(|d| *d == name).ok_or_else(|| format!("unknown day {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_shorthand_becomes_a_window_object() {
        assert_eq!(
            parse_window("mon-fri 09:00-17:30 Europe/Berlin").unwrap(),
            json!({"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30", "tz": "Europe/Berlin"})
        );
        assert_eq!(
            parse_window("fri-mon,wed 22:00-06:00").unwrap(),
            json!({"days": ["fri", "sat", "sun", "mon", "wed"], "start": "22:00", "end": "06:00"})
        );
        assert_eq!(parse_window("sun-sun 10:00-11:00").unwrap()["days"], json!(["sun"]));
        assert_eq!(
            parse_window("10:00-11:00 +01:00").unwrap(),
            json!({"start": "10:00", "end": "11:00", "tz": "+01:00"})
        );
        assert!(parse_window("mon-xyz 10:00-11:00").unwrap_err().contains("unknown day \"xyz\""));
        assert!(parse_window("mon").unwrap_err().contains("needs HH:MM-HH:MM"));
        assert!(parse_window("10:00").unwrap_err().contains("needs HH:MM-HH:MM"));
        assert!(parse_window("10:00-11:00 UTC extra").unwrap_err().contains("extra words"));
    }

    #[test]
    fn the_claim_holds_what_was_given_and_is_checked_like_the_filter() {
        assert_eq!(ConstraintsSpec::default().to_claim(false), Ok(None));
        assert!(ConstraintsSpec::default().is_empty());
        let spec = ConstraintsSpec {
            custom: vec![("tenant".into(), "acme".into()), ("tenant".into(), "beta".into())],
            ..ConstraintsSpec::default()
        }
        .with("ip", ["10.0.0.0/8"])
        .with("methods", ["GET"])
        .with("window", [parse_window("mon-fri 09:00-17:30 Europe/Berlin").unwrap()])
        .with("max_uses", [3]);
        assert!(!spec.is_empty());
        let claim = spec.to_claim(true).unwrap().unwrap();
        assert_eq!(claim["ip"], json!(["10.0.0.0/8"]));
        assert_eq!(claim["tenant"], json!(["acme", "beta"]));
        assert_eq!(claim["max_uses"], json!(3));
        assert!(spec.to_claim(false).unwrap_err().contains("max_uses"), "max_uses needs a jti");
        let bad = ConstraintsSpec::default().with("ip", ["010.0.0.0/8"]);
        assert!(bad.to_claim(false).unwrap_err().contains("ip: malformed"));
        let zone = ConstraintsSpec::default().with("window", [parse_window("09:00-17:00 Mars/Base").unwrap()]);
        assert!(zone.to_claim(false).unwrap_err().contains("unknown time zone"));
        let clash = ConstraintsSpec { custom: vec![("max_uses".into(), "x".into())], ..ConstraintsSpec::default() }
            .with("max_uses", [1]);
        assert!(clash.to_claim(true).unwrap_err().contains("clashes with a built-in constraint"));
        let twice = ConstraintsSpec::default().with("max_uses", [1, 2]);
        assert!(twice.to_claim(true).unwrap_err().contains("max_uses takes one value"));
        let unknown = ConstraintsSpec::default().with("ip_range", ["10.0.0.0/8"]);
        assert!(unknown.to_claim(true).unwrap_err().contains("not a built-in constraint"));
    }
}
