//! The shipped observability files against a real Prometheus (Debian's package,
//! `make prometheus`) scraping a real Envoy with cjwt (CJWT_BUILD=wasm|native)
//! through Envoy's admin `/stats/prometheus`, with the scrape job of
//! deploy/observability/prometheus.yaml (its metric renaming included): traffic
//! allowed and refused for several reasons, max_uses counted in a real etcd, a
//! failing remote key-set fetch; then every query of the Grafana dashboard and
//! every alert expression is run through Prometheus's HTTP API and its answer
//! checked, and every metric name they use must be one Prometheus has.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::keys::algorithm::Algorithm;
use cjwt_core::mint::mint;
use cjwt_harness::envoy::{admin_get, cluster, send, Envoy, JwksServer, Options};
use cjwt_harness::etcd::EtcdCluster;
use cjwt_harness::said::wait_until;
use cjwt_harness::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const SCRAPE: &str = "deploy/observability/prometheus.yaml";
const RULES: &str = "deploy/observability/cjwt-alerts.yaml";
const DASHBOARD: &str = "deploy/observability/cjwt-dashboard.json";

fn binary(name: &str) -> PathBuf {
    let usr = Path::new("/usr/bin").join(name);
    if usr.exists() {
        return usr;
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.exists()))
        .unwrap_or_else(|| panic!("{name} not found: `make prometheus` installs it (Debian package prometheus)"))
}

