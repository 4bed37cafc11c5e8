//! The one table of request cases, one table per refusal class, run at every
//! level: by the core's tests through [`super::verdict`] on a [`StaticHost`]
//! (`crates/cjwt-core/tests/cases.rs`), and through a real Envoy by each build
//! (`crates/cjwt-e2e/tests/envoy_e2e.rs`, `CJWT_BUILD=wasm` and `native`), which
//! also checks the status, the challenge and the counters the class implies.
//!
//! Each [`Table`] carries the plugin configuration its cases are decided under;
//! tokens are minted for a clock passed in ([`NOW`] for the static host, the real
//! time for Envoy). A case may also be allowed (`want: None`): the class's edges.

use super::{bearer, claims_at, config_json, key, StaticHost, NOW};
use crate::keys::algorithm::Algorithm;
use crate::mint::{mint, mint_raw};
use crate::reason::Reason;
use serde_json::{json, Value};

/// One request and the answer cjwt owes it.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the case shows (assertion messages name it).
    pub name: &'static str,
    /// The client's address: the peer the core sees; a 127.0.0.x a client binds.
    pub source: &'static str,
    /// The request method.
    pub method: &'static str,
    /// The request path (with its query, if any).
    pub path: &'static str,
    /// The request headers, in order (`authorization` included); sent to
    /// `api.example.com`.
    pub headers: Vec<(&'static str, String)>,
    /// The refusal, or `None` when the request is allowed.
    pub want: Option<Reason>,
}

/// A table of cases and the plugin configuration they are decided under.
#[derive(Debug, Clone)]
pub struct Table {
    /// The plugin configuration (as `envoy.yaml` carries it).
    pub config: Value,
    /// The cases, in order.
    pub cases: Vec<Case>,
}

impl Case {
    /// `GET /x` from 127.0.0.1 with `headers`.
    fn new(name: &'static str, headers: Vec<(&'static str, String)>, want: Option<Reason>) -> Case {
        Case { name, source: "127.0.0.1", method: "GET", path: "/x", headers, want }
    }

    /// `GET /x` from 127.0.0.1 with `Authorization: Bearer <token>`.
    fn token(name: &'static str, token: &str, want: Option<Reason>) -> Case {
        Case::new(name, vec![("authorization", bearer(token))], want)
    }

    /// From another client address.
    fn from(mut self, source: &'static str) -> Case {
        self.source = source;
        self
    }

    /// Another method and path.
    fn to(mut self, method: &'static str, path: &'static str) -> Case {
        (self.method, self.path) = (method, path);
        self
    }

    /// One more header (after the others).
    fn with(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_string()));
        self
    }

    /// The request as the core's static host: `method path` to `api.example.com`
    /// from `source` (port 40000), with `headers`, at `now`.
    pub fn host(&self, now: i64) -> StaticHost {
        let mut host = StaticHost::request(self.method, self.path).peer(&format!("{}:40000", self.source)).at(now);
        for (name, value) in &self.headers {
            host = host.header(name, value);
        }
        host
    }

    /// The headers as `(name, value)` string slices (for an HTTP client).
    pub fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }
}

impl Table {
    /// How many cases are refused for `reason`.
    pub fn count(&self, reason: Reason) -> usize {
        self.cases.iter().filter(|c| c.want == Some(reason)).count()
    }

    /// How many cases are allowed.
    pub fn allowed(&self) -> usize {
        self.cases.iter().filter(|c| c.want.is_none()).count()
    }
}

/// An EdDSA token (`k1`, the key of [`config_json`]) with the standard claims at
/// `now` merged with `extra`.
fn token_at(now: i64, extra: Value) -> String {
    mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now, extra))
}

/// `HH:MM` in UTC, `offset` seconds from `now`.
fn hhmm(now: i64, offset: i64) -> String {
    let t = (now + offset).rem_euclid(86_400);
    format!("{:02}:{:02}", t / 3600, (t % 3600) / 60)
}

