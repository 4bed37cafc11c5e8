//! The one HTTP/1.1 server of the harness's test peers (the echo upstream, the
//! relay, the JWKS server, the Zipkin collector, the Txn-Token Service): a
//! thread per connection, kept alive, each request read whole (a
//! `content-length` or chunked body) and answered by the peer's handler.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// The largest body read; a longer one closes the connection.
const MAX_BODY: usize = 16 << 20;

/// One request as a peer received it (header names lowercased).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A peer's answer to one request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: impl Into<String>) -> Answer {
        Answer { status, headers: vec![("content-type".into(), "application/json".into())], body: body.into() }
    }

    /// The same answer with one more header.
    pub fn with(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Binds `addr` (`127.0.0.1:0`, or `0.0.0.0:0` for containers) and serves it
/// for the life of the test process: every request goes to `handle`, whose
/// `None` closes the connection without an answer. Returns the port.
pub fn start(addr: &str, handle: impl Fn(Request) -> Option<Answer> + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{addr}: {e}"));
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || serve(stream, &*handle));
        }
    });
    port
}

fn serve(stream: TcpStream, handle: &dyn Fn(Request) -> Option<Answer>) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let Some(answer) = handle(request) else { return };
        let mut out = format!("HTTP/1.1 {} X\r\n", answer.status);
        for (n, v) in &answer.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n{}", answer.body.len(), answer.body));
        // One write: on a kept-alive connection Nagle would otherwise hold the
        // last pieces until Envoy's delayed ACK (40 ms per request).
        if writer.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

/// The next request of the connection; `None` at its end or on a bad request.
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v): &(String, String)| v.as_str());
    let body = if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(reader)?
    } else {
        let length: usize = find("content-length").map_or(Some(0), |v| v.parse().ok())?;
        read_exact(reader, length)?
    };
    Some(Request { method, path, headers, body })
}

fn read_exact(reader: &mut impl Read, n: usize) -> Option<Vec<u8>> {
    if n > MAX_BODY {
        return None;
    }
    let mut body = vec![0; n];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).ok()?;
        body.extend(read_exact(reader, n)?);
        let mut crlf = String::new();
        reader.read_line(&mut crlf).ok()?;
        if n == 0 || body.len() > MAX_BODY {
            return (n == 0).then_some(body);
        }
    }
}
