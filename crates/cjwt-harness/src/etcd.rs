//! A real etcd cluster on loopback for the integration tests: `n` members of
//! Debian's etcd 3.4 (`/usr/bin/etcd`, `make test` installs it), each on its own
//! 127.a.b.c address with etcd's fixed ports (client 2379, peer 2380), started
//! fresh (`--initial-cluster-state new`, a unique cluster token) on data dirs
//! under `.tmp/etcd-<pid>-<n>/`. The addresses are unique per test process (the
//! second and third octets come from the process id) and per member (the fourth
//! from a counter), and each is claimed ([`crate::claim`]) while its member runs,
//! so parallel tests in one binary and parallel test processes (`cargo nextest`)
//! never collide; an address whose ports are taken (a leftover etcd) is skipped.
//!
//! Members can be killed, stopped and restarted (on their data dir,
//! `--initial-cluster-state existing`); the cluster is read and written over
//! etcd's HTTP/JSON gateway (`/v3/...`, keys and values base64) with a small
//! blocking HTTP/1.1 client, and through `etcdctl`. Everything is killed and the
//! data dirs are removed on drop; if the test panics, the members' log tails are
//! printed first.
//!
//! Facts of etcd 3.4 with this configuration (heartbeat 100 ms, election timeout
//! 1 s) the tests can rely on:
//! - a write without quorum answers 503 `{"error":"etcdserver: request timed out",
//!   "code":14}` after 7 s (etcd's request timeout: 5 s + 2 × election timeout);
//!   a linearizable read without quorum blocks as long; `/health` answers 503
//!   `{"health":"false"}` at once;
//! - a timed-out write is not necessarily a failed write: proposed on a leader that
//!   lost its quorum, it stays in that member's log and is committed when a quorum
//!   returns;
//! - a new leader is elected about 1–2 s after the leader dies.
#![allow(dead_code)]

use crate::claim::Claim;
use crate::envoy::Response;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// etcd's client port, on every member's own address.
pub const CLIENT_PORT: u16 = 2379;
/// etcd's peer port, on every member's own address.
pub const PEER_PORT: u16 = 2380;

/// How long a cluster, or a restarted member, may take to become healthy.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Lines of each member's log printed when a test fails.
const LOG_TAIL: usize = 40;

/// The fourth octet of the next member address in this process.
static NEXT_HOST: AtomicUsize = AtomicUsize::new(1);
/// The number of the next cluster in this process (its directory name).
static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

/// The etcd server binary: `/usr/bin/etcd` (Debian's etcd-server), else `etcd` on `PATH`.
pub fn etcd_binary() -> PathBuf {
    find_binary("etcd", "etcd-server")
}

/// The etcd command line: `/usr/bin/etcdctl` (Debian's etcd-client), else `etcdctl` on `PATH`.
pub fn etcdctl_binary() -> PathBuf {
    find_binary("etcdctl", "etcd-client")
}

fn find_binary(name: &str, package: &str) -> PathBuf {
    let usr = Path::new("/usr/bin").join(name);
    if usr.is_file() {
        return usr;
    }
    let on_path =
        std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)).find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!("{name} is not installed (neither /usr/bin/{name} nor on PATH): `make test` installs it (`make etcd`: Debian package {package})")
    })
}

/// The second and third octets of this process's member addresses: from the
/// process id, never 127.0.x.x (the other tests' client addresses).
fn process_octets() -> (u32, u32) {
    let k = std::process::id() % (200 * 256);
    (20 + k / 256, k % 256)
}

/// A fresh loopback address, claimed for this process, whose client and peer
/// ports are free. (Process ids above 51,200 can share octets: the claim keeps
/// two such processes apart.)
fn allocate_address() -> (String, Claim) {
    let (a, b) = process_octets();
    loop {
        let host = NEXT_HOST.fetch_add(1, Ordering::SeqCst);
        assert!(host <= 254, "this test process has used all 254 etcd member addresses 127.{a}.{b}.x");
        let ip = format!("127.{a}.{b}.{host}");
        let Some(claim) = crate::claim::try_claim(&format!("etcd-{ip}")) else {
            continue;
        };
        if TcpListener::bind((ip.as_str(), CLIENT_PORT)).is_ok() && TcpListener::bind((ip.as_str(), PEER_PORT)).is_ok()
        {
            return (ip, claim);
        }
        eprintln!("etcd harness: {ip}:{CLIENT_PORT} or :{PEER_PORT} is taken (a leftover etcd?), skipping it");
    }
}

