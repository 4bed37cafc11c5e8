//! Every Istio and Envoy Gateway manifest under deploy/ checked against the real
//! CRD schemas vendored in deploy/schemas/ (istio/api 1.30.2, Envoy Gateway v1.9.0;
//! see deploy/schemas/README.md): the `openAPIV3Schema` by a JSON-schema
//! validator, every field known to the schema (the API server would prune an
//! unknown one silently), the CEL rules these manifests touch checked by hand,
//! and every cjwt configuration compiled by cjwt itself. Kubernetes, Istio and
//! Envoy Gateway do not run here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::config::Config;
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &Value| !d.is_null())
        .collect()
}

/// The `openAPIV3Schema` of the vendored CRD for `kind`, version `version`.
fn crd_schema(file: &str, kind: &str, version: &str) -> Value {
    let crd = yaml_docs(file).into_iter().find(|d| d["spec"]["names"]["kind"] == kind).unwrap();
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    let v = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == version).unwrap().clone();
    assert_eq!(v["served"], true, "{kind} {version} is served");
    v["schema"]["openAPIV3Schema"].clone()
}

/// Fields the schema does not declare, by JSON path (Kubernetes drops them:
/// structural schemas prune unknown fields unless told to preserve them).
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            for (k, v) in map {
                let p = format!("{path}.{k}");
                match (props.and_then(|p| p.get(k)), schema.get("additionalProperties")) {
                    (Some(s), _) => unknown_fields(s, v, &p, out),
                    (None, Some(s)) if s.is_object() => unknown_fields(s, v, &p, out),
                    (None, Some(Value::Bool(true))) => {}
                    _ => out.push(p),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                unknown_fields(&schema["items"], v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Validates `doc` (a whole object: apiVersion, kind, metadata, spec) against
/// `schema`: JSON Schema (draft 4, the basis of OpenAPI v3.0's schema object;
/// the `x-kubernetes-*` extensions are ignored by the validator) and pruning.
fn validate(file: &str, schema: &Value, doc: &Value) {
    let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft4).build(schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{file}: {} against its CRD schema:\n{}", doc["kind"], errors.join("\n"));
    let mut unknown = Vec::new();
    // apiVersion, kind and metadata are the API server's; the CRD schema types `spec`.
    unknown_fields(&schema["properties"]["spec"], &doc["spec"], "spec", &mut unknown);
    assert!(unknown.is_empty(), "{file}: fields the CRD does not know (pruned by Kubernetes): {unknown:?}");
}

fn compiles(file: &str, what: &str, config: &Value) {
    assert!(config.is_object(), "{file}: {what} is not an object");
    if let Err(e) = Config::from_json(config.to_string().as_bytes()) {
        panic!("{file}: {what} refused by cjwt: {e}");
    }
}

const ISTIO_CRDS_TE: &str = "deploy/schemas/istio/trafficextensions.yaml";
const ISTIO_CRDS_WP: &str = "deploy/schemas/istio/wasmplugins.yaml";
const EG_EEP: &str = "deploy/schemas/envoy-gateway/gateway.envoyproxy.io_envoyextensionpolicies.yaml";
const EG_EP: &str = "deploy/schemas/envoy-gateway/gateway.envoyproxy.io_envoyproxies.yaml";

/// Every file of `dir` ending in `.yaml` whose name starts with `prefix`.
fn files(dir: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".yaml"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

#[test]
fn istio_traffic_extensions_follow_the_crd_fail_closed_and_compile() {
    let schema = crd_schema(ISTIO_CRDS_TE, "TrafficExtension", "v1alpha1");
    let mut seen = Vec::new();
    for file in files("deploy/istio", "trafficextension-") {
        for doc in yaml_docs(&file) {
            assert_eq!(doc["apiVersion"], "extensions.istio.io/v1alpha1", "{file}");
            assert_eq!(doc["kind"], "TrafficExtension", "{file}");
            validate(&file, &schema, &doc);
            let spec = &doc["spec"];
            // The CRD's CEL rules (x-kubernetes-validations), which no JSON-schema validator runs.
            assert!(
                spec.get("selector").is_none() || spec.get("targetRefs").is_none(),
                "{file}: selector or targetRefs"
            );
            assert!(spec.get("wasm").is_some() != spec.get("lua").is_some(), "{file}: exactly one of wasm or lua");
            for t in spec["targetRefs"].as_array().into_iter().flatten() {
                assert!(t.get("namespace").is_none_or(|n| n == ""), "{file}: no cross-namespace targetRef");
            }
            let wasm = &spec["wasm"];
            let url = wasm["url"].as_str().unwrap();
            assert!(
                ["oci://", "https://", "http://", "file://"].iter().any(|s| url.starts_with(s)),
                "{file}: url scheme"
            );
            assert_eq!(spec["phase"], "AUTHN", "{file}: before Istio's authentication");
            assert_eq!(wasm["failStrategy"], "FAIL_CLOSE", "{file}: must fail closed");
            compiles(&file, "wasm.pluginConfig", &wasm["pluginConfig"]);
            seen.push((file.clone(), spec.clone()));
        }
    }
    let names: Vec<&str> = seen.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "deploy/istio/trafficextension-gateway.yaml",
            "deploy/istio/trafficextension-sidecar.yaml",
            "deploy/istio/trafficextension-waypoint.yaml"
        ]
    );
    // The waypoint: attached through targetRefs (waypoints ignore `selector`), to a
    // Service in its own namespace, counting max_uses in the shared store, the client
    // address from the peer (see README, ambient mode).
    let waypoint = &seen[2].1;
    assert!(waypoint.get("selector").is_none());
    assert_eq!(waypoint["targetRefs"][0]["kind"], "Service");
    assert_eq!(waypoint["targetRefs"][0]["group"], "");
    let plugin = &waypoint["wasm"]["pluginConfig"];
    assert_eq!(plugin["client_ip"]["from"], "peer");
    assert_eq!(plugin["usage_store"]["etcd"]["cluster"], etcd_cluster().as_str());
}

/// The cluster the etcd ServiceEntry gives the mesh-wide store.
fn etcd_cluster() -> String {
    let se =
        yaml_docs("deploy/istio/serviceentry-etcd.yaml").into_iter().find(|d| d["kind"] == "ServiceEntry").unwrap();
    format!("outbound|{}||{}", se["spec"]["ports"][0]["number"], se["spec"]["hosts"][0].as_str().unwrap())
}

#[test]
fn istio_wasmplugins_follow_the_crd() {
    let schema = crd_schema(ISTIO_CRDS_WP, "WasmPlugin", "v1alpha1");
    let all = files("deploy/istio", "wasmplugin-");
    assert_eq!(all.len(), 2);
    for file in all {
        for doc in yaml_docs(&file) {
            assert_eq!(doc["kind"], "WasmPlugin", "{file}");
            validate(&file, &schema, &doc);
            compiles(&file, "pluginConfig", &doc["spec"]["pluginConfig"]);
        }
    }
}

/// Each TrafficExtension carries the same cjwt configuration as the WasmPlugin it
/// replaces, and every remote key set goes through the IdP's ServiceEntry.
#[test]
fn traffic_extensions_match_their_wasmplugins_and_the_serviceentries() {
    for (te, wp) in [("gateway", "gateway"), ("sidecar", "sidecar")] {
        let te = &yaml_docs(&format!("deploy/istio/trafficextension-{te}.yaml"))[0]["spec"];
        let wp = &yaml_docs(&format!("deploy/istio/wasmplugin-{wp}.yaml"))[0]["spec"];
        assert_eq!(te["wasm"]["pluginConfig"], wp["pluginConfig"]);
        for k in ["url", "imagePullPolicy", "pluginName", "failStrategy"] {
            assert_eq!(te["wasm"][k], wp[k], "{k}");
        }
        for k in ["selector", "phase", "match"] {
            assert_eq!(te[k], wp[k], "{k}");
        }
    }
    let se = yaml_docs("deploy/istio/serviceentry-idp.yaml").into_iter().find(|d| d["kind"] == "ServiceEntry").unwrap();
    let idp = format!("outbound|{}||{}", se["spec"]["ports"][0]["number"], se["spec"]["hosts"][0].as_str().unwrap());
    for file in files("deploy/istio", "trafficextension-") {
        let doc = &yaml_docs(&file)[0];
        assert_eq!(
            doc["spec"]["wasm"]["pluginConfig"]["providers"][0]["remote_jwks"]["cluster"],
            idp.as_str(),
            "{file}"
        );
    }
}

/// CEL rules of the EnvoyExtensionPolicy CRD these manifests touch.
fn eep_rules(file: &str, spec: &Value) {
    let refs = spec["targetRefs"].as_array().unwrap();
    assert!(spec.get("targetRef").is_none(), "{file}: targetRef or targetRefs");
    for r in refs {
        assert_eq!(r["group"], "gateway.networking.k8s.io", "{file}");
        assert!(
            ["Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute"]
                .contains(&r["kind"].as_str().unwrap()),
            "{file}"
        );
    }
}

#[test]
fn envoy_gateway_policies_follow_the_crds_and_compile() {
    let eep = crd_schema(EG_EEP, "EnvoyExtensionPolicy", "v1alpha1");
    let ep = crd_schema(EG_EP, "EnvoyProxy", "v1alpha1");

    let file = "deploy/envoy-gateway/envoyextensionpolicy-wasm.yaml";
    let docs = yaml_docs(file);
    assert_eq!(docs.len(), 1);
    let policy = &docs[0];
    assert_eq!(policy["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(policy["kind"], "EnvoyExtensionPolicy");
    validate(file, &eep, policy);
    eep_rules(file, &policy["spec"]);
    let wasm = &policy["spec"]["wasm"][0];
    // CEL: the code's type names the one source given.
    assert_eq!(wasm["code"]["type"], "Image");
    assert!(wasm["code"].get("http").is_none());
    assert!(wasm["code"]["image"]["url"].as_str().unwrap().starts_with("oci://"));
    assert_eq!(wasm["failOpen"], false, "{file}: must fail closed");
    compiles(file, "wasm[0].config", &wasm["config"]);

    let file = "deploy/envoy-gateway/envoyextensionpolicy-native.yaml";
    let docs = yaml_docs(file);
    let proxy = docs.iter().find(|d| d["kind"] == "EnvoyProxy").unwrap();
    let policy = docs.iter().find(|d| d["kind"] == "EnvoyExtensionPolicy").unwrap();
    assert_eq!(docs.len(), 2);
    validate(file, &ep, proxy);
    validate(file, &eep, policy);
    eep_rules(file, &policy["spec"]);
    let allowed = &proxy["spec"]["dynamicModules"][0];
    // CEL: a Local source has `local`, never `remote`.
    assert_eq!(allowed["source"]["type"], "Local");
    assert!(allowed["source"].get("remote").is_none());
    assert!(allowed["source"]["local"]["path"].as_str().unwrap().ends_with("/libcjwt.so"));
    let module = &policy["spec"]["dynamicModule"][0];
    assert_eq!(module["name"], allowed["name"], "{file}: the policy names a module the EnvoyProxy allows");
    assert_eq!(module["filterName"], "cjwt");
    compiles(file, "dynamicModule[0].config", &module["config"]);
    // Both policies configure cjwt the same way.
    let wasm_config = &yaml_docs("deploy/envoy-gateway/envoyextensionpolicy-wasm.yaml")[0]["spec"]["wasm"][0]["config"];
    assert_eq!(&module["config"], wasm_config);
}

/// The checker itself: a misspelt field, a wrong enum and a missing required field
/// are caught, so a pass above means something.
#[test]
fn the_schema_check_catches_what_kubernetes_would_refuse_or_prune() {
    let schema = crd_schema(ISTIO_CRDS_TE, "TrafficExtension", "v1alpha1");
    let good = yaml_docs("deploy/istio/trafficextension-gateway.yaml")[0].clone();
    let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft4).build(&schema).unwrap();
    assert!(validator.is_valid(&good));
    let mut bad_enum = good.clone();
    bad_enum["spec"]["wasm"]["failStrategy"] = "FAIL_SOMETIMES".into();
    assert!(!validator.is_valid(&bad_enum));
    let mut no_url = good.clone();
    no_url["spec"]["wasm"].as_object_mut().unwrap().remove("url");
    assert!(!validator.is_valid(&no_url));
    let mut misspelt = good.clone();
    misspelt["spec"]["wasm"]["failstrategy"] = "FAIL_CLOSE".into();
    let mut unknown = Vec::new();
    unknown_fields(&schema["properties"]["spec"], &misspelt["spec"], "spec", &mut unknown);
    assert_eq!(unknown, ["spec.wasm.failstrategy"]);
    // pluginConfig is free-form (x-kubernetes-preserve-unknown-fields): cjwt checks it.
    let mut free = good.clone();
    free["spec"]["wasm"]["pluginConfig"]["anything"] = 1.into();
    unknown.clear();
    unknown_fields(&schema["properties"]["spec"], &free["spec"], "spec", &mut unknown);
    assert!(unknown.is_empty());
    assert!(Config::from_json(free["spec"]["wasm"]["pluginConfig"].to_string().as_bytes()).is_err());
}
