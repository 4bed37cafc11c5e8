//! The store's floor (issue 27 item 1): the transaction a mesh-wide use sends,
//! sent straight to the same etcd members without Envoy or cjwt — over etcd's
//! gRPC API (HTTP/2 with the `h2` crate, one connection per member, calls
//! multiplexed on them, as Envoy's HTTP/2 pool does) and over its JSON gateway
//! (HTTP/1.1 keep-alive with `ureq`, one connection per caller) — one call at a
//! time and `in_flight` at once, round-robin over the members. Every answer is
//! read with the core's own readers and must say "counted".

use bytes::Bytes;
use cjwt_core::usage::etcd::{parse_txn_answer, TxnAnswer};
use cjwt_core::usage::grpc::{self, GrpcAnswer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One floor measurement.
#[derive(Clone, Debug, Default)]
pub struct Floor {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Calls whose answer was not "counted" (an error, a timeout, another answer).
    pub failed: u64,
}

fn summarize(mut latencies: Vec<f64>, failed: u64, seconds: f64) -> Floor {
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| {
        if latencies.is_empty() {
            f64::NAN
        } else {
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
        }
    };
    Floor { rps: latencies.len() as f64 / seconds, p50_us: pct(0.50), p99_us: pct(0.99), failed }
}

/// One gRPC call of `body` to `/etcdserverpb.KV/Txn`: `Ok` when etcd counted the use.
async fn grpc_call(client: &h2::client::SendRequest<Bytes>, authority: &str, body: Bytes) -> Result<(), String> {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{}", grpc::TXN_PATH))
        .header("content-type", grpc::CONTENT_TYPE)
        .header("te", "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
    let mut client = client.clone().ready().await.map_err(|e| e.to_string())?;
    let (answer, mut send) = client.send_request(request, false).map_err(|e| e.to_string())?;
    send.send_data(body, true).map_err(|e| e.to_string())?;
    let answer = answer.await.map_err(|e| e.to_string())?;
    let (parts, mut recv) = answer.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.map_err(|e| e.to_string())?;
    let field = |name: &str| {
        trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| parts.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, grpc_status, grpc_message) =
        (parts.status.as_str().to_owned(), field("grpc-status"), field("grpc-message"));
    let read = grpc::read_txn(&GrpcAnswer {
        status: Some(&status),
        grpc_status: grpc_status.as_deref(),
        grpc_message: grpc_message.as_deref(),
        body: &data,
    });
    match read {
        TxnAnswer::Counted => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// The gRPC floor: `body` (one gRPC frame) to the members at `endpoints`,
/// `in_flight` calls at once, for `seconds` after a 1 s warm-up.
pub fn grpc(endpoints: &[(String, u16)], body: &[u8], in_flight: usize, seconds: u64) -> Floor {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let mut clients = Vec::new();
        for (ip, port) in endpoints {
            let tcp = tokio::net::TcpStream::connect((ip.as_str(), *port)).await.expect("connect to etcd");
            tcp.set_nodelay(true).expect("nodelay");
            let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake with etcd");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            clients.push((client, format!("{ip}:{port}")));
        }
        let clients = Arc::new(clients);
        let next = Arc::new(AtomicUsize::new(0));
        let body = Bytes::copy_from_slice(body);
        let mut result = Floor::default();
        for (phase_seconds, measured) in [(1u64, false), (seconds, true)] {
            let deadline = Instant::now() + Duration::from_secs(phase_seconds);
            let tasks: Vec<_> = (0..in_flight)
                .map(|_| {
                    let (clients, next, body) = (clients.clone(), next.clone(), body.clone());
                    tokio::spawn(async move {
                        let (mut latencies, mut failed) = (Vec::new(), 0u64);
                        while Instant::now() < deadline {
                            let (client, authority) = &clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()];
                            let started = Instant::now();
                            let call = grpc_call(client, authority, body.clone());
                            match tokio::time::timeout(Duration::from_secs(2), call).await {
                                Ok(Ok(())) => latencies.push(started.elapsed().as_secs_f64() * 1e6),
                                _ => failed += 1,
                            }
                        }
                        (latencies, failed)
                    })
                })
                .collect();
            let (mut latencies, mut failed) = (Vec::new(), 0u64);
            for t in tasks {
                let (l, f) = t.await.expect("a floor task");
                latencies.extend(l);
                failed += f;
            }
            if measured {
                result = summarize(latencies, failed, phase_seconds as f64);
            }
        }
        result
    })
}

/// The JSON gateway's floor: `body` (JSON) to `POST /v3/kv/txn` of the members
/// at `endpoints`, `in_flight` callers at once (each its own keep-alive
/// connection per member), for `seconds` after a 1 s warm-up.
pub fn json(endpoints: &[(String, u16)], body: &[u8], in_flight: usize, seconds: u64) -> Floor {
    let urls: Arc<Vec<String>> =
        Arc::new(endpoints.iter().map(|(ip, port)| format!("http://{ip}:{port}/v3/kv/txn")).collect());
    let body: Arc<Vec<u8>> = Arc::new(body.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let agents: Vec<ureq::Agent> =
        (0..in_flight).map(|_| ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build()).collect();
    let mut result = Floor::default();
    for (phase_seconds, measured) in [(1u64, false), (seconds, true)] {
        let deadline = Instant::now() + Duration::from_secs(phase_seconds);
        let threads: Vec<_> = agents
            .iter()
            .cloned()
            .map(|agent| {
                let (urls, body, next) = (urls.clone(), body.clone(), next.clone());
                std::thread::spawn(move || {
                    let (mut latencies, mut failed) = (Vec::new(), 0u64);
                    while Instant::now() < deadline {
                        let url = &urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()];
                        let started = Instant::now();
                        let answer = agent
                            .post(url)
                            .set("content-type", "application/json")
                            .send_bytes(&body)
                            .ok()
                            .and_then(|r| r.into_string().ok());
                        match answer.map(|text| parse_txn_answer(Some("200"), text.as_bytes())) {
                            Some(TxnAnswer::Counted) => latencies.push(started.elapsed().as_secs_f64() * 1e6),
                            _ => failed += 1,
                        }
                    }
                    (latencies, failed)
                })
            })
            .collect();
        let (mut latencies, mut failed) = (Vec::new(), 0u64);
        for t in threads {
            let (l, f) = t.join().expect("a floor thread");
            latencies.extend(l);
            failed += f;
        }
        if measured {
            result = summarize(latencies, failed, phase_seconds as f64);
        }
    }
    result
}
