//! Test certificates made by the `openssl` command, under the scratch folder: a
//! CA, a server certificate for `api.example.com`, and client certificates
//! signed by the CA, each with an optional URI SAN (a workload's SPIFFE ID);
//! with the Envoy listener edit that serves TLS with them and a curl client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::encoding::b64;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA, a server certificate and client certificates, in a folder of their own.
pub struct Pki {
    /// The folder holding `<name>.pem` and `<name>.key` for each certificate.
    pub dir: PathBuf,
}

impl Default for Pki {
    /// The CA, the server certificate and the client certificates `bound` and
    /// `other` (no SAN).
    fn default() -> Pki {
        Pki::with_clients(&[("bound", None), ("other", None)])
    }
}

impl Pki {
    /// [`Pki::default`].
    pub fn new() -> Pki {
        Pki::default()
    }

    /// The CA, the server certificate and one client certificate per
    /// `(name, uri)`: `CN=<name>`, and `subjectAltName=URI:<uri>` when given.
    pub fn with_clients(clients: &[(&str, Option<&str>)]) -> Pki {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = crate::scratch(&format!("pki-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
        pki.openssl(
            &[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=cjwt test CA"]]
                .concat(),
        );
        pki.openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.pem", "-subj", "/CN=api.example.com"],
            ]
            .concat(),
        );
        for (name, uri) in clients {
            let (key, csr, pem, subj) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("/CN={name}"));
            let san = uri.map(|u| format!("subjectAltName=URI:{u}"));
            let mut req: Vec<&str> = vec!["req"];
            req.extend_from_slice(&ec[..5]);
            req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
            if let Some(san) = &san {
                req.extend_from_slice(&["-addext", san]);
            }
            pki.openssl(&req);
            pki.openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-copy_extensions",
                "copy",
                "-out",
                &pem,
                "-days",
                "2",
            ]);
        }
        pki
    }

    fn openssl(&self, args: &[&str]) -> String {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("the openssl command");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file of the folder (`<name>.pem`, `<name>.key`, `ca.pem`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The certificate and key files of client `name`, for [`https`].
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")))
    }

    /// SHA-256 of the certificate's DER as lowercase hex, from openssl.
    pub fn sha256_hex(&self, name: &str) -> String {
        let out = self.openssl(&["x509", "-in", &format!("{name}.pem"), "-noout", "-fingerprint", "-sha256"]);
        out.trim().rsplit('=').next().unwrap().replace(':', "").to_ascii_lowercase()
    }

    /// The RFC 8705 `x5t#S256` of a client certificate.
    pub fn x5t(&self, name: &str) -> String {
        let hex = self.sha256_hex(name);
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        b64::encode(&bytes)
    }

    /// The harness Envoy's listener edit that serves TLS with the server
    /// certificate, client certificates requested (not required) and checked
    /// against the CA.
    pub fn tls_edit(&self) -> (String, String) {
        let p = |n: &str| self.path(n).display().to_string();
        (
            "    - filters:\n      - name: envoy.filters.network.http_connection_manager".to_string(),
            format!(
                "    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          require_client_certificate: false\n          common_tls_context:\n            tls_certificates:\n            - certificate_chain: {{ filename: {} }}\n              private_key: {{ filename: {} }}\n            validation_context:\n              trusted_ca: {{ filename: {} }}\n      filters:\n      - name: envoy.filters.network.http_connection_manager",
                p("server.pem"),
                p("server.key"),
                p("ca.pem")
            ),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTPS `GET /v1/orders` with curl to `api.example.com` at `port` on
/// loopback, with the client certificate `cert` (if any): the status and the
/// JSON body (`Null` when it is not JSON).
pub fn https(port: u16, cert: Option<(&Path, &Path)>, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args(["-sk", "--http1.1", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]);
    c.arg("--resolve").arg(format!("api.example.com:{port}:127.0.0.1"));
    if let Some((cert, key)) = cert {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    for (n, v) in headers {
        c.arg("-H").arg(format!("{n}: {v}"));
    }
    c.arg(format!("https://api.example.com:{port}/v1/orders"));
    let out = c.output().expect("the curl command");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}
