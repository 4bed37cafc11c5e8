//! A Zipkin collector on loopback for the tracing suite: takes the JSON v2 span
//! batches Envoy's Zipkin tracer POSTs (`collector_endpoint_version: HTTP_JSON`)
//! and keeps every span, for a test to read its tags.

use crate::http_server::{self, Answer};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The collector's path (the tracer's `collector_endpoint`).
pub const ENDPOINT: &str = "/api/v2/spans";

/// A running collector; its listener thread lives as long as the test process.
pub struct Collector {
    pub port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    pub fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        // Every request is answered 202; the bodies of POSTs to ENDPOINT are span arrays.
        let port = http_server::start("127.0.0.1:0", move |r| {
            if r.method == "POST" && r.path == ENDPOINT {
                if let Ok(Value::Array(batch)) = serde_json::from_slice::<Value>(&r.body) {
                    kept.lock().unwrap().extend(batch);
                }
            }
            Some(Answer { status: 202, headers: Vec::new(), body: String::new() })
        });
        Collector { port, spans }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }

    /// The span of the request to `path` (its `http.url` tag ends with it), once
    /// Envoy has sent it; panics after `timeout`.
    pub fn span_for(&self, path: &str, timeout: Duration) -> Value {
        let mut found = None;
        crate::said::wait_until(&format!("the span of {path}"), timeout, || {
            found =
                self.spans().into_iter().find(|s| s["tags"]["http.url"].as_str().is_some_and(|u| u.ends_with(path)));
            found.is_some()
        });
        found.unwrap()
    }
}

/// A span's tags whose names start with `prefix`, as (name, value), sorted.
pub fn tags_with_prefix(span: &Value, prefix: &str) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = span["tags"]
        .as_object()
        .map(|t| {
            t.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}
