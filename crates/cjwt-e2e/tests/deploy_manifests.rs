//! The shipped deployment files, checked structurally: Istio manifests against
//! the WasmPlugin schema (field names, phases, fail strategy) with their
//! `pluginConfig` compiled by cjwt itself; the Docker files against the tested
//! Envoy version; every Envoy config for the fail-closed hardening of SPEC §7.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

/// WasmPlugin `spec` fields (istio/api extensions/v1alpha1/wasm.proto).
const WASMPLUGIN_FIELDS: [&str; 14] = [
    "selector",
    "targetRefs",
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "pluginName",
    "phase",
    "priority",
    "failStrategy",
    "type",
    "match",
    "vmConfig",
    "pluginConfig",
];

#[test]
fn istio_wasmplugins_follow_the_schema_fail_closed_and_compile() {
    let mut plugins = 0;
    for file in ["deploy/istio/wasmplugin-gateway.yaml", "deploy/istio/wasmplugin-sidecar.yaml"] {
        for doc in yaml_docs(file) {
            assert_eq!(doc["apiVersion"], "extensions.istio.io/v1alpha1", "{file}");
            assert_eq!(doc["kind"], "WasmPlugin", "{file}");
            let spec = doc["spec"].as_object().unwrap();
            for key in spec.keys() {
                assert!(WASMPLUGIN_FIELDS.contains(&key.as_str()), "{file}: unknown WasmPlugin field {key}");
            }
            assert!(spec.contains_key("selector") ^ spec.contains_key("targetRefs"), "{file}: selector XOR targetRefs");
            assert!(matches!(spec["phase"].as_str(), Some("AUTHN" | "AUTHZ" | "STATS")), "{file}: phase");
            assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "{file}: must fail closed");
            let url = spec["url"].as_str().unwrap();
            assert!(
                url.starts_with("oci://") || url.starts_with("https://") || url.starts_with("file://"),
                "{file}: url scheme"
            );
            assert!(matches!(spec["imagePullPolicy"].as_str(), Some("IfNotPresent" | "Always")), "{file}");
            if let Some(m) = spec.get("match") {
                for sel in m.as_array().unwrap() {
                    assert!(
                        matches!(sel["mode"].as_str(), Some("CLIENT" | "SERVER" | "CLIENT_AND_SERVER")),
                        "{file}: match.mode"
                    );
                }
            }
            // Istio hands pluginConfig to the filter as JSON: cjwt must accept it.
            let json = serde_json::to_vec(&spec["pluginConfig"]).unwrap();
            if let Err(e) = Config::from_json(&json) {
                panic!("{file}: pluginConfig refused by cjwt: {e}");
            }
            plugins += 1;
        }
    }
    assert_eq!(plugins, 2);
}

#[test]
fn the_serviceentry_names_the_cluster_the_plugins_fetch_through() {
    let docs = yaml_docs("deploy/istio/serviceentry-idp.yaml");
    let se = docs.iter().find(|d| d["kind"] == "ServiceEntry").unwrap();
    let host = se["spec"]["hosts"][0].as_str().unwrap();
    let port = se["spec"]["ports"][0]["number"].as_u64().unwrap();
    let cluster = format!("outbound|{port}||{host}");
    for file in ["deploy/istio/wasmplugin-gateway.yaml", "deploy/istio/wasmplugin-sidecar.yaml"] {
        let doc = &yaml_docs(file)[0];
        assert_eq!(doc["spec"]["pluginConfig"]["providers"][0]["remote_jwks"]["cluster"], cluster.as_str(), "{file}");
    }
}

