//! The shipped Docker deliverables, for real (deploy_manifests.rs checks their
//! text): `envoy/docker-compose.yml` brought up with the locally built Envoy image
//! (`make envoy-image`) and `cjwt.wasm` (`make build`), answering a valid token 200
//! through to the echo upstream and a missing one 401; and the OCI image of
//! `deploy/oci/Dockerfile` (what `make oci` builds), whose one layer holds exactly
//! `plugin.wasm`, the built module byte for byte. Both remove what they created.
//!
//! The compose file publishes fixed host ports (10000 and 9901, as in the README);
//! no other suite uses them (the others bind port 0).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_harness::docker::{self, Compose, Image};
use cjwt_harness::envoy;
use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    envoy::repo_root()
}

/// The host port publishing `container_port` of the compose service `service`.
fn published(compose: &Value, service: &str, container_port: u16) -> u16 {
    let ports = compose["services"][service]["ports"].as_array().unwrap();
    ports
        .iter()
        .filter_map(|p| p.as_str()?.split_once(':'))
        .find(|(_, c)| c.parse() == Ok(container_port))
        .map(|(h, _)| h.parse().unwrap())
        .unwrap_or_else(|| panic!("envoy/docker-compose.yml: {service} publishes no port {container_port}"))
}

/// A demo token for the compose configuration (envoy/envoy-docker.yaml), signed with
/// the demo key as `make run` and `make docker-run` sign theirs.
fn demo_token() -> String {
    let out = std::process::Command::new(envoy::cli_binary())
        .arg("mint")
        .arg("--key")
        .arg(root().join("envoy/demo/demo-signing-key.pem"))
        .args(["--kid", "demo-1", "--iss", "https://issuer.cjwt.example", "--aud", "demo-api", "--sub", "alice"])
        .args(["--ttl", "15m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cjwt mint: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_compose_demo_allows_a_valid_token_and_refuses_a_missing_one() {
    let image = docker::envoy_image();
    docker::require_image(&image);
    envoy::wasm_path(); // mounted into the container: `make build`
    let token = demo_token();
    let file = root().join("envoy/docker-compose.yml");
    let yaml: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let (port, admin) = (published(&yaml, "envoy", 10000), published(&yaml, "envoy", 9901));
    for p in [port, admin] {
        if let Err(e) = TcpListener::bind(("0.0.0.0", p)) {
            panic!("host port {p}, which envoy/docker-compose.yml publishes, is taken ({e}): stop what holds it (a `make docker-run`?)");
        }
    }
    let project;
    {
        let compose = Compose::up(&file, &[("ENVOY_IMAGE", &image)]);
        project = compose.project().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while envoy::admin_get(admin, "/ready").0 != 200 {
            assert!(Instant::now() < deadline, "Envoy (compose project {project}) not ready after 60 s");
            std::thread::sleep(Duration::from_millis(250));
        }

        let bearer = format!("Bearer {token}");
        let allowed = envoy::send("127.0.0.1", port, "GET", "/v1/orders/7", &[("authorization", &bearer)]);
        assert_eq!(allowed.status, 200, "{}", allowed.body);
        let echo = allowed.json();
        assert_eq!(echo["echo"], "upstream", "answered by the echo service: {}", allowed.body);
        assert_eq!(echo["path"], "/v1/orders/7");
        assert_eq!(echo["x-cjwt-sub"], "alice", "cjwt forwards the verified sub: {}", allowed.body);

        let refused = envoy::send("127.0.0.1", port, "GET", "/v1/orders/7", &[]);
        assert_eq!(refused.status, 401, "{}", refused.body);
        assert_eq!(refused.reason().as_deref(), Some("missing_token"), "{}", refused.body);
        assert!(refused.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{:?}", refused.headers);

        let (_, stats) = envoy::admin_get(admin, "/stats?filter=^wasmcustom.cjwt");
        assert!(stats.lines().any(|l| l == "wasmcustom.cjwt.allowed: 1"), "one allowed request: {stats}");
    }
    let left = docker::leftovers(&project);
    assert!(left.is_empty(), "compose down left: {left:?}");
}

/// One member of a tar archive.
struct Entry {
    name: String,
    /// The ustar type flag: `b'0'` a regular file, `b'5'` a directory, …
    kind: u8,
    data: Vec<u8>,
}

/// The members of a (ustar, GNU or PAX) tar archive, without any dependency.
fn tar_entries(bytes: &[u8]) -> Vec<Entry> {
    let text = |b: &[u8]| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap()).into_owned();
    let mut entries = Vec::new();
    let mut long_name: Option<String> = None;
    let mut offset = 0;
    while offset + 512 <= bytes.len() {
        let header = &bytes[offset..offset + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = usize::from_str_radix(text(&header[124..136]).trim(), 8).unwrap();
        let kind = header[156];
        let mut name = text(&header[0..100]);
        // POSIX ustar ("ustar\000") splits long names into prefix/name; GNU ("ustar  \0")
        // keeps other fields there.
        if &header[257..265] == b"ustar\x0000" {
            let prefix = text(&header[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let data = bytes[offset + 512..offset + 512 + size].to_vec();
        offset += 512 + size.div_ceil(512) * 512;
        match kind {
            b'L' => long_name = Some(text(&data)),
            // PAX records "<len> key=value\n": only `path` matters here.
            b'x' => {
                long_name = String::from_utf8_lossy(&data)
                    .lines()
                    .find_map(|r| r.split_once(' ')?.1.strip_prefix("path=").map(str::to_owned))
            }
            b'g' => {}
            _ => {
                let name = long_name.take().unwrap_or(name);
                entries.push(Entry { name: name.trim_start_matches("./").to_string(), kind, data });
            }
        }
    }
    entries
}

fn entry<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
    entries.iter().find(|e| e.name == name).unwrap_or_else(|| {
        panic!("no {name} in the archive: {:?}", entries.iter().map(|e| &e.name).collect::<Vec<_>>())
    })
}

#[test]
fn the_oci_image_is_one_layer_holding_exactly_plugin_wasm() {
    docker::require_engine();
    let wasm_path = envoy::wasm_path();
    // The bytes the image is built from, read once: `make build` may rewrite the file meanwhile.
    let wasm = std::fs::read(&wasm_path).unwrap();
    // The context `make oci` assembles: deploy/oci/Dockerfile and cjwt.wasm.
    let dir = cjwt_harness::scratch(&format!("{}oci", docker::process_prefix()));
    std::fs::copy(root().join("deploy/oci/Dockerfile"), dir.join("Dockerfile")).unwrap();
    std::fs::write(dir.join("cjwt.wasm"), &wasm).unwrap();
    let tag;
    {
        let image = Image::build(&dir, "oci");
        tag = image.tag().to_string();
        let layers = docker::docker(["image", "inspect", "--format", "{{len .RootFS.Layers}}", &tag]).unwrap();
        assert_eq!(layers.trim(), "1", "{tag}: layers");

        let archive = dir.join("image.tar");
        image.save(&archive);
        let outer = tar_entries(&std::fs::read(&archive).unwrap());
        let manifest: Value = serde_json::from_slice(&entry(&outer, "manifest.json").data).unwrap();
        assert_eq!(manifest.as_array().map(Vec::len), Some(1), "{manifest}");
        let layers = manifest[0]["Layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "exactly one layer: {manifest}");
        let config: Value =
            serde_json::from_slice(&entry(&outer, manifest[0]["Config"].as_str().unwrap()).data).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(1), "{}", config["rootfs"]);

        let layer = tar_entries(&entry(&outer, layers[0].as_str().unwrap()).data);
        let names: Vec<&str> = layer.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["plugin.wasm"], "Istio's compat layout: the layer holds plugin.wasm and nothing else");
        assert_eq!(layer[0].kind, b'0', "plugin.wasm is a regular file");
        assert!(
            layer[0].data == wasm,
            "plugin.wasm ({} bytes) differs from {} ({} bytes)",
            layer[0].data.len(),
            wasm_path.display(),
            wasm.len()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(docker::docker(["image", "inspect", &tag]).is_err(), "{tag} was not removed");
}