/// A Prometheus on a free loopback port, its data in a directory under the system
/// temp dir; killed and the directory removed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    /// This process's claim on `port` (concurrent test processes pick others).
    _claim: cjwt_harness::claim::Claim,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with the shipped scrape job aimed at `admin` (scraping and
    /// evaluating every second) and the shipped rules.
    fn start(admin: u16) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("cjwt-prometheus-{}", unique_jti("p")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(root().join(SCRAPE)).unwrap()).unwrap();
        config["global"]["scrape_interval"] = "1s".into();
        config["global"]["evaluation_interval"] = "1s".into();
        config["rule_files"] = json!([root().join(RULES).canonicalize().unwrap()]);
        config["scrape_configs"][0]["static_configs"] = json!([{"targets": [format!("127.0.0.1:{admin}")]}]);
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, serde_yaml::to_string(&config).unwrap()).unwrap();
        let (port, claim) = cjwt_harness::claim::port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary("prometheus"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = Prometheus { child, port, _claim: claim, dir };
        wait_until("Prometheus ready", Duration::from_secs(30), || admin_get(p.port, "/-/ready").0 == 200);
        p
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = admin_get(self.port, path);
        assert_eq!(status, 200, "{path}: {body}\n{}", self.log());
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{path}: {body}");
        v["data"].clone()
    }

    /// An instant query: the result vector.
    fn query(&self, q: &str) -> Vec<Value> {
        let data = self.get(&format!("/api/v1/query?query={}", encode(q)));
        assert_eq!(data["resultType"], "vector", "{q}");
        data["result"].as_array().unwrap().clone()
    }

    /// The one value of `q` (NaN when the result is empty).
    fn value(&self, q: &str) -> f64 {
        let r = self.query(q);
        r.first().map_or(f64::NAN, |s| s["value"][1].as_str().unwrap().parse().unwrap())
    }

    fn names(&self) -> BTreeSet<String> {
        self.get("/api/v1/label/__name__/values")
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Metric names a PromQL expression uses (cjwt's and Envoy's; label names skipped).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if word_start && (expr[i..].starts_with("cjwt_") || expr[i..].starts_with("envoy_")) {
            let end = expr[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(expr.len(), |e| i + e);
            // A label name (`envoy_cluster_name="…"`) is not a metric.
            let next = expr[end..].trim_start().chars().next();
            if !matches!(next, Some('=' | '!')) {
                out.insert(expr[i..end].to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Every (panel title, expression) of the dashboard, its variables replaced by
/// their shipped defaults.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(root().join(DASHBOARD)).unwrap()).unwrap();
    let vars: Vec<(String, String)> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] != "datasource")
        .map(|v| (format!("${}", v["name"].as_str().unwrap()), v["current"]["value"].as_str().unwrap().to_string()))
        .collect();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        assert_eq!(p["datasource"]["type"], "prometheus");
        for t in p["targets"].as_array().unwrap() {
            let mut expr = t["expr"].as_str().unwrap().to_string();
            for (name, value) in &vars {
                expr = expr.replace(name, value);
            }
            assert!(!expr.contains('$'), "an unknown variable in {expr}");
            out.push((p["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

fn alert_rules() -> Vec<(String, String)> {
    let rules: Value = serde_yaml::from_str(&std::fs::read_to_string(root().join(RULES)).unwrap()).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r["expr"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_config() {
    for (what, file) in [("rules", RULES), ("config", SCRAPE)] {
        let out = Command::new(binary("promtool")).args(["check", what]).arg(root().join(file)).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool check {what} {file}:\n{text}");
        assert!(text.contains("SUCCESS"), "{text}");
    }
    assert_eq!(alert_rules().len(), 5);
}

const REMOTE_ISS: &str = "https://remote.example.com";

fn said(envoy: &Envoy, token: Option<&str>) -> (u16, Option<String>) {
    let headers: Vec<(&str, &str)> = token.map(|t| vec![("authorization", t)]).unwrap_or_default();
    let r = send("127.0.0.1", envoy.port, "GET", "/x", &headers);
    (r.status, r.reason())
}

#[test]
fn every_dashboard_query_and_alert_answers_from_a_real_prometheus() {
    let etcd = EtcdCluster::start(1);
    // The key set of a second provider, never fetched successfully.
    let idp = JwksServer::start("{}");
    idp.set(500, "down");
    let mut plugin = config_json(json!({
        "usage_store": {"etcd": {"cluster": "etcd", "authority": "etcd", "timeout_ms": 2000}}
    }));
    plugin["providers"].as_array_mut().unwrap().push(json!({
        "name": "remote", "issuer": REMOTE_ISS,
        "remote_jwks": {"cluster": "idp", "path": "/jwks.json", "timeout_ms": 500, "min_refetch_seconds": 0}
    }));
    let clusters = format!("{}{}", etcd.envoy_cluster("etcd"), cluster("idp", idp.port));
    let envoy = Envoy::start(&plugin, Options { clusters, ..Options::default() });
    wait_until("etcd healthy in Envoy", Duration::from_secs(15), || {
        let (_, c) = envoy.admin_get("/clusters");
        c.lines().any(|l| l.starts_with("etcd::") && l.contains("::health_flags::healthy"))
    });

    let prom = Prometheus::start(envoy.admin);
    // Two scrapes of the renamed counters before any traffic, so every increase is seen.
    wait_until("two scrapes of cjwt_allowed", Duration::from_secs(30), || {
        prom.value("count_over_time(cjwt_allowed[1m])") >= 2.0
    });
    assert!(
        prom.query("{__name__=~\"envoy_cjwt_.+|cjwt_(dry_run_)?denied_.+\", __name__!~\".+_by_reason\"}").is_empty(),
        "the scrape job renames them"
    );

    // Traffic: allowed (one token several times: cache hits), max_uses through etcd,
    // and refusals for several reasons.
    let good = bearer_now(json!({}));
    for _ in 0..5 {
        assert_eq!(said(&envoy, Some(&good)), (200, None));
    }
    let once = use_token(&unique_jti("prom"), Some(1), 120);
    assert_eq!(said(&envoy, Some(&once)), (200, None));
    assert_eq!(said(&envoy, Some(&once)), (403, Some("max_uses".into())));
    for _ in 0..3 {
        assert_eq!(said(&envoy, None), (401, Some("missing_token".into())));
    }
    for i in 0..25 {
        let mut t = bearer_now(json!({"jti": format!("forged-{i}")})).into_bytes();
        let at = t.len() - 10;
        t[at] = if t[at] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(t).unwrap();
        assert_eq!(said(&envoy, Some(&t)), (401, Some("bad_signature".into())), "forged {i}");
    }
    let expired =
        format!("Bearer {}", mint(key(Algorithm::EdDSA), Some("k1"), &claims_at(now() - 7200, json!({"jti": "late"}))));
    assert_eq!(said(&envoy, Some(&expired)).1.as_deref(), Some("expired"));
    // A token of the remote provider: its key set is fetched (and fails) now.
    let fetches = envoy.stat("cjwt.jwks.fetch_failed");
    let (status, reason) = said(&envoy, Some(&bearer_now(json!({"iss": REMOTE_ISS}))));
    assert_eq!(status, 401, "{reason:?}");
    wait_until("a failed key-set fetch", Duration::from_secs(10), || envoy.stat("cjwt.jwks.fetch_failed") > fetches);
    assert!(envoy.stat("cjwt.usage_store.ok") >= 2);

    // Prometheus has seen it all (Envoy merges histograms every 5 s).
    wait_until("the traffic scraped", Duration::from_secs(40), || {
        prom.value("sum(cjwt_denied_by_reason{reason=\"bad_signature\"})") == 25.0
            && prom.value("sum(cjwt_jwks_fetch_failed)") >= 1.0
            && !prom.query("envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"etcd\"}").is_empty()
    });
    // Envoy creates a cluster's histogram at its first use: more uses now, so that the
    // latency quantiles have a rate to work on.
    for _ in 0..3 {
        assert_eq!(said(&envoy, Some(&use_token(&unique_jti("prom"), Some(5), 120))), (200, None));
    }
    wait_until("usage-store latency scraped", Duration::from_secs(40), || {
        prom.value("sum(rate(envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"etcd\"}[1m]))") > 0.0
    });
    let names = prom.names();

    // Every dashboard query answers, over metric names Prometheus has.
    let queries = dashboard_queries();
    assert_eq!(queries.len(), 14);
    for (title, expr) in &queries {
        for n in metric_names(expr) {
            assert!(names.contains(&n), "{title}: {expr}: no metric {n} in Prometheus");
        }
        assert!(!prom.query(expr).is_empty(), "{title}: {expr}: no series");
    }
    let positive = |q: &str| {
        let v = prom.value(q);
        assert!(v > 0.0, "{q} = {v}");
    };
    let find = |title: &str, legend_part: &str| -> String {
        queries.iter().find(|(t, e)| t == title && e.contains(legend_part)).unwrap().1.clone()
    };
    positive(&find("Requests allowed and denied", "cjwt_allowed"));
    positive(&find("Requests allowed and denied", "cjwt_denied["));
    let by_reason = prom.query(&find("Denied by reason", "cjwt_denied_by_reason"));
    for reason in ["bad_signature", "missing_token", "expired", "max_uses"] {
        let s = by_reason.iter().find(|s| s["metric"]["reason"] == reason).unwrap_or_else(|| panic!("{reason}"));
        assert!(s["value"][1].as_str().unwrap().parse::<f64>().unwrap() > 0.0, "{reason}: {s}");
    }
    assert!(by_reason.len() >= 40, "every reason has its series: {}", by_reason.len());
    positive(&find("Verified-token cache hit rate", "cjwt_cache_hit"));
    positive(&find("Key-set (JWKS) fetches", "cjwt_jwks_fetch_failed"));
    positive(&find("Usage store (max_uses) calls", "cjwt_usage_store_ok"));
    let p99 = prom.value(&find("Usage store latency", "0.99"));
    assert!(p99.is_finite() && p99 > 0.0, "usage store p99 {p99} ms");
    assert_eq!(prom.value(&find("DPoP proof replays", "dpop_replay")), 0.0);

    // Every alert expression: the ones this traffic should fire return series, the
    // others none; all over metric names Prometheus has.
    let fire: BTreeSet<&str> = ["CjwtKeysStale", "CjwtBadSignatureSpike"].into();
    for (alert, expr) in alert_rules() {
        for n in metric_names(&expr) {
            assert!(names.contains(&n), "{alert}: no metric {n} in Prometheus");
        }
        let r = prom.query(&expr);
        assert_eq!(!r.is_empty(), fire.contains(alert.as_str()), "{alert}: {expr} -> {r:?}");
    }
    // Prometheus loaded the rule file and evaluates every rule without error.
    let groups = prom.get("/api/v1/rules");
    let rules: Vec<Value> =
        groups["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
    assert_eq!(rules.len(), 5);
    wait_until("every rule evaluated", Duration::from_secs(10), || {
        let g = prom.get("/api/v1/rules");
        g["groups"][0]["rules"].as_array().unwrap().iter().all(|r| r["health"] == "ok")
    });
}