/// The 401 classes (SPEC §4: no token, or a token that cannot be trusted), for
/// tokens minted at `now`, under [`config_json`]`({})` (the default
/// `max_token_bytes`).
pub fn untrusted(now: i64) -> Table {
    let k = key(Algorithm::EdDSA);
    let other = key(Algorithm::ES256);
    let c = claims_at(now, json!({})).to_string();
    let good = token_at(now, json!({}));
    // One character of the signature changed: in the middle, and the last one (its
    // unused low bits stay zero: 'A' and 'Q' both keep strict base64url).
    let mut middle = good.clone().into_bytes();
    let i = middle.len() - 10;
    middle[i] = if middle[i] == b'A' { b'B' } else { b'A' };
    let middle = String::from_utf8(middle).unwrap();
    let mut last = good.clone();
    last.pop();
    last.push(if good.ends_with('A') { 'Q' } else { 'A' });
    let cases = vec![
        Case::new("basic scheme", vec![("authorization", "Basic dXNlcjpwYXNz".into())], Some(Reason::MissingToken)),
        Case::new(
            "two headers",
            vec![("authorization", bearer(&good)), ("authorization", bearer(&good))],
            Some(Reason::MultipleTokens),
        ),
        Case::token("too large", &"a".repeat(9000), Some(Reason::TokenTooLarge)),
        Case::token("malformed", "a.b", Some(Reason::MalformedToken)),
        Case::token("garbage", "not-a-jwt", Some(Reason::MalformedToken)),
        Case::token("alg none", &mint_raw(k, r#"{"alg":"none"}"#, &c), Some(Reason::UnsupportedAlgorithm)),
        Case::token(
            "alg not of the provider",
            &mint(other, Some("k1"), &claims_at(now, json!({}))),
            Some(Reason::UnsupportedAlgorithm),
        ),
        Case::token(
            "crit",
            &mint_raw(k, r#"{"alg":"EdDSA","kid":"k1","crit":["x"]}"#, &c),
            Some(Reason::ForbiddenHeader),
        ),
        Case::token(
            "jku",
            &mint_raw(k, r#"{"alg":"EdDSA","jku":"http://169.254.169.254/"}"#, &c),
            Some(Reason::ForbiddenHeader),
        ),
        Case::token(
            "embedded jwk",
            &mint_raw(k, r#"{"alg":"EdDSA","kid":"k1","jwk":{}}"#, &c),
            Some(Reason::ForbiddenHeader),
        ),
        Case::token(
            "unknown issuer",
            &token_at(now, json!({"iss": "https://evil.example"})),
            Some(Reason::UnknownIssuer),
        ),
        Case::token("no issuer", &token_at(now, json!({"iss": null})), Some(Reason::UnknownIssuer)),
        Case::token("unknown kid", &mint(k, Some("nope"), &claims_at(now, json!({}))), Some(Reason::UnknownKey)),
        Case::token("bad signature, a middle character", &middle, Some(Reason::BadSignature)),
        Case::token("bad signature, the last character", &last, Some(Reason::BadSignature)),
        Case::token("no kid: the provider's keys are tried", &mint(k, None, &claims_at(now, json!({}))), None),
        Case::token("expired", &token_at(now, json!({"iat": now - 7200, "exp": now - 3600})), Some(Reason::Expired)),
        Case::token("not yet valid", &token_at(now, json!({"nbf": now + 3600})), Some(Reason::NotYetValid)),
        Case::token("missing exp", &token_at(now, json!({"exp": null})), Some(Reason::MissingExp)),
        Case::token("exp a string", &token_at(now, json!({"exp": "tomorrow"})), Some(Reason::MalformedToken)),
        Case::token("wrong audience", &token_at(now, json!({"aud": "other"})), Some(Reason::WrongAudience)),
        Case::token("audience in an array", &token_at(now, json!({"aud": ["x", "orders-api"]})), None),
        Case::token("no audience", &token_at(now, json!({"aud": null})), Some(Reason::WrongAudience)),
        Case::token("aud not a string", &token_at(now, json!({"aud": 5})), Some(Reason::MalformedToken)),
        Case::token(
            "malformed constraint",
            &token_at(now, json!({"cnst": {"ip": "010.0.0.0/8"}})),
            Some(Reason::MalformedConstraint),
        ),
        Case::token(
            "malformed constraint in a list",
            &token_at(now, json!({"cnst": {"ip": ["010.0.0.0/8"]}})),
            Some(Reason::MalformedConstraint),
        ),
        Case::token(
            "max_uses without jti",
            &token_at(now, json!({"cnst": {"max_uses": 1}})),
            Some(Reason::MalformedConstraint),
        ),
    ];
    Table { config: config_json(json!({})), cases }
}

/// The 403 class (SPEC §4: a trusted token that does not permit this request),
/// for tokens minted at `now`. `region` is the configuration's server-side region
/// source, which must say `eu-west-1` (node metadata in the wasm build, a value in
/// the native one, which cannot read node metadata).
pub fn forbidden(now: i64, region: Value) -> Table {
    let config = config_json(json!({
        "region": region,
        "custom_constraints": {"tenant": {"header": "x-tenant-id"}},
        "rules": [
            {"match": {"path": "/admin/**"}, "require": {"roles_any": ["admin"]}},
            {"match": {"path": "/write/**"}, "require": {"scopes_all": ["orders:write"]}},
            {"match": {"path": "/tenant/**"}, "require": {"claims": [{"claim": "tenant", "equals_header": "x-tenant-id"}]}}
        ]
    }));
    let inside = json!([{"start": hhmm(now, -3600), "end": hhmm(now, 3600)}]);
    let outside = json!([{"start": hhmm(now, 7200), "end": hhmm(now, 10800)}]);
    let t = |name: &'static str, extra: Value, want: Option<Reason>| Case::token(name, &token_at(now, extra), want);
    let cases = vec![
        t("ip inside", json!({"cnst": {"ip": ["127.0.0.2/32"]}}), None).from("127.0.0.2"),
        t("ip outside", json!({"cnst": {"ip": ["127.0.0.2/32"]}}), Some(Reason::Ip)).from("127.0.0.3"),
        t("method", json!({"cnst": {"methods": ["GET"]}}), Some(Reason::Method)).to("DELETE", "/x"),
        t("path", json!({"cnst": {"paths": ["/v1/**"]}}), Some(Reason::Path)).to("GET", "/other"),
        t("path ok", json!({"cnst": {"paths": ["/v1/**"]}}), None).to("GET", "/v1/a/b"),
        t("path not normalized", json!({"cnst": {"paths": ["/v1/**"]}}), Some(Reason::PathNotNormalized))
            .to("GET", "/v1/a;jsessionid=1"),
        t("host", json!({"cnst": {"hosts": ["other.example.com"]}}), Some(Reason::Host)),
        t("host ok", json!({"cnst": {"hosts": ["*.example.com"]}}), None),
        t("region ok", json!({"cnst": {"region": ["eu-west-1"]}}), None),
        t("region", json!({"cnst": {"region": ["us-east-1"]}}), Some(Reason::Region)),
        t("window ok", json!({"cnst": {"window": inside}}), None),
        t("window", json!({"cnst": {"window": outside}}), Some(Reason::Window)),
        t("custom ok", json!({"cnst": {"tenant": "acme"}}), None).with("x-tenant-id", "acme"),
        t("custom", json!({"cnst": {"tenant": "acme"}}), Some(Reason::Custom)).with("x-tenant-id", "evil"),
        t("unknown constraint", json!({"cnst": {"geo": "eu"}}), Some(Reason::UnknownConstraint)),
        t("role", json!({"roles": ["reader"]}), Some(Reason::Role)).to("GET", "/admin/x"),
        t("role ok", json!({"roles": ["admin"]}), None).to("GET", "/admin/x"),
        t("scope", json!({"scope": "orders:read"}), Some(Reason::Scope)).to("GET", "/write/x"),
        t("claim", json!({"tenant": "acme"}), Some(Reason::Claim)).to("GET", "/tenant/x").with("x-tenant-id", "evil"),
    ];
    Table { config, cases }
}

/// The 503 class (SPEC §4: the request cannot be decided now), for tokens minted
/// at `now`, under a configuration whose mesh-wide usage store (Envoy cluster
/// `etcd`) does not answer: a token with `max_uses` cannot be counted, one without
/// needs no store.
pub fn unavailable(now: i64) -> Table {
    let config =
        config_json(json!({"usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 1000}}}));
    let t = |name: &'static str, extra: Value, want: Option<Reason>| Case::token(name, &token_at(now, extra), want);
    let jti = |tag: &str| format!("{tag}-{}-{now}", std::process::id());
    let cases = vec![
        t(
            "max_uses, store silent",
            json!({"jti": jti("once"), "cnst": {"max_uses": 1}}),
            Some(Reason::UsageUnavailable),
        ),
        t(
            "max_uses 50, store silent",
            json!({"jti": jti("fifty"), "cnst": {"max_uses": 50}}),
            Some(Reason::UsageUnavailable),
        ),
        t("no max_uses: no store needed", json!({"jti": jti("free")}), None),
        t(
            "a 401 is decided first",
            json!({"jti": jti("late"), "exp": now - 3600, "cnst": {"max_uses": 1}}),
            Some(Reason::Expired),
        ),
    ];
    Table { config, cases }
}

/// Every table, as the core runs them (at [`NOW`], the region a configured value).
pub fn all_at_now() -> [(&'static str, Table); 3] {
    [("401", untrusted(NOW)), ("403", forbidden(NOW, json!({"value": "eu-west-1"}))), ("503", unavailable(NOW))]
}
