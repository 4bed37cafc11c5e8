//! The token's constraints claim (SPEC §3), compiled once per verified token.
//!
//! Must-understand: a key that is neither built-in nor a configured custom
//! constraint is remembered and refuses every request (`unknown_constraint`). A
//! known key with a value of the wrong shape makes the whole token
//! `malformed_constraint`. Lists mean "any of"; an empty list allows nothing; a
//! single string is a one-element list.
//!
//! The built-in kinds are one table, [`KINDS`]: each row names the claim key,
//! how its value compiles and is checked, and how `cjwt mint` writes it. A new
//! kind is its own module (parse, check, tests), one row here, and its SPEC §3
//! row; the configuration's reserved names and the minted claim follow the table.

pub mod custom;
pub mod hosts;
pub mod ip;
pub mod max_uses;
pub mod mcp;
pub mod methods;
pub mod paths;
pub mod region;
pub mod tz;
#[rustfmt::skip]
pub mod tzdb;
pub mod window;

use crate::constraints::max_uses::TokenUse;
use crate::reason::Reason;
use crate::request::view::RequestView;
use serde_json::Value;
use std::fmt;
use std::mem::{size_of, size_of_val};

/// A built-in constraint, compiled: its kind's check over the compiled value.
pub type Compiled = Box<dyn Check>;

/// One built-in kind of constraint: a row of [`KINDS`].
#[derive(Debug)]
pub struct Kind {
    /// The key in the constraints claim (and the name no custom constraint may take).
    pub name: &'static str,
    /// Compiles the claim value; the error is a short description for the log
    /// (never token content).
    pub parse: fn(&Value, &Token) -> Result<Compiled, String>,
    /// Checked after the custom constraints, last of all: the kind counts a use,
    /// so a request refused for any other reason uses nothing.
    pub counts_use: bool,
    /// Whether the kind keeps its meaning past the edge, so that a gateway
    /// copies it into the Txn-Token's `tctx` and a sidecar enforces it there
    /// (SPEC §14): the caller's address, region and time do; this hop's
    /// method, path and host do not, and a use is counted once, at the edge.
    pub downstream: bool,
    /// How `cjwt mint` writes the values given for this kind.
    pub mint: Mint,
    /// Whether a child value allows no request the parent value refuses
    /// (`within(parent, child)`, SPEC §16): a link of a delegation chain
    /// never widens a kind. A value that does not parse is not within.
    pub within: fn(&Value, &Value) -> bool,
}

/// How a minted claim value is made of the values given for a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mint {
    /// Every value given, as a list (left out when none is given).
    List,
    /// The one value given (left out when none is; more than one is an error).
    One,
}

/// The built-in kinds, in SPEC §3's check order: a token's constraints are
/// checked in this order (the custom constraints between the kinds that do not
/// count a use and those that do); the first failure decides.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "ip",
        parse: |v, _| compiled(ip::parse(v)?, |ranges, at| ip::check(ranges, at.view)),
        counts_use: false,
        downstream: true,
        mint: Mint::List,
        within: ip::within,
    },
    Kind {
        name: "methods",
        parse: |v, _| compiled(methods::parse(v)?, |list, at| methods::check(list, at.view)),
        counts_use: false,
        downstream: false,
        mint: Mint::List,
        within: methods::within,
    },
    Kind {
        name: "paths",
        parse: |v, _| compiled(paths::parse(v)?, |patterns, at| paths::check(patterns, at.view)),
        counts_use: false,
        downstream: false,
        mint: Mint::List,
        within: paths::within,
    },
    Kind {
        name: "hosts",
        parse: |v, _| compiled(hosts::parse(v)?, |patterns, at| hosts::check(patterns, at.view)),
        counts_use: false,
        downstream: false,
        mint: Mint::List,
        within: hosts::within,
    },
    Kind {
        name: "region",
        parse: |v, _| compiled(region::parse(v)?, |regions, at| region::check(regions, at.view)),
        counts_use: false,
        downstream: true,
        mint: Mint::List,
        within: region::within,
    },
    Kind {
        name: "window",
        parse: |v, _| compiled(window::parse(v)?, |windows, at| window::check(windows, at.now)),
        counts_use: false,
        downstream: true,
        mint: Mint::List,
        within: window::within,
    },
    Kind {
        name: "mcp",
        parse: |v, _| compiled(mcp::parse(v)?, |policy, at| mcp::check(policy, at.view)),
        counts_use: false,
        // The MCP request a hop carries is not the one a Txn-Token was issued for.
        downstream: false,
        mint: Mint::One,
        within: mcp::within,
    },
    Kind {
        name: "max_uses",
        parse: |v, token| {
            compiled(max_uses::parse(v, token)?, |limit, at| {
                let now = at.now;
                // On an MCP token only a tool call is a use (SPEC §15).
                if limit.tool_calls_only && !at.view.mcp().is_some_and(|r| r.is_tool_call()) {
                    return Ok(());
                }
                max_uses::check(limit.limit, at.uses(), now)
            })
        },
        counts_use: true,
        downstream: false,
        mint: Mint::One,
        within: max_uses::within,
    },
];