/// One blocking HTTP/1.1 request to `ip:port` (`connection: close`), the whole
/// exchange bounded by `timeout`. `Err` says what went wrong: refused, timed out, …
pub fn http(
    ip: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response, String> {
    http_with(ip, port, method, path, &[], body, timeout)
}

/// [`http`] with extra request headers.
pub fn http_with(
    ip: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = format!("{ip}:{port}").parse().map_err(|e| format!("{ip}:{port}: {e}"))?;
    let remaining = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{method} http://{addr}{path}: timed out after {timeout:?} ({what})"))
    };
    let mut stream = TcpStream::connect_timeout(&addr, remaining("connect")?)
        .map_err(|e| format!("{method} http://{addr}{path}: {e}"))?;
    let body = body.unwrap_or("");
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.set_write_timeout(Some(remaining("write")?)).map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).map_err(|e| format!("{method} http://{addr}{path}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        stream.set_read_timeout(Some(remaining("read")?)).map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                // Done at the end of the body, not at EOF: Envoy in front of etcd
                // delays its close after a local reply.
                if complete(&raw) {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("{method} http://{addr}{path}: timed out after {timeout:?} (read)"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{method} http://{addr}{path}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} http://{addr}{path}: incomplete answer {text:?}"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response { status, headers, body })
}

/// Whether `raw` holds a whole response: headers and `content-length` bytes, or
/// a chunked body's last chunk.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = raw.len() - end - 4;
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|l| body >= l) || (head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n"))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
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

/// The end of etcd's prefix range: `prefix` with its last byte below 0xff
/// incremented and what follows dropped; `"\0"` (every key) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Base64 (standard, padded) as the gateway's JSON carries keys and values.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str().map(|s| B64.decode(s).unwrap()).unwrap_or_default()
}

/// An int64/uint64 of the gateway's JSON: a decimal string, absent when zero.
fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        _ => 0,
    }
}

fn id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .filter(|id| *id != 0)
}

/// A key as the gateway returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: i64,
    pub lease: i64,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl Kv {
    fn from_json(kv: &Value) -> Kv {
        Kv {
            key: unb64(&kv["key"]),
            value: unb64(&kv["value"]),
            version: num(&kv["version"]),
            lease: num(&kv["lease"]),
            create_revision: num(&kv["create_revision"]),
            mod_revision: num(&kv["mod_revision"]),
        }
    }
}

struct Member {
    name: String,
    ip: String,
    /// This process's claim on `ip`.
    _claim: Claim,
    data: PathBuf,
    log: PathBuf,
    /// The etcd member id (from `/v3/cluster/member/list`).
    id: u64,
    child: Mutex<Option<Child>>,
}

