//! A Zipkin collector on loopback for the tracing suite: takes the JSON v2 span
//! batches Envoy's Zipkin tracer POSTs (`collector_endpoint_version: HTTP_JSON`)
//! and keeps every span, for a test to read its tags.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let spans: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || serve(stream, &kept));
            }
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

/// One connection: HTTP/1.1 requests (Content-Length or chunked bodies), each
/// answered 202; the bodies of POSTs to [`ENDPOINT`] are span arrays.
fn serve(stream: TcpStream, spans: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                } else if name == "transfer-encoding" && value.contains("chunked") {
                    chunked = true;
                }
            }
        }
        let body = if chunked { read_chunked(&mut reader) } else { read_exact(&mut reader, length) };
        if line.starts_with("POST ") && line.split_whitespace().nth(1) == Some(ENDPOINT) {
            if let Ok(Value::Array(batch)) = serde_json::from_slice::<Value>(&body) {
                spans.lock().unwrap().extend(batch);
            }
        }
        if writer.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

fn read_exact(reader: &mut impl Read, n: usize) -> Vec<u8> {
    let mut body = vec![0; n];
    if reader.read_exact(&mut body).is_err() {
        body.clear();
    }
    body
}

fn read_chunked(reader: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return body;
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        body.extend(read_exact(reader, n));
        let mut crlf = String::new();
        let _ = reader.read_line(&mut crlf);
        if n == 0 {
            return body;
        }
    }
}
