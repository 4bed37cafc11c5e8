//! Names that concurrent test processes must not share — a port a server is told
//! to bind (it cannot bind port 0), an etcd member's loopback address — claimed
//! through a file each in the system temp dir (`cjwt-test-claims/`), created with
//! `O_EXCL` and holding the claimer's process id. `cargo nextest` runs every test
//! in its own process, two builds at once: without a claim, two processes that
//! probe the same free port (bind, release, hand it to the server) could both
//! hand it out. A claim is released when dropped; one whose process is gone (a
//! killed test run) is taken over.
//!
//! Ports come from 20000 up to the start of Linux's ephemeral range
//! (`net.ipv4.ip_local_port_range`, 32768 by default), where the kernel never
//! places a `bind(…:0)` listener or an outgoing connection: the tests' own
//! upstreams and clients cannot take a claimed port in the meantime either.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The lowest port [`port`] hands out.
const FIRST_PORT: u16 = 20000;

/// A claimed name: the file is removed on drop.
#[derive(Debug)]
pub struct Claim {
    file: PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join("cjwt-test-claims");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Whether process `pid` is alive (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Claims `name` for this process: `None` when a live process holds it.
pub fn try_claim(name: &str) -> Option<Claim> {
    let file = dir().join(name);
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&file) {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                return Some(Claim { file });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Written right after creation: an empty file is a claim being made.
                let holder = std::fs::read_to_string(&file).ok()?.trim().parse::<u32>().ok()?;
                if alive(holder) {
                    return None;
                }
                // Left by a process that is gone: take it over (once; a racing taker wins).
                let _ = std::fs::remove_file(&file);
            }
            Err(e) => panic!("cannot claim {}: {e}", file.display()),
        }
    }
    None
}

/// The first port of the kernel's ephemeral range (where [`port`] stops).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|p| *p > FIRST_PORT + 1000)
        .unwrap_or(32768)
}

/// A loopback port claimed for this process and free now, for a server that is
/// told its port (below the ephemeral range: see the module's documentation).
pub fn port() -> (u16, Claim) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let span = usize::from(ephemeral_start() - FIRST_PORT);
    // Processes start at different places, so they rarely meet.
    let start = (std::process::id() as usize).wrapping_mul(7919).wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst));
    for i in 0..span {
        let port = FIRST_PORT + u16::try_from((start + i) % span).unwrap();
        let Some(claim) = try_claim(&format!("port-{port}")) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return (port, claim);
        }
    }
    panic!("no free port in {FIRST_PORT}..{} (claims in {})", ephemeral_start(), dir().display())
}