/// A running etcd cluster; every member is killed and the data removed on drop.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    token: String,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts `members` etcd processes as one new cluster and waits (30 s at most)
    /// until every member answers `/health` with `{"health":"true"}`.
    pub fn start(members: usize) -> EtcdCluster {
        assert!(members > 0, "an etcd cluster needs a member");
        let binary = etcd_binary();
        let n = NEXT_CLUSTER.fetch_add(1, Ordering::SeqCst);
        let dir = crate::scratch(&format!("etcd-{}-{n}", std::process::id()));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let token = format!("cjwt-{}-{n}-{nanos}", std::process::id());
        let members: Vec<Member> = (0..members)
            .map(|i| {
                let (ip, claim) = allocate_address();
                (i, ip, claim)
            })
            .map(|(i, ip, _claim)| Member {
                name: format!("m{i}"),
                ip,
                _claim,
                data: dir.join(format!("m{i}")),
                log: dir.join(format!("m{i}.log")),
                id: 0,
                child: Mutex::new(None),
            })
            .collect();
        let initial_cluster =
            members.iter().map(|m| format!("{}=http://{}:{PEER_PORT}", m.name, m.ip)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members, dir, token, initial_cluster };
        for i in 0..cluster.members.len() {
            let child = cluster.spawn(&binary, i, "new");
            *cluster.members[i].child.lock().unwrap() = Some(child);
        }
        let deadline = Instant::now() + START_DEADLINE;
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i, deadline);
        }
        cluster.learn_ids();
        cluster
    }

    fn spawn(&self, binary: &Path, i: usize, state: &str) -> Child {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log).unwrap();
        let client = format!("http://{}:{CLIENT_PORT}", m.ip);
        let peer = format!("http://{}:{PEER_PORT}", m.ip);
        let mut command = Command::new(binary);
        // etcd reads every ETCD_* variable as a flag: none of the caller's may leak in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                command.env_remove(k);
            }
        }
        command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
    }

    /// Waits until member `i` answers `/health` with `{"health":"true"}`; panics
    /// with the members' log tails at `deadline` or if the process exits.
    fn wait_healthy(&self, i: usize, deadline: Instant) {
        let mut last = String::new();
        while Instant::now() < deadline {
            if !self.is_running(i) {
                panic!("etcd member {i} ({}) exited while starting\n{}", self.members[i].ip, self.log_tails());
            }
            match self.get(i, "/health", Duration::from_secs(2)) {
                Ok(a) if a.status == 200 && a.json()["health"] == "true" => return,
                Ok(a) => last = format!("{} {}", a.status, a.body.trim()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "etcd member {i} ({}) not healthy in time (last answer: {last})\n{}",
            self.members[i].ip,
            self.log_tails()
        );
    }

    fn learn_ids(&mut self) {
        let list = self.post_any("/v3/cluster/member/list", &json!({}), Duration::from_secs(5));
        let listed = list["members"].as_array().cloned().unwrap_or_default();
        for m in &mut self.members {
            let entry = listed.iter().find(|e| e["name"] == m.name.as_str());
            m.id = entry
                .and_then(|e| id(&e["ID"]))
                .unwrap_or_else(|| panic!("{} is not in the member list {list}", m.name));
        }
    }

    /// The number of members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The directory holding the members' data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// (ip, client port) of every member, in member order.
    pub fn endpoints(&self) -> Vec<(String, u16)> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// (ip, client port) of member `i`.
    pub fn endpoint(&self, i: usize) -> (String, u16) {
        (self.members[i].ip.clone(), CLIENT_PORT)
    }

    /// `http://ip:2379,…` of every member (etcdctl's `--endpoints`).
    pub fn client_urls(&self) -> String {
        self.members.iter().map(|m| format!("http://{}:{CLIENT_PORT}", m.ip)).collect::<Vec<_>>().join(",")
    }

    /// Member `i`'s etcd id.
    pub fn member_id(&self, i: usize) -> u64 {
        self.members[i].id
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let log = self.log(i);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
            out.push_str(&format!("---- etcd member {i} ({}) log tail, {} ----\n{tail}\n", m.ip, m.log.display()));
        }
        out
    }

    /// Whether member `i`'s process is alive.
    pub fn is_running(&self, i: usize) -> bool {
        let mut child = self.members[i].child.lock().unwrap();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *child = None;
                false
            }
            None => false,
        }
    }

    /// The members whose process is alive.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|i| self.is_running(*i)).collect()
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops member `i` (SIGTERM, SIGKILL after 10 s) and waits for it.
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.members[i].child.lock().unwrap().take() else {
            return;
        };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped member `i` again on its data dir and waits until it
    /// answers `/version`, and, when a quorum of members is running, until it is
    /// healthy (it has rejoined and can commit).
    pub fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "etcd member {i} is still running");
        let child = self.spawn(&etcd_binary(), i, "existing");
        *self.members[i].child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if !self.is_running(i) {
                panic!("etcd member {i} exited while restarting\n{}", self.log_tails());
            }
            if self.get(i, "/version", Duration::from_secs(2)).is_ok_and(|a| a.status == 200) {
                break;
            }
            if Instant::now() > deadline {
                panic!("etcd member {i} did not answer /version in time after a restart\n{}", self.log_tails());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.running().len() > self.members.len() / 2 {
            self.wait_healthy(i, deadline);
        }
    }

    /// One request to member `i`'s client port.
    pub fn request(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<Response, String> {
        http(&self.members[i].ip, CLIENT_PORT, method, path, body, timeout)
    }

    fn get(&self, i: usize, path: &str, timeout: Duration) -> Result<Response, String> {
        self.request(i, "GET", path, None, timeout)
    }

    /// A gateway call (`/v3/...`) on member `i`: its JSON answer if 200, else
    /// the status and body (or the transport error) as `Err`.
    pub fn post(&self, i: usize, path: &str, body: &Value, timeout: Duration) -> Result<Value, String> {
        let a = self.request(i, "POST", path, Some(&body.to_string()), timeout)?;
        if a.status == 200 {
            Ok(a.json())
        } else {
            Err(format!("{} {}", a.status, a.body.trim()))
        }
    }

    /// A gateway call on the first running member that answers 200; panics with
    /// every member's error otherwise.
    pub fn post_any(&self, path: &str, body: &Value, timeout: Duration) -> Value {
        let mut errors = Vec::new();
        for i in self.running() {
            match self.post(i, path, body, timeout) {
                Ok(v) => return v,
                Err(e) => errors.push(format!("member {i}: {e}")),
            }
        }
        panic!("POST {path} {body}: no etcd member answered: {errors:?}\n{}", self.log_tails());
    }

    /// Member `i`'s `/v3/maintenance/status`, `None` if it does not answer.
    pub fn status(&self, i: usize) -> Option<Value> {
        self.post(i, "/v3/maintenance/status", &json!({}), Duration::from_secs(1)).ok()
    }

    /// The current leader: a member that a running member names as leader and
    /// that itself answers it is the leader (a member that has not yet noticed
    /// its leader's death still names it). `None` while there is none.
    pub fn leader(&self) -> Option<usize> {
        for i in self.running() {
            let Some(leader) = self.status(i).and_then(|s| id(&s["leader"])) else {
                continue;
            };
            let Some(l) = self.members.iter().position(|m| m.id == leader) else {
                continue;
            };
            let confirmed = self
                .status(l)
                .is_some_and(|s| id(&s["header"]["member_id"]) == Some(leader) && id(&s["leader"]) == Some(leader));
            if confirmed {
                return Some(l);
            }
        }
        None
    }

    /// Waits for a leader; panics after `timeout`.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            if Instant::now() > deadline {
                panic!("no etcd leader within {timeout:?}\n{}", self.log_tails());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn range_body(prefix: &[u8], serializable: bool) -> Value {
        // Every key: from "\0" (an empty key is refused) to "\0" (no end).
        let key = if prefix.is_empty() { b"\0" } else { prefix };
        json!({"key": b64(key), "range_end": b64(&prefix_end(prefix)), "serializable": serializable})
    }

    fn kvs(answer: &Value) -> Vec<Kv> {
        answer["kvs"].as_array().map(|kvs| kvs.iter().map(Kv::from_json).collect()).unwrap_or_default()
    }

    /// Every key under `prefix` with its version and lease (0: none): a
    /// linearizable range read on the first running member that answers.
    pub fn keys_under(&self, prefix: &[u8]) -> Vec<(Vec<u8>, i64, i64)> {
        self.range(prefix).into_iter().map(|kv| (kv.key, kv.version, kv.lease)).collect()
    }

    /// Every key under `prefix`, in full: a linearizable range read on the first
    /// running member that answers.
    pub fn range(&self, prefix: &[u8]) -> Vec<Kv> {
        Self::kvs(&self.post_any("/v3/kv/range", &Self::range_body(prefix, false), Duration::from_secs(10)))
    }

    /// Every key under `prefix`, read on member `i`: linearizable (what the cluster
    /// has committed: needs a quorum), or serializable (what member `i` itself has
    /// applied: answers without quorum or leader).
    pub fn range_on(&self, i: usize, prefix: &[u8], serializable: bool) -> Result<Vec<Kv>, String> {
        let answer = self.post(i, "/v3/kv/range", &Self::range_body(prefix, serializable), Duration::from_secs(10))?;
        Ok(Self::kvs(&answer))
    }

    /// The value of `key` (linearizable read).
    pub fn get_value(&self, key: &[u8]) -> Option<Vec<u8>> {
        let answer = self.post_any("/v3/kv/range", &json!({"key": b64(key)}), Duration::from_secs(10));
        Self::kvs(&answer).into_iter().next().map(|kv| kv.value)
    }

    /// Writes `key` = `value` through member `i`; the new revision, or etcd's
    /// error answer (`503 {"error":"etcdserver: request timed out",…}` without
    /// quorum) or the client's timeout as `Err`.
    pub fn try_put(&self, i: usize, key: &[u8], value: &[u8], timeout: Duration) -> Result<i64, String> {
        let answer = self.post(i, "/v3/kv/put", &json!({"key": b64(key), "value": b64(value)}), timeout)?;
        Ok(num(&answer["header"]["revision"]))
    }

    /// Writes `key` = `value` through the leader (or the first running member
    /// while there is none) and returns the new revision; panics on failure.
    pub fn put(&self, key: &[u8], value: &[u8]) -> i64 {
        let i = self.leader().or_else(|| self.running().first().copied()).expect("no etcd member is running");
        self.try_put(i, key, value, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("put {:?} through member {i}: {e}", String::from_utf8_lossy(key)))
    }

    /// Grants a lease of `ttl_seconds`; its id.
    pub fn grant_lease(&self, ttl_seconds: i64) -> i64 {
        let answer =
            self.post_any("/v3/lease/grant", &json!({"TTL": ttl_seconds.to_string()}), Duration::from_secs(10));
        let lease = num(&answer["ID"]);
        assert!(lease != 0, "no lease granted: {answer}");
        lease
    }

    /// Writes `key` = `value` attached to `lease` (like [`EtcdCluster::put`]).
    pub fn put_with_lease(&self, key: &[u8], value: &[u8], lease: i64) -> i64 {
        let body = json!({"key": b64(key), "value": b64(value), "lease": lease.to_string()});
        let answer = self.post_any("/v3/kv/put", &body, Duration::from_secs(10));
        num(&answer["header"]["revision"])
    }

    /// Runs `etcdctl --endpoints=<every member> <args>` (API v3); its stdout, or a
    /// panic with its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let mut command = Command::new(etcdctl_binary());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL") {
                command.env_remove(k);
            }
        }
        let out = command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_urls()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl: {e}"));
        if !out.status.success() {
            panic!("etcdctl {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8(out.stdout).unwrap()
    }

    /// An Envoy cluster `name` (a `static_resources.clusters` item, indented like
    /// [`crate::envoy::cluster`]) with every member's client address. Envoy leaves
    /// out a dead member within a second: active health checks on `/health` every
    /// 0.5 s, one failure making it unhealthy (503 `{"health":"false"}`, a member
    /// without quorum, counts), and outlier detection ejecting it at its first
    /// locally originated failure (connect refused, reset, timeout) for 1 s at a
    /// time (any number of members; etcd's own 5xx answers do not eject). The
    /// panic threshold is 0: when no member is healthy, Envoy fails the request at
    /// once instead of trying them all.
    pub fn envoy_cluster(&self, name: &str) -> String {
        envoy_cluster(name, &self.client_endpoints())
    }

    /// The same cluster over HTTP/1.1, for etcd's JSON gateway
    /// (`usage_store.etcd.api: "json"`): etcd's client port sends HTTP/2 to
    /// its gRPC server and HTTP/1.1 to the gateway.
    pub fn envoy_cluster_json(&self, name: &str) -> String {
        envoy_cluster_json(name, &self.client_endpoints())
    }

    fn client_endpoints(&self) -> Vec<(String, u16)> {
        self.members.iter().map(|m| (m.ip.clone(), CLIENT_PORT)).collect()
    }
}

