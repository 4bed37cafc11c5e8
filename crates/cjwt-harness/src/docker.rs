//! Docker for the tests: networks, containers, compose projects and images that
//! remove themselves when dropped — also when the test panics, after printing the
//! tails of the containers' logs. Nothing is ever pulled (`--pull never`): the
//! images are built locally (`make envoy-image`, `make etcd-image`), and a missing
//! image or a missing engine fails the test at once, saying what to run. A Docker
//! suite never skips.
//!
//! Everything this module creates is named `cjwt-test-<pid>-<n>-…` (the test
//! process id and a counter), so that a leftover of a killed test run is easy to
//! find (`docker ps -a`, `docker network ls`, `docker images`) and [`leftovers`]
//! can prove a test removed what it created.
//!
//! Networks are user-defined bridges with a fixed subnet `172.30.X.0/24` (`X` from
//! the process id and the counter; the next one when Docker answers "Pool
//! overlaps"), so containers get the addresses the test chose ([`Network::ip`]).
//! On Linux the host reaches those addresses directly (it is the bridge's gateway,
//! `.1`), without publishing ports.
//!
//! [`EtcdContainers`] is an etcd cluster of `cjwt-etcd` containers on such a
//! network; its members can be stopped, started, killed and cut off the network.
#![allow(dead_code)]