/// The etcd ServiceEntry gives the cluster a mesh-wide `usage_store` calls through,
/// with TLS to etcd and a member ejected at its first connection failure; a plugin
/// configuration naming that cluster compiles.
#[test]
fn the_etcd_serviceentry_gives_the_usage_store_its_cluster() {
    let docs = yaml_docs("deploy/istio/serviceentry-etcd.yaml");
    let se = docs.iter().find(|d| d["kind"] == "ServiceEntry").unwrap();
    let dr = docs.iter().find(|d| d["kind"] == "DestinationRule").unwrap();
    let host = se["spec"]["hosts"][0].as_str().unwrap();
    let port = se["spec"]["ports"][0]["number"].as_u64().unwrap();
    assert_eq!(port, 2379);
    // etcd's gRPC API (the default `usage_store.etcd.api`) needs an HTTP/2 cluster.
    assert_eq!(se["spec"]["ports"][0]["protocol"], "GRPC");
    assert_eq!(dr["spec"]["host"], host);
    assert_eq!(dr["spec"]["trafficPolicy"]["tls"]["mode"], "MUTUAL");
    assert_eq!(dr["spec"]["trafficPolicy"]["outlierDetection"]["consecutiveLocalOriginFailures"], 1);
    let mut config = yaml_docs("deploy/istio/wasmplugin-sidecar.yaml")[0]["spec"]["pluginConfig"].clone();
    config["usage_store"] = serde_json::json!({"etcd": {"cluster": format!("outbound|{port}||{host}"), "authority": host, "timeout_ms": 250}});
    cjwt_core::config::Config::from_json(config.to_string().as_bytes()).unwrap();
}

#[test]
fn docker_compose_pins_the_tested_envoy_and_mounts_the_filter() {
    let compose = &yaml_docs("envoy/docker-compose.yml")[0];
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let tested = makefile.lines().find_map(|l| l.strip_prefix("ENVOY_VERSION := ")).unwrap().trim().to_string();
    let image = compose["services"]["envoy"]["image"].as_str().unwrap();
    assert_eq!(
        image,
        format!("${{ENVOY_IMAGE:-envoyproxy/envoy:v{tested}}}"),
        "the official image of the tested Envoy, overridable (make docker-run sets the locally built one)"
    );
    let volumes: Vec<&str> =
        compose["services"]["envoy"]["volumes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(volumes.contains(&"./envoy-docker.yaml:/etc/envoy/envoy.yaml:ro"), "{volumes:?}");
    assert!(volumes.contains(&"../target/wasm32-wasip1/release/cjwt.wasm:/etc/envoy/cjwt.wasm:ro"), "{volumes:?}");
    assert!(compose["services"]["envoy"]["ports"].as_array().unwrap().iter().any(|p| p == "10000:10000"));
    let dockerfile = std::fs::read_to_string(root().join("deploy/oci/Dockerfile")).unwrap();
    let steps: Vec<&str> = dockerfile.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(
        steps,
        ["FROM scratch", "COPY cjwt.wasm ./plugin.wasm"],
        "Istio's compat layout: one layer, plugin.wasm"
    );
}

/// The plugin configuration block (`value: |`) of an Envoy config, as JSON.
fn plugin_config(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let filters =
        &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
    let wasm = filters.as_array().unwrap().iter().find(|f| f["name"] == "cjwt").unwrap();
    serde_json::from_str(wasm["typed_config"]["config"]["configuration"]["value"].as_str().unwrap()).unwrap()
}

#[test]
fn every_shipped_envoy_config_is_hardened_and_fails_closed() {
    for file in ["envoy/envoy.yaml", "envoy/envoy-docker.yaml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let hcm = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["normalize_path"], true, "{file}");
        assert_eq!(hcm["merge_slashes"], true, "{file}");
        assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST", "{file}");
        let cjwt = hcm["http_filters"].as_array().unwrap().iter().find(|f| f["name"] == "cjwt").unwrap();
        assert_eq!(cjwt["typed_config"]["config"]["failure_policy"], "FAIL_RELOAD", "{file}");
        assert!(cjwt["typed_config"]["config"].get("fail_open").is_none(), "{file}: fail_open must not be set");
        assert_eq!(cjwt["typed_config"]["config"]["vm_config"]["runtime"], "envoy.wasm.runtime.v8", "{file}");
        Config::from_json(plugin_config(file).to_string().as_bytes()).unwrap();
    }
    assert_eq!(
        plugin_config("envoy/envoy.yaml"),
        plugin_config("envoy/envoy-docker.yaml"),
        "the Docker demo runs the same plugin configuration"
    );
}