/// The Envoy cluster `name` of etcd members at `endpoints` (ip, client port),
/// over HTTP/2 for etcd's gRPC API (the default `usage_store.etcd.api`): see
/// [`EtcdCluster::envoy_cluster`].
pub fn envoy_cluster(name: &str, endpoints: &[(String, u16)]) -> String {
    let mut yaml = envoy_cluster_json(name, endpoints);
    yaml.push_str(concat!(
        "    typed_extension_protocol_options:\n",
        "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n",
        "        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n",
        "        explicit_http_config:\n",
        "          http2_protocol_options: {}\n",
    ));
    yaml
}

/// The cluster of [`envoy_cluster`] over HTTP/1.1, for etcd's JSON gateway.
/// Its health check is HTTP/1.1 `GET /health` either way.
pub fn envoy_cluster_json(name: &str, endpoints: &[(String, u16)]) -> String {
    let mut yaml = format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 0.25s\n    lb_policy: ROUND_ROBIN\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n"
    );
    for (ip, port) in endpoints {
        yaml.push_str(&format!(
            "        - endpoint:\n            address:\n              socket_address: {{ address: {ip}, port_value: {port} }}\n"
        ));
    }
    yaml.push_str(concat!(
        "    health_checks:\n",
        "    - timeout: 0.25s\n",
        "      interval: 0.5s\n",
        "      no_traffic_interval: 0.5s\n",
        "      unhealthy_threshold: 1\n",
        "      healthy_threshold: 1\n",
        "      http_health_check:\n",
        "        path: /health\n",
        "    outlier_detection:\n",
        "      split_external_local_origin_errors: true\n",
        "      consecutive_local_origin_failure: 1\n",
        "      enforcing_consecutive_local_origin_failure: 100\n",
        "      enforcing_consecutive_5xx: 0\n",
        "      interval: 0.5s\n",
        "      base_ejection_time: 1s\n",
        "      max_ejection_percent: 100\n",
        "    common_lb_config:\n",
        "      healthy_panic_threshold: { value: 0 }\n",
    ));
    yaml
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &self.members {
            if let Ok(mut child) = m.child.lock() {
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