use crate::envoy::repo_root;
use crate::envoy::Response;
use crate::etcd::{b64, http};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The prefix of every container, network, compose project and image the tests create.
pub const PREFIX: &str = "cjwt-test-";
/// Lines of a container's log printed when a test fails.
const LOG_TAIL: usize = 40;
/// etcd's client port in every member container.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port in every member container.
pub const ETCD_PEER_PORT: u16 = 2380;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `cjwt-test-<pid>-`: what everything this test process creates is named with.
pub fn process_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// A fresh name `cjwt-test-<pid>-<n>-<what>`.
fn unique_name(what: &str) -> String {
    format!("{}{}-{what}", process_prefix(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// A `NAME := value` line of the Makefile (the versions the images are built at).
fn makefile_var(name: &str) -> String {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    let prefix = format!("{name} := ");
    makefile
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("the Makefile sets no {name}"))
        .trim()
        .to_string()
}

/// The Envoy image: `$ENVOY_IMAGE` (as `make docker-test` and compose read it),
/// The shipped Docker configuration of the build under test
/// (`envoy/envoy-docker.yaml` or `envoy/envoy-docker-native.yaml`) with the
/// plugin configuration (the block under `value: |`) replaced by `plugin`.
pub fn shipped_config(plugin: &Value) -> String {
    let file = match crate::envoy::build() {
        crate::envoy::Build::Wasm => "envoy/envoy-docker.yaml",
        crate::envoy::Build::Native => "envoy/envoy-docker-native.yaml",
    };
    let shipped = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let plugin = serde_json::to_string_pretty(plugin).unwrap();
    let mut out = String::new();
    let mut lines = shipped.lines().peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        if line.trim_start() == "value: |" {
            let indent = line.len() - line.trim_start().len();
            while lines.peek().is_some_and(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent) {
                lines.next();
            }
            for l in plugin.lines() {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// else `cjwt-envoy:<ENVOY_VERSION>` (`make envoy-image`).
pub fn envoy_image() -> String {
    std::env::var("ENVOY_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| format!("cjwt-envoy:{}", makefile_var("ENVOY_VERSION")))
}

/// The etcd image: `cjwt-etcd:<ETCD_VERSION>` (`make etcd-image`).
pub fn etcd_image() -> String {
    format!("cjwt-etcd:{}", makefile_var("ETCD_VERSION"))
}

/// Runs `docker ARGS`: its stdout, or what went wrong (the command and its stderr).
pub fn docker<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    let shown = || args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
    match Command::new("docker").args(&args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!("docker {}: {}", shown(), String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("docker {}: cannot run docker: {e}", shown())),
    }
}

/// [`docker`], panicking with the error.
fn docker_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `docker ARGS` with stderr merged into stdout, in order: exit code and output.
fn docker_merged(args: &[&str]) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec docker \"$@\" 2>&1")
        .arg("sh")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh -c docker: {e}"));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Panics, saying why, unless a Docker engine answers (checked once per process).
pub fn require_engine() {
    static ENGINE: OnceLock<Result<String, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| docker(["version", "--format", "{{.Server.Version}}"]).map(|v| v.trim().into()));
    if let Err(e) = engine {
        panic!(
            "no Docker engine reachable ({e}): the Docker suites need one (`make docker-test` checks it first); they never skip"
        );
    }
}

/// Which make target builds a local image, for the message when it is missing.
fn image_hint(image: &str) -> String {
    let envoy = format!("cjwt-envoy:{}", makefile_var("ENVOY_VERSION"));
    let etcd = etcd_image();
    if image.starts_with("cjwt-envoy:") {
        format!("`make envoy-image` builds {envoy}")
    } else if image.starts_with("cjwt-etcd:") {
        format!("`make etcd-image` builds {etcd}")
    } else {
        format!("build or load it first (`make envoy-image` builds {envoy}, `make etcd-image` {etcd})")
    }
}

/// Panics, naming the make target that builds it, unless `image` is present locally
/// (nothing is ever pulled).
pub fn require_image(image: &str) {
    require_engine();
    if let Err(e) = docker(["image", "inspect", "--format", "{{.Id}}", image]) {
        panic!("image {image} is not present locally and is never pulled: {} ({e})", image_hint(image));
    }
}

/// Names of this process's containers, networks and images still present whose
/// name starts with `prefix` (e.g. [`process_prefix`], or a compose project).
pub fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let listings: [(&str, &[&str]); 3] = [
        ("container", &["ps", "-a", "--format", "{{.Names}}"]),
        ("network", &["network", "ls", "--format", "{{.Name}}"]),
        ("image", &["images", "--format", "{{.Repository}}:{{.Tag}}"]),
    ];
    for (what, args) in listings {
        for name in docker_ok(args).lines().filter(|n| n.starts_with(prefix)) {
            found.push(format!("{what} {name}"));
        }
    }
    found
}

/// A user-defined bridge network with its own /24; removed on drop.
pub struct Network {
    name: String,
    /// The first three octets of the subnet, `172.30.X`.
    base: String,
}

impl Network {
    /// Creates `cjwt-test-<pid>-<n>-<prefix>` on a free `172.30.X.0/24`.
    pub fn create(prefix: &str) -> Network {
        require_engine();
        let name = unique_name(prefix);
        let n = COUNTER.load(Ordering::SeqCst);
        let first = (std::process::id() as usize).wrapping_mul(7).wrapping_add(n.wrapping_mul(37)) % 256;
        let mut overlaps = String::new();
        for i in 0..256 {
            let base = format!("172.30.{}", (first + i) % 256);
            let created = docker([
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &format!("{base}.0/24"),
                "--gateway",
                &format!("{base}.1"),
                &name,
            ]);
            match created {
                Ok(_) => return Network { name, base },
                // "Pool overlaps with other one on this address space": taken, try the next.
                Err(e) if e.contains("overlaps") => overlaps = e,
                Err(e) => panic!("cannot create Docker network {name}: {e}"),
            }
        }
        panic!("no free subnet 172.30.X.0/24 for Docker network {name} (`docker network ls` shows who holds them): {overlaps}")
    }

    /// The network's name, for `--network`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `172.30.X.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}.0/24", self.base)
    }

    /// The address `172.30.X.<host>` (2..=254: `.1` is the gateway, the host itself).
    pub fn ip(&self, host: u8) -> String {
        assert!((2..=254).contains(&host), "host {host} on {}: use 2..=254 (.1 is the gateway)", self.subnet());
        format!("{}.{host}", self.base)
    }

    /// The host's address on this network (the bridge's gateway): containers reach
    /// services listening on the host there.
    pub fn gateway(&self) -> String {
        format!("{}.1", self.base)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // A container still attached (dropped after its network, or started by hand)
        // would keep the network: cut it off first.
        if let Ok(attached) =
            docker(["network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", &self.name])
        {
            for c in attached.split_whitespace() {
                let _ = docker(["network", "disconnect", "--force", &self.name, c]);
            }
        }
        for _ in 0..10 {
            match docker(["network", "rm", &self.name]) {
                Ok(_) => return,
                Err(e) if e.contains("not found") || e.contains("No such network") => return,
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
        eprintln!("docker harness: could not remove network {0}: `docker network rm {0}`", self.name);
    }
}

/// What [`Container::run`] starts.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub image: String,
    /// A short name: the container is `cjwt-test-<pid>-<n>-<name>`, and `<name>` is
    /// its DNS alias on its network.
    pub name: String,
    /// A network name (`--network`), usually [`Network::name`].
    pub network: Option<String>,
    /// A fixed address on that network (`--ip`).
    pub ip: Option<String>,
    /// The command and its arguments, after the image.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Bind mounts: host path (must exist), container path, read-only.
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// `--user` (`uid:gid`; the images have no /etc/passwd).
    pub user: Option<String>,
}

impl ContainerSpec {
    pub fn new(image: &str, name: &str) -> ContainerSpec {
        ContainerSpec { image: image.into(), name: name.into(), ..ContainerSpec::default() }
    }

    /// On `network` at `network.ip(host)`.
    pub fn on(mut self, network: &Network, host: u8) -> ContainerSpec {
        self.network = Some(network.name().into());
        self.ip = Some(network.ip(host));
        self
    }

    pub fn args<I, S>(mut self, args: I) -> ContainerSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> ContainerSpec {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn mount(mut self, host: impl AsRef<Path>, container: &str, read_only: bool) -> ContainerSpec {
        self.mounts.push((host.as_ref().to_path_buf(), container.into(), read_only));
        self
    }

    pub fn user(mut self, user: &str) -> ContainerSpec {
        self.user = Some(user.into());
        self
    }
}

/// A running container (`docker run -d`); removed with `docker rm -f` on drop,
/// after printing its log tail if the test panics.
pub struct Container {
    name: String,
    alias: String,
    ip: Option<String>,
}

impl Container {
    pub fn run(spec: ContainerSpec) -> Container {
        require_image(&spec.image);
        let name = unique_name(&spec.name);
        let mut args: Vec<String> = ["run", "-d", "--pull", "never", "--name", &name].map(String::from).to_vec();
        if let Some(network) = &spec.network {
            args.extend(["--network".into(), network.clone()]);
            if let Some(ip) = &spec.ip {
                args.extend(["--ip".into(), ip.clone()]);
            }
            if !matches!(network.as_str(), "host" | "none" | "bridge" | "default") {
                args.extend(["--network-alias".into(), spec.name.clone()]);
            }
        }
        if let Some(user) = &spec.user {
            args.extend(["--user".into(), user.clone()]);
        }
        for (k, v) in &spec.env {
            args.extend(["--env".into(), format!("{k}={v}")]);
        }
        for (host, path, read_only) in &spec.mounts {
            let host = std::path::absolute(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
            assert!(host.exists(), "{}: mount source missing (for {name})", host.display());
            let ro = if *read_only { ",readonly" } else { "" };
            args.extend(["--mount".into(), format!("type=bind,source={},target={path}{ro}", host.display())]);
        }
        args.push(spec.image.clone());
        args.extend(spec.args.iter().cloned());
        if let Err(e) = docker(&args) {
            // `docker run -d` may have created the container before failing to start it.
            let _ = docker(["rm", "-f", &name]);
            panic!("cannot start container {name}: {e}");
        }
        Container { name, alias: spec.name, ip: spec.ip }
    }

    /// The container's full name (`cjwt-test-<pid>-<n>-<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The short name it was run with (its DNS alias on its network).
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The address it was run with (`ContainerSpec::ip`).
    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    /// `docker stop` (SIGTERM, SIGKILL after 5 s).
    pub fn stop(&self) {
        docker_ok(["stop", "--time", "5", &self.name]);
    }

    /// `docker start`: again, with the same file system and addresses.
    pub fn start(&self) {
        docker_ok(["start", &self.name]);
    }

    /// `docker kill` (SIGKILL).
    pub fn kill(&self) {
        docker_ok(["kill", &self.name]);
    }

    pub fn is_running(&self) -> bool {
        docker(["inspect", "--format", "{{.State.Running}}", &self.name]).is_ok_and(|s| s.trim() == "true")
    }

    /// Cuts the container off `network` (it keeps running).
    pub fn disconnect(&self, network: &Network) {
        docker_ok(["network", "disconnect", network.name(), &self.name]);
    }

    /// Attaches the container to `network` at `ip`, with its alias.
    pub fn connect(&self, network: &Network, ip: &str) {
        docker_ok(["network", "connect", "--ip", ip, "--alias", &self.alias, network.name(), &self.name]);
    }

    /// Its whole log, stdout and stderr merged.
    pub fn logs(&self) -> String {
        docker_merged(&["logs", &self.name]).1
    }

    /// The last `lines` lines of its log.
    pub fn logs_tail(&self, lines: usize) -> String {
        docker_merged(&["logs", "--tail", &lines.to_string(), &self.name]).1
    }

    /// `docker exec` in the container: exit code and output (stderr merged).
    pub fn exec(&self, args: &[&str]) -> (i32, String) {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        docker_merged(&all)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- container {} ({}): last {LOG_TAIL} log lines ----\n{}",
                self.name,
                self.alias,
                self.logs_tail(LOG_TAIL)
            );
        }
        if let Err(e) = docker(["rm", "--force", "--volumes", &self.name]) {
            eprintln!("docker harness: could not remove container {0} ({e}): `docker rm -f {0}`", self.name);
        }
    }
}

/// The compose command: `docker compose` (v2 plugin), else `docker-compose` (v1).
pub fn compose_command() -> Vec<String> {
    static COMMAND: OnceLock<Option<Vec<String>>> = OnceLock::new();
    let command = COMMAND.get_or_init(|| {
        if docker(["compose", "version"]).is_ok() {
            return Some(vec!["docker".into(), "compose".into()]);
        }
        let v1 = Command::new("docker-compose").arg("version").output();
        v1.is_ok_and(|o| o.status.success()).then(|| vec!["docker-compose".into()])
    });
    command.clone().unwrap_or_else(|| {
        panic!("neither `docker compose` (the v2 plugin) nor `docker-compose` (v1) is installed: the compose suite needs one")
    })
}

/// A compose project `cjwt-test-<pid>-<n>-compose`, brought up (`up -d`) from one
/// file; `down -v --remove-orphans` on drop, after printing its logs' tails if
/// the test panics.
pub struct Compose {
    project: String,
    file: PathBuf,
    env: Vec<(String, String)>,
}

impl Compose {
    /// `compose -p <project> -f <file> up -d --no-build`, with `env` added to the
    /// environment (the file's `${VARIABLE}`s). Every image must be present locally.
    pub fn up(file: &Path, env: &[(&str, &str)]) -> Compose {
        require_engine();
        let compose = Compose {
            project: unique_name("compose"),
            file: file.to_path_buf(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        if let Err(e) = compose.run(&["up", "--detach", "--no-build"]) {
            panic!("compose up of {} failed: {e}", file.display());
        }
        compose
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// `compose -p <project> -f <file> ARGS`: stdout and stderr merged, or the
    /// command and that output as `Err`.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let command = compose_command();
        let mut c = Command::new(&command[0]);
        c.args(&command[1..]).arg("--project-name").arg(&self.project).arg("--file").arg(&self.file).args(args);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        let shown = format!("{} -p {} -f {} {}", command.join(" "), self.project, self.file.display(), args.join(" "));
        match c.output() {
            Ok(o) => {
                let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                if o.status.success() {
                    Ok(text)
                } else {
                    Err(format!("{shown}: {}", text.trim()))
                }
            }
            Err(e) => Err(format!("{shown}: {e}")),
        }
    }

    /// The services' logs, the last `lines` lines of each.
    pub fn logs(&self, lines: usize) -> String {
        self.run(&["logs", "--no-color", &format!("--tail={lines}")]).unwrap_or_else(|e| e)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- compose project {}: last {LOG_TAIL} log lines per service ----\n{}",
                self.project,
                self.logs(LOG_TAIL)
            );
        }
        if let Err(e) = self.run(&["down", "--volumes", "--remove-orphans", "--timeout", "5"]) {
            eprintln!("docker harness: compose down failed ({e}); leftovers: `docker ps -a | grep {}`", self.project);
        }
    }
}

/// An image built for the test (`cjwt-test-<pid>-<n>-<what>:test`); removed on drop.
pub struct Image {
    tag: String,
}

impl Image {
    /// `docker build` of `context` (its `Dockerfile`), with the classic builder when
    /// the buildx plugin is missing (as the Makefile's DOCKER_BUILD does).
    pub fn build(context: &Path, what: &str) -> Image {
        require_engine();
        let image = Image { tag: format!("{}:test", unique_name(what)) };
        let mut c = Command::new("docker");
        if docker(["buildx", "version"]).is_err() {
            c.env("DOCKER_BUILDKIT", "0");
        }
        let out = c.args(["build", "--quiet", "--tag", &image.tag]).arg(context).output().unwrap();
        assert!(
            out.status.success(),
            "docker build {} failed: {}{}",
            context.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        image
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `docker save` into the tar archive `to`.
    pub fn save(&self, to: &Path) {
        docker_ok([OsStr::new("save"), OsStr::new("--output"), to.as_os_str(), OsStr::new(&self.tag)]);
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Err(e) = docker(["image", "rm", "--force", &self.tag]) {
            eprintln!("docker harness: could not remove image {0} ({e}): `docker image rm {0}`", self.tag);
        }
    }
}

/// An etcd cluster of `cjwt-etcd` containers (`etcd0`, `etcd1`, … as member names
/// and DNS aliases) on a [`Network`], each at a fixed address with etcd's ports
/// (client 2379, peer 2380), heartbeat 100 ms and election timeout 1 s. The
/// containers are removed on drop (drop it before its network).
///
/// Each member keeps its data in a host directory in memory ([`MemoryDirs`]),
/// mounted at its data directory: it outlives a stopped or killed member (which
/// comes back with its log, as on a disk), and etcd's fsync costs nothing. On the
/// shared CI machine, WAL fsyncs stalled by the builds' writes made a leader miss
/// its heartbeats and the store miss the suites' 2 s deadline (503s in an
/// exact-count round). What the suites prove — counts under kills, elections and
/// partitions — does not depend on the disk; `make bench`'s etcd stays on disk.
pub struct EtcdContainers {
    members: Vec<Container>,
    ips: Vec<String>,
    // Dropped after `members`: the directories go once the containers are gone.
    _data: MemoryDirs,
}

/// Host directories under `/dev/shm` (the system temp directory where there is
/// none), removed on drop.
struct MemoryDirs(Vec<PathBuf>);

impl MemoryDirs {
    fn create(names: &[String]) -> MemoryDirs {
        use std::os::unix::fs::PermissionsExt;
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dirs: Vec<PathBuf> = names.iter().map(|n| base.join("cjwt-tests").join(n)).collect();
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            // etcd wants its data directory private.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        MemoryDirs(dirs)
    }
}

impl Drop for MemoryDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// How long a cluster, or a started member, may take to answer `/health`.
const ETCD_START_DEADLINE: Duration = Duration::from_secs(30);

impl EtcdContainers {
    /// Runs `n` members at `network.ip(first_host)`, `network.ip(first_host + 1)`,
    /// … and waits until every one answers `/health` from the host.
    pub fn run(network: &Network, n: usize, first_host: u8) -> EtcdContainers {
        let image = etcd_image();
        require_image(&image);
        let ips: Vec<String> = (0..n).map(|i| network.ip(first_host + u8::try_from(i).unwrap())).collect();
        let initial: Vec<String> =
            ips.iter().enumerate().map(|(i, ip)| format!("etcd{i}=http://{ip}:{ETCD_PEER_PORT}")).collect();
        let data = MemoryDirs::create(&(0..n).map(|i| format!("{}-etcd{i}", network.name())).collect::<Vec<_>>());
        let members = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let member = format!("etcd{i}");
                let spec = ContainerSpec::new(&image, &member)
                    .on(network, first_host + u8::try_from(i).unwrap())
                    .mount(&data.0[i], "/tmp/etcd", false)
                    .args([
                        "etcd".to_string(),
                        format!("--name={member}"),
                        "--data-dir=/tmp/etcd".into(),
                        format!("--listen-peer-urls=http://0.0.0.0:{ETCD_PEER_PORT}"),
                        format!("--initial-advertise-peer-urls=http://{ip}:{ETCD_PEER_PORT}"),
                        format!("--listen-client-urls=http://0.0.0.0:{ETCD_CLIENT_PORT}"),
                        format!("--advertise-client-urls=http://{ip}:{ETCD_CLIENT_PORT}"),
                        format!("--initial-cluster={}", initial.join(",")),
                        "--initial-cluster-state=new".into(),
                        format!("--initial-cluster-token={}", network.name()),
                        "--heartbeat-interval=100".into(),
                        "--election-timeout=1000".into(),
                        "--logger=zap".into(),
                        "--log-outputs=stderr".into(),
                    ]);
                Container::run(spec)
            })
            .collect();
        let cluster = EtcdContainers { members, ips, _data: data };
        for i in 0..n {
            cluster.wait_healthy(i, ETCD_START_DEADLINE);
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s container.
    pub fn member(&self, i: usize) -> &Container {
        &self.members[i]
    }

    /// Member `i`'s address on the network.
    pub fn ip(&self, i: usize) -> &str {
        &self.ips[i]
    }

    /// Member `i`'s client URL, `http://<ip>:2379`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}:{ETCD_CLIENT_PORT}", self.ips[i])
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The client URLs comma-separated (`--endpoints`).
    pub fn client_urls(&self) -> String {
        self.endpoints().join(",")
    }

    /// One HTTP request to member `i`'s client port, from the host.
    pub fn request(&self, i: usize, method: &str, path: &str, body: Option<&Value>) -> Result<Response, String> {
        let body = body.map(Value::to_string);
        http(&self.ips[i], ETCD_CLIENT_PORT, method, path, body.as_deref(), Duration::from_secs(5))
    }

    /// A POST of the JSON gateway (`/v3/...`) to member `i`: the answer's JSON, or
    /// what went wrong (including a non-200 status).
    pub fn post(&self, i: usize, path: &str, body: &Value) -> Result<Value, String> {
        let answer = self.request(i, "POST", path, Some(body))?;
        if answer.status != 200 {
            return Err(format!("POST {}{path}: {} {}", self.endpoint(i), answer.status, answer.body));
        }
        serde_json::from_str(&answer.body).map_err(|e| format!("POST {}{path}: {e}: {}", self.endpoint(i), answer.body))
    }

    /// Whether member `i` answers `GET /health` with `{"health":"true"}` (it has a leader).
    pub fn healthy(&self, i: usize) -> bool {
        self.request(i, "GET", "/health", None).is_ok_and(|a| a.status == 200 && a.json()["health"] == "true")
    }

    /// Waits up to `timeout` for member `i` to be healthy; panics (the containers'
    /// logs follow) if it is not.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.healthy(i) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let last = self.request(i, "GET", "/health", None);
        panic!("etcd member {i} ({}) not healthy after {timeout:?}: {last:?}", self.endpoint(i));
    }

    /// Member `i`'s `/v3/maintenance/status`, if it answers.
    pub fn status(&self, i: usize) -> Option<Value> {
        self.post(i, "/v3/maintenance/status", &json!({})).ok()
    }

    /// The member that is the leader by its own status (its member id equals the
    /// leader it reports), if any answers so.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len()).find(|&i| {
            self.status(i).is_some_and(|s| {
                let leader = s["leader"].as_str().unwrap_or("0");
                leader != "0" && s["header"]["member_id"].as_str() == Some(leader)
            })
        })
    }

    /// `docker stop` member `i`.
    pub fn stop(&self, i: usize) {
        self.members[i].stop();
    }

    /// `docker start` member `i` again (same data, same address); see [`Self::wait_healthy`].
    pub fn start(&self, i: usize) {
        self.members[i].start();
    }

    /// `docker kill` member `i`.
    pub fn kill(&self, i: usize) {
        self.members[i].kill();
    }

    /// `etcdctl ARGS` against every member's endpoint, run in the first running
    /// member's container: exit code and output.
    pub fn etcdctl(&self, args: &[&str]) -> (i32, String) {
        let i = (0..self.len())
            .find(|&i| self.members[i].is_running())
            .unwrap_or_else(|| panic!("no etcd member container is running"));
        self.etcdctl_in(i, &self.client_urls(), args)
    }

    /// `etcdctl ARGS` in member `i`'s container against its own endpoint only.
    pub fn etcdctl_on(&self, i: usize, args: &[&str]) -> (i32, String) {
        self.etcdctl_in(i, &self.endpoint(i), args)
    }

    /// `etcdctl --endpoints=<endpoints> ARGS` in member `i`'s container (short
    /// dial and command timeouts: an unreachable member fails in seconds).
    pub fn etcdctl_in(&self, i: usize, endpoints: &str, args: &[&str]) -> (i32, String) {
        let endpoints = format!("--endpoints={endpoints}");
        let mut all = vec!["etcdctl", endpoints.as_str(), "--dial-timeout=2s", "--command-timeout=5s"];
        all.extend_from_slice(args);
        self.members[i].exec(&all)
    }

    /// Writes `key` = `value` through member `i`'s JSON gateway (`/v3/kv/put`).
    pub fn put(&self, i: usize, key: &str, value: &str) -> Result<(), String> {
        self.post(i, "/v3/kv/put", &json!({"key": b64(key.as_bytes()), "value": b64(value.as_bytes())})).map(|_| ())
    }

    /// Reads `key` through member `i`'s JSON gateway (`/v3/kv/range`; linearizable
    /// unless `serializable`).
    pub fn get(&self, i: usize, key: &str, serializable: bool) -> Result<Option<String>, String> {
        let answer =
            self.post(i, "/v3/kv/range", &json!({"key": b64(key.as_bytes()), "serializable": serializable}))?;
        Ok(answer["kvs"][0]["value"].as_str().map(|v| {
            String::from_utf8_lossy(&B64.decode(v).unwrap_or_else(|e| panic!("{key}: value {v:?}: {e}"))).into_owned()
        }))
    }
}