/// The built-in kind named `name`, if any.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// What a kind's parse may depend on besides the value.
#[derive(Clone, Copy, Debug)]
pub struct Token {
    /// Whether the token carries a string `jti`.
    pub has_jti: bool,
    /// Whether the constraints carry `mcp` (then `max_uses` counts tool calls only).
    pub has_mcp: bool,
}

/// What a constraint is checked against: the request, the token's use, the host clock.
pub struct At<'v, 'h, 't> {
    /// The request.
    pub view: &'v RequestView<'h>,
    /// The token whose uses are counted, and the store that counts them.
    pub token: TokenUse<'t>,
    /// The host clock, Unix seconds.
    pub now: i64,
}

impl At<'_, '_, '_> {
    /// The token's use, reborrowed for one check.
    pub fn uses(&mut self) -> TokenUse<'_> {
        let TokenUse { counter, issuer, jti, expires_at } = &mut self.token;
        TokenUse { counter: &mut **counter, issuer, jti: *jti, expires_at: *expires_at }
    }
}

/// One compiled constraint of a built-in kind. (No `Debug` bound: a vtable
/// would keep every kind's `Debug` code in the wasm build; [`Constraints`]
/// shows the kinds by name.)
pub trait Check {
    /// Holds, or the reason the request is refused.
    fn check(&self, at: &mut At<'_, '_, '_>) -> Result<(), Reason>;
    /// An upper estimate of the heap the compiled value holds (not counting itself).
    fn heap_bytes(&self) -> usize;
}

/// The heap a compiled value holds (an upper estimate, allocator overhead included).
pub trait Footprint {
    /// Bytes on the heap, not counting the value itself.
    fn heap_bytes(&self) -> usize;
}

impl Footprint for max_uses::Limit {
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl Footprint for u64 {
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl Footprint for String {
    fn heap_bytes(&self) -> usize {
        string_bytes(self)
    }
}

impl<T: Footprint> Footprint for Vec<T> {
    fn heap_bytes(&self) -> usize {
        self.iter().fold(vec_bytes(self), |sum, item| sum.saturating_add(item.heap_bytes()))
    }
}

/// A kind's compiled value and the kind's check.
struct WithCheck<T> {
    value: T,
    check: fn(&T, &mut At<'_, '_, '_>) -> Result<(), Reason>,
}

impl<T: Footprint> Check for WithCheck<T> {
    fn check(&self, at: &mut At<'_, '_, '_>) -> Result<(), Reason> {
        (self.check)(&self.value, at)
    }

    fn heap_bytes(&self) -> usize {
        self.value.heap_bytes()
    }
}

fn compiled<T: Footprint + 'static>(
    value: T,
    check: fn(&T, &mut At<'_, '_, '_>) -> Result<(), Reason>,
) -> Result<Compiled, String> {
    Ok(Box::new(WithCheck { value, check }))
}

/// Compiled constraints of one token: the built-in kinds it carries (each
/// parsed and checked by its own module, see [`KINDS`]), its custom
/// constraints, and the first key nobody understands.
#[derive(Default)]
pub struct Constraints {
    /// The first key the filter does not understand, if any.
    pub unknown: Option<String>,
    /// The built-in kinds the token carries, in [`KINDS`] order.
    builtin: Vec<(&'static Kind, Compiled)>,
    /// (custom constraint name, allowed values), in configuration order ([`custom`]).
    pub custom: Vec<(String, Vec<String>)>,
}

impl fmt::Debug for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraints")
            .field("unknown", &self.unknown)
            .field("builtin", &self.kinds().collect::<Vec<_>>())
            .field("custom", &self.custom)
            .finish()
    }
}

impl Constraints {
    /// Compiles the constraints object. `custom_names` are the configured custom
    /// constraint names; `has_jti` says whether the token carries a string `jti`.
    /// The error is a short description for the log (never token content).
    pub fn parse(value: &Value, custom_names: &[&str], has_jti: bool) -> Result<Constraints, String> {
        let obj = value.as_object().ok_or("the constraints claim is not an object")?;
        let token = Token { has_jti, has_mcp: obj.contains_key("mcp") };
        let mut c = Constraints::default();
        // One slot per kind, in table order: the kinds come out in check order
        // whatever the token's order (and without a sort).
        let mut slots: [Option<Compiled>; KINDS.len()] = [const { None }; KINDS.len()];
        for (key, v) in obj {
            if let Some((slot, kind)) = slots.iter_mut().zip(KINDS).find(|(_, k)| k.name == key) {
                *slot = Some((kind.parse)(v, &token)?);
            } else if custom_names.contains(&key.as_str()) {
                c.custom.push((key.to_owned(), custom::parse(key, v)?));
            } else if c.unknown.is_none() {
                c.unknown = Some(key.to_owned());
            }
        }
        c.builtin = KINDS.iter().zip(slots).filter_map(|(kind, slot)| slot.map(|compiled| (kind, compiled))).collect();
        // Custom constraints in configuration order, whatever the token's order.
        c.custom.sort_by_key(|(name, _)| custom_names.iter().position(|n| n == name));
        Ok(c)
    }

    /// Compiles the constraints a Txn-Token carries in `tctx.cnst` (SPEC §14):
    /// as [`Constraints::parse`], but a kind that has no meaning downstream
    /// ([`Kind::downstream`]: `methods`, `paths`, `hosts`, `mcp`, `max_uses`) refuses
    /// the whole token: a sidecar cannot keep a promise made about another
    /// hop, and a use is counted once, at the edge (decision 70).
    pub fn parse_downstream(value: &Value, custom_names: &[&str]) -> Result<Constraints, String> {
        let c = Constraints::parse(value, custom_names, false)?;
        match c.builtin.iter().find(|(kind, _)| !kind.downstream) {
            Some((kind, _)) => Err(format!("{}: has no meaning past the edge", kind.name)),
            None => Ok(c),
        }
    }

    /// The names of the built-in kinds the token carries, in check order.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builtin.iter().map(|(kind, _)| kind.name)
    }

    /// Checks every constraint against the request, in SPEC §3's table order:
    /// `unknown_constraint` first, then the [`KINDS`] that count no use (`ip`,
    /// `methods`, `paths`, `hosts`, `region`, `window`), the custom constraints,
    /// and the kinds that count a use (`max_uses`) last, so that a refused request
    /// uses nothing. The first failure decides.
    pub fn check(&self, view: &RequestView<'_>, token: TokenUse<'_>, now: i64) -> Result<(), Reason> {
        self.check_conditions(view, now)?;
        self.check_uses(view, token, now)
    }

    /// The checks of [`Constraints::check`] that count nothing: `unknown_constraint`,
    /// the kinds that count no use, the custom constraints. A delegation chain
    /// (SPEC §16) checks every link's conditions before any link counts a use.
    pub fn check_conditions(&self, view: &RequestView<'_>, now: i64) -> Result<(), Reason> {
        if self.unknown.is_some() {
            return Err(Reason::UnknownConstraint);
        }
        let mut uncounted = Uncounted;
        let token = TokenUse { counter: &mut uncounted, issuer: "", jti: None, expires_at: now };
        let mut at = At { view, token, now };
        for (_, c) in self.builtin.iter().filter(|(kind, _)| !kind.counts_use) {
            c.check(&mut at)?;
        }
        for (name, allowed) in &self.custom {
            custom::check(name, allowed, view)?;
        }
        Ok(())
    }

    /// The checks of [`Constraints::check`] that count a use (`max_uses`), after
    /// [`Constraints::check_conditions`] held.
    pub fn check_uses(&self, view: &RequestView<'_>, token: TokenUse<'_>, now: i64) -> Result<(), Reason> {
        let mut at = At { view, token, now };
        for (_, c) in self.builtin.iter().filter(|(kind, _)| kind.counts_use) {
            c.check(&mut at)?;
        }
        Ok(())
    }

    /// Whether a check of these constraints can count a use (a kind that counts
    /// uses is present).
    pub fn counts_use(&self) -> bool {
        self.builtin.iter().any(|(kind, _)| kind.counts_use)
    }

    /// An upper estimate of the heap these compiled constraints hold (for the
    /// verified-token cache's memory bound): every buffer at its capacity, plus
    /// allocator overhead per allocation.
    pub fn heap_bytes(&self) -> usize {
        // No built-in kind, no allocation (an estimate as before the table, for the
        // tokens most requests carry).
        let builtin = if self.builtin.capacity() == 0 { 0 } else { vec_bytes(&self.builtin) };
        let sum = self.unknown.as_ref().map_or(0, string_bytes).saturating_add(builtin);
        let sum = self.builtin.iter().fold(sum, |s, (_, c)| {
            s.saturating_add(size_of_val(&**c)).saturating_add(ALLOCATION_OVERHEAD).saturating_add(c.heap_bytes())
        });
        self.custom.iter().fold(sum.saturating_add(vec_bytes(&self.custom)), |s, (name, allowed)| {
            s.saturating_add(string_bytes(name)).saturating_add(allowed.heap_bytes())
        })
    }
}

/// The counter of the checks that count nothing: no use is ever asked of it.
struct Uncounted;

impl crate::usage::UsageCounter for Uncounted {
    fn try_use(&mut self, _: &crate::usage::UsageId, _: u64, _: i64, _: i64) -> Result<bool, crate::usage::UsageError> {
        Err(crate::usage::UsageError)
    }
}

/// Whether the constraints value `child` allows no request `parent` refuses,
/// kind by kind (SPEC §16): for each key of `child` that `parent` also has, the
/// kind's `within` (a built-in kind, [`Kind::within`]) or a subset of values (a
/// configured custom constraint). A key `parent` lacks adds a condition; a
/// key nobody understands cannot be decided and is refused (fail closed). The
/// error names the first key that widens.
pub fn within(parent: &serde_json::Map<String, Value>, child: &Value, custom_names: &[&str]) -> Result<(), String> {
    let child = child.as_object().ok_or("the constraints claim is not an object")?;
    for (key, value) in child {
        let known = kind(key).is_some() || custom_names.contains(&key.as_str());
        let narrower = match (kind(key), parent.get(key)) {
            _ if !known => false,
            (_, None) => true,
            (Some(kind), Some(p)) => (kind.within)(p, value),
            (None, Some(p)) => custom::within(key, p, value),
        };
        if !narrower {
            return Err(format!("{key}: widens its parent's"));
        }
    }
    Ok(())
}

const ALLOCATION_OVERHEAD: usize = 16;

fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity().saturating_mul(size_of::<T>()).saturating_add(ALLOCATION_OVERHEAD)
}

fn string_bytes(s: &String) -> usize {
    s.capacity().saturating_add(ALLOCATION_OVERHEAD)
}

/// A list of strings, or a single string as a one-element list.
fn strings<'a>(key: &str, v: &'a Value) -> Result<Vec<&'a str>, String> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) => {
            items.iter().map(|i| i.as_str().ok_or_else(|| format!("{key}: list items must be strings"))).collect()
        }
        _ => Err(format!("{key}: must be a string or a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Constraints, String> {
        Constraints::parse(&v, &["tenant"], true)
    }

    #[test]
    fn parses_every_builtin_and_custom_key() {
        let c = parse(json!({
            "max_uses": 3, "ip": ["10.0.0.0/8", "::1"], "methods": "GET", "paths": ["/v1/**"], "hosts": ["*.example.com"],
            "region": ["eu-west-1"], "window": [{"start": "09:00", "end": "17:00"}], "tenant": "acme",
            "mcp": {"tools": ["get_order"]}
        }))
        .unwrap();
        // Compiled in table order, whatever the token's order.
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(c.kinds().collect::<Vec<_>>(), names);
        assert_eq!(c.custom, vec![("tenant".to_string(), vec!["acme".to_string()])]);
        assert_eq!(c.unknown, None);
    }

    #[test]
    fn the_table_names_each_kind_once_and_counts_uses_last() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(KINDS.iter().position(|k| k.name == kind.name), Some(i), "{} twice", kind.name);
            assert_eq!(super::kind(kind.name).map(|k| k.name), Some(kind.name));
        }
        assert!(super::kind("tenant").is_none());
        // The kinds that count a use come last, so the table order is the check order.
        let first_counting = KINDS.iter().position(|k| k.counts_use).unwrap_or(KINDS.len());
        assert!(KINDS.iter().skip(first_counting).all(|k| k.counts_use));
    }

    #[test]
    fn unknown_keys_are_remembered_not_ignored() {
        let c = parse(json!({"ip_range": ["10.0.0.0/8"], "methods": ["GET"]})).unwrap();
        assert_eq!(c.unknown.as_deref(), Some("ip_range"));
    }

    #[test]
    fn empty_lists_stay_empty_and_allow_nothing() {
        use crate::request::view::test_host::TestHost;
        use crate::usage::MemoryCounter;
        let c = parse(json!({"ip": [], "methods": []})).unwrap();
        assert_eq!(c.kinds().collect::<Vec<_>>(), vec!["ip", "methods"]);
        let host = TestHost::new("GET", "/");
        assert_eq!(check(&c, &host, &mut MemoryCounter::default()), Err(Reason::Ip));
        let c = parse(json!({"methods": []})).unwrap();
        assert_eq!(check(&c, &host, &mut MemoryCounter::default()), Err(Reason::Method));
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            json!([]),
            json!("ip"),
            json!({"ip": ["010.0.0.0/8"]}),
            json!({"ip": 10}),
            json!({"methods": [1]}),
            json!({"paths": ["no-slash"]}),
            json!({"paths": ["/a/../b"]}),
            json!({"hosts": ["a*.b"]}),
            json!({"region": {"x": 1}}),
            json!({"window": "always"}),
            json!({"window": [{"start": "25:00", "end": "01:00"}]}),
            json!({"max_uses": 0}),
            json!({"max_uses": -1}),
            json!({"max_uses": 1.5}),
            json!({"max_uses": "3"}),
            json!({"tenant": 7}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn max_uses_needs_a_jti() {
        assert!(Constraints::parse(&json!({"max_uses": 1}), &[], false).is_err());
    }

    fn check(
        c: &Constraints,
        host: &crate::request::view::test_host::TestHost,
        counter: &mut crate::usage::MemoryCounter,
    ) -> Result<(), Reason> {
        use crate::config::{Attribute, ClientIpSource, RegionSource};
        let attributes = [("tenant".to_string(), Attribute::Header("x-tenant".into()))];
        let region = RegionSource::Header("x-region".into());
        let view = RequestView::new(host, ClientIpSource::Peer, Some(&region), &attributes);
        let token = TokenUse { counter, issuer: "https://idp", jti: Some("j"), expires_at: i64::MAX };
        c.check(&view, token, 1_796_032_800)
    }

    #[test]
    fn the_first_failing_constraint_in_table_order_decides() {
        use crate::request::view::test_host::TestHost;
        use crate::usage::MemoryCounter;
        let all_fail = json!({
            "zzz": 1, "ip": ["10.0.0.0/8"], "methods": ["POST"], "paths": ["/a"], "hosts": ["b.example"],
            "region": ["eu"], "window": {"start": "00:00", "end": "00:01"}, "tenant": ["acme"], "max_uses": 1,
            "mcp": {}
        });
        // Remove one failing key at a time, in table order: the next one decides.
        let order = [
            ("zzz", Reason::UnknownConstraint),
            ("ip", Reason::Ip),
            ("methods", Reason::Method),
            ("paths", Reason::Path),
            ("hosts", Reason::Host),
            ("region", Reason::Region),
            ("window", Reason::Window),
            ("mcp", Reason::McpNotParsed),
            ("tenant", Reason::Custom),
        ];
        let host = TestHost::new("GET", "/x").header("x-tenant", "other").header("x-region", "us");
        let mut value = all_fail;
        for (key, reason) in order {
            let c = parse(value.clone()).unwrap();
            let mut counter = MemoryCounter::default();
            assert_eq!(check(&c, &host, &mut counter), Err(reason), "with {key}");
            value.as_object_mut().unwrap().remove(key);
        }
        // Only max_uses is left: it holds once, and a refused request counted nothing.
        let c = parse(value).unwrap();
        let mut counter = MemoryCounter::default();
        assert_eq!(check(&c, &host, &mut counter), Ok(()));
        assert_eq!(check(&c, &host, &mut counter), Err(Reason::MaxUses));
    }

    #[test]
    fn a_refused_request_uses_nothing() {
        use crate::request::view::test_host::TestHost;
        use crate::usage::MemoryCounter;
        let c = parse(json!({"methods": ["GET"], "max_uses": 1})).unwrap();
        let mut counter = MemoryCounter::default();
        assert_eq!(check(&c, &TestHost::new("POST", "/"), &mut counter), Err(Reason::Method));
        assert_eq!(check(&c, &TestHost::new("GET", "/"), &mut counter), Ok(()));
        assert_eq!(check(&c, &TestHost::new("GET", "/"), &mut counter), Err(Reason::MaxUses));
    }

    #[test]
    fn on_an_mcp_token_max_uses_counts_tool_calls_only() {
        use crate::request::mcp::{IS_MCP_REQUEST, PROPERTY};
        use crate::request::view::test_host::TestHost;
        use crate::usage::MemoryCounter;
        let c = parse(json!({"mcp": {"tools": ["t"]}, "max_uses": 2})).unwrap();
        let mut counter = MemoryCounter::default();
        let rpc = |method: &str| {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": "t"}});
            TestHost::new("POST", "/mcp").property(&PROPERTY, &body.to_string()).property(&IS_MCP_REQUEST, "\u{1}")
        };
        // The session, notifications and listings use nothing; refused calls use nothing.
        for method in ["initialize", "notifications/initialized", "tools/list", "ping", "tools/call", "tools/call"] {
            assert_eq!(check(&c, &rpc(method), &mut counter), Ok(()), "{method}");
        }
        assert_eq!(check(&c, &rpc("resources/read"), &mut counter), Err(Reason::McpMethod));
        assert_eq!(check(&c, &rpc("tools/call"), &mut counter), Err(Reason::MaxUses));
        assert_eq!(
            check(&c, &rpc("tools/list"), &mut counter),
            Ok(()),
            "listing still works when the calls are used up"
        );
    }

    #[test]
    fn no_constraints_hold_for_every_request() {
        use crate::request::view::test_host::TestHost;
        use crate::usage::MemoryCounter;
        let host = TestHost::default();
        assert_eq!(check(&Constraints::default(), &host, &mut MemoryCounter::default()), Ok(()));
    }

    /// SPEC §16: every way a child value can widen its parent's, kind by kind
    /// (each `KINDS` row and the custom constraints), and the narrowings that
    /// must pass. A row is (kind, parent, child, within).
    #[test]
    fn every_way_to_widen_each_kind_is_refused() {
        let mon = json!({"days": ["mon"], "start": "09:00", "end": "17:00"});
        let table: Vec<(&str, Value, Value, bool)> = vec![
            // ip: a range inside, the same, a single address inside; wider, beside, another family.
            ("ip", json!(["10.0.0.0/8"]), json!(["10.1.0.0/16"]), true),
            ("ip", json!(["10.0.0.0/8"]), json!("10.0.0.0/8"), true),
            ("ip", json!(["10.0.0.0/8", "::1"]), json!(["10.2.3.4", "::1"]), true),
            ("ip", json!(["10.0.0.0/8"]), json!([]), true),
            ("ip", json!(["10.1.0.0/16"]), json!(["10.0.0.0/8"]), false),
            ("ip", json!(["10.0.0.0/8"]), json!(["11.0.0.0/8"]), false),
            ("ip", json!(["10.0.0.0/8"]), json!(["10.0.0.0/8", "192.168.0.1"]), false),
            ("ip", json!(["0.0.0.0/0"]), json!(["::/0"]), false),
            ("ip", json!(["10.0.0.0/8"]), json!(["10.0.0.1/8"]), false),
            // methods: a subset; an extra one, another case.
            ("methods", json!(["GET", "POST"]), json!(["GET"]), true),
            ("methods", json!(["GET"]), json!([]), true),
            ("methods", json!(["GET"]), json!(["GET", "POST"]), false),
            ("methods", json!(["GET"]), json!(["get"]), false),
            ("methods", json!([]), json!(["GET"]), false),
            // paths: narrower patterns; wider ones.
            ("paths", json!(["/orders/**"]), json!(["/orders/1"]), true),
            ("paths", json!(["/orders/**"]), json!(["/orders/*/items/**"]), true),
            ("paths", json!(["/orders/*"]), json!(["/orders/1"]), true),
            ("paths", json!(["/orders/*"]), json!(["/orders/*"]), true),
            ("paths", json!(["/orders/1"]), json!(["/orders/*"]), false),
            ("paths", json!(["/orders/*"]), json!(["/orders/**"]), false),
            ("paths", json!(["/orders/*"]), json!(["/orders/1/2"]), false),
            ("paths", json!(["/orders/**"]), json!(["/**"]), false),
            ("paths", json!(["/orders/**"]), json!(["/admin"]), false),
            ("paths", json!(["/a/b"]), json!(["/a"]), false),
            // hosts: an exact name under a wildcard; the reverse, another name.
            ("hosts", json!(["*.example.com"]), json!(["api.example.com"]), true),
            ("hosts", json!(["api.example.com"]), json!(["API.example.com."]), true),
            ("hosts", json!(["api.example.com"]), json!(["*.example.com"]), false),
            ("hosts", json!(["*.example.com"]), json!(["a.b.example.com"]), false),
            ("hosts", json!(["*.example.com"]), json!(["*.b.example.com"]), false),
            ("hosts", json!(["api.example.com"]), json!(["api.example.org"]), false),
            // region: a subset; another.
            ("region", json!(["eu", "us"]), json!(["eu"]), true),
            ("region", json!(["eu"]), json!(["eu", "us"]), false),
            // window: fewer days, shorter hours; more days, longer hours, another zone, across midnight.
            ("window", json!([mon]), json!([{"days": ["mon"], "start": "10:00", "end": "12:00"}]), true),
            ("window", json!([{"start": "09:00", "end": "17:00"}]), json!([mon]), true),
            ("window", json!([{"start": "22:00", "end": "06:00"}]), json!([{"start": "23:00", "end": "05:00"}]), true),
            ("window", json!([mon]), json!([{"days": ["mon", "tue"], "start": "09:00", "end": "17:00"}]), false),
            ("window", json!([mon]), json!([{"days": ["mon"], "start": "08:00", "end": "17:00"}]), false),
            ("window", json!([mon]), json!([{"days": ["mon"], "start": "09:00", "end": "18:00"}]), false),
            (
                "window",
                json!([mon]),
                json!([{"days": ["mon"], "start": "09:00", "end": "17:00", "tz": "Europe/Paris"}]),
                false,
            ),
            ("window", json!([mon]), json!([{"days": ["mon"], "start": "16:00", "end": "10:00"}]), false),
            ("window", json!([{"start": "22:00", "end": "06:00"}]), json!([{"start": "21:00", "end": "06:00"}]), false),
            // mcp: fewer tools, a prefix under a prefix, args restated narrower; every widening.
            ("mcp", json!({"tools": ["get_*"]}), json!({"tools": ["get_order"]}), true),
            ("mcp", json!({"tools": ["get_*"]}), json!({"tools": ["get_order_*"]}), true),
            ("mcp", json!({"tools": ["a"]}), json!({}), true),
            (
                "mcp",
                json!({"tools": ["a"], "args": {"a": {"id": ["1", "2"]}}}),
                json!({"tools": ["a"], "args": {"a": {"id": "1", "x": 3}}}),
                true,
            ),
            ("mcp", json!({"methods": ["resources/read"]}), json!({"methods": ["resources/read"]}), true),
            ("mcp", json!({"tools": ["get_order"]}), json!({"tools": ["get_*"]}), false),
            ("mcp", json!({"tools": ["get_*"]}), json!({"tools": ["ge*"]}), false),
            ("mcp", json!({"tools": ["a"]}), json!({"tools": ["a", "b"]}), false),
            ("mcp", json!({}), json!({"tools": ["a"]}), false),
            ("mcp", json!({"tools": ["a"]}), json!({"methods": ["resources/read"]}), false),
            ("mcp", json!({"tools": ["a"], "args": {"a": {"id": "1"}}}), json!({"tools": ["a"]}), false),
            (
                "mcp",
                json!({"tools": ["a"], "args": {"a": {"id": "1"}}}),
                json!({"tools": ["a"], "args": {"a": {"id": ["1", "2"]}}}),
                false,
            ),
            (
                "mcp",
                json!({"tools": ["a"], "args": {"a": {"id": "1", "x": 1}}}),
                json!({"tools": ["a"], "args": {"a": {"id": "1"}}}),
                false,
            ),
            (
                "mcp",
                json!({"tools": ["a*"], "args": {"a*": {"id": "1"}}}),
                json!({"tools": ["a*"], "args": {"ab": {"id": "1"}}}),
                false,
            ),
            ("mcp", json!({"tools": ["a"]}), json!({"tools": ["a"], "extra": 1}), false),
            // max_uses: fewer or as many; more, zero, not an integer.
            ("max_uses", json!(5), json!(5), true),
            ("max_uses", json!(5), json!(1), true),
            ("max_uses", json!(5), json!(6), false),
            ("max_uses", json!(5), json!(0), false),
            ("max_uses", json!(5), json!(2.5), false),
            ("max_uses", json!(5), json!("1"), false),
            // custom (`tenant`, configured): a subset; another value.
            ("tenant", json!(["acme", "globex"]), json!("acme"), true),
            ("tenant", json!(["acme"]), json!(["acme", "globex"]), false),
            ("tenant", json!(["acme"]), json!(7), false),
        ];
        let mut covered: Vec<&str> = Vec::new();
        for (name, parent, child, want) in &table {
            let parent_map: serde_json::Map<String, Value> = [(name.to_string(), parent.clone())].into_iter().collect();
            let got = within(&parent_map, &json!({ *name: child }), &["tenant"]).is_ok();
            assert_eq!(got, *want, "{name}: {parent} -> {child}");
            if !want {
                covered.push(name);
            }
        }
        // Every built-in kind has a widening row.
        for kind in KINDS {
            assert!(covered.contains(&kind.name), "no widening row for {}", kind.name);
        }
        // A kind the parent lacks is an added condition; a key nobody
        // understands cannot be decided and is refused.
        let empty = serde_json::Map::new();
        assert!(within(&empty, &json!({"methods": ["GET"], "tenant": "acme"}), &["tenant"]).is_ok());
        assert!(within(&empty, &json!({"geo": "eu"}), &["tenant"]).is_err());
        let parent: serde_json::Map<String, Value> = [("geo".to_string(), json!("eu"))].into_iter().collect();
        assert!(within(&parent, &json!({"geo": "eu"}), &[]).is_err());
        assert!(within(&empty, &json!([]), &[]).is_err());
    }

    #[test]
    fn the_heap_estimate_grows_with_every_kind() {
        let empty = Constraints::default().heap_bytes();
        let one = parse(json!({"ip": "10.0.0.0/8"})).unwrap().heap_bytes();
        let many = parse(json!({"ip": vec!["10.0.0.0/8"; 100]})).unwrap().heap_bytes();
        assert!(empty < one && one < many, "{empty} {one} {many}");
        assert!(many >= 100 * size_of::<ip::IpRange>());
        for value in [
            json!({"methods": ["GET"]}),
            json!({"paths": ["/a/b/c"]}),
            json!({"hosts": ["a.example.com"]}),
            json!({"region": ["eu"]}),
            json!({"window": {"start": "09:00", "end": "10:00"}}),
            json!({"tenant": ["acme"]}),
            json!({"unknown": 1}),
        ] {
            let c = parse(value.clone()).unwrap();
            assert!(c.heap_bytes() > empty, "{value}");
        }
        let long = parse(json!({"paths": [format!("/{}", "a".repeat(5000))]})).unwrap();
        assert!(long.heap_bytes() >= 5000);
    }
}
