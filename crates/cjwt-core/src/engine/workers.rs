//! One [`Engine`] per worker thread and configuration: each worker keeps its
//! own verified-token cache, which needs no lock (a host whose workers share a
//! process, the native module; a proxy-wasm VM is one worker and keeps its
//! engine itself).

use super::Engine;
use crate::config::Config;
use std::cell::RefCell;
use std::sync::{Arc, Weak};

thread_local! {
    /// This thread's engines, one per live configuration (keyed by its [`WorkerEngines::alive`]).
    static ENGINES: RefCell<Vec<(Weak<()>, Engine)>> = const { RefCell::new(Vec::new()) };
}

/// A configuration's engines, one per worker thread that asks, each compiled on
/// its thread's first request. The engines of a configuration dropped are
/// dropped on each thread's next request.
#[derive(Debug)]
pub struct WorkerEngines {
    /// The plugin configuration as given (each worker compiles its own engine).
    bytes: Vec<u8>,
    /// Alive as long as the configuration: the threads' key to its engines.
    alive: Arc<()>,
}

impl WorkerEngines {
    /// The engines of the plugin configuration `bytes` (compiled already once,
    /// where a configuration error is reported).
    pub fn new(bytes: &[u8]) -> WorkerEngines {
        WorkerEngines { bytes: bytes.to_vec(), alive: Arc::new(()) }
    }

    /// Runs `f` with this thread's engine, compiling it on the thread's first
    /// call. `None` if it cannot be compiled (it compiled once already, so only
    /// an internal error gets here) or on a reentrant call.
    pub fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> Option<R> {
        let me = Arc::as_ptr(&self.alive);
        ENGINES.with(|engines| {
            let mut engines = engines.try_borrow_mut().ok()?;
            engines.retain(|(w, _)| w.strong_count() > 0);
            if !engines.iter().any(|(w, _)| w.as_ptr() == me) {
                engines.push((Arc::downgrade(&self.alive), Engine::new(Config::from_plugin_bytes(&self.bytes).ok()?)));
            }
            let (_, engine) = engines.iter_mut().find(|(w, _)| w.as_ptr() == me)?;
            Some(f(engine))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] =
        br#"{"providers": [{"name": "corp", "issuer": "https://idp.example.com", "remote_jwks": {"cluster": "idp", "path": "/jwks"}}]}"#;

    fn count() -> usize {
        ENGINES.with(|e| e.borrow().len())
    }

    #[test]
    fn one_engine_per_thread_and_configuration_dropped_with_it() {
        let a = WorkerEngines::new(CONFIG);
        let b = WorkerEngines::new(CONFIG);
        let first = a.with(|e| e as *const Engine).unwrap();
        assert_eq!(a.with(|e| e as *const Engine), Some(first), "compiled once on this thread");
        assert!(b.with(|_| ()).is_some());
        assert_eq!(count(), 2);
        // Another thread compiles its own.
        let elsewhere = std::thread::scope(|s| s.spawn(|| (a.with(|_| ()).is_some(), count())).join().unwrap());
        assert_eq!(elsewhere, (true, 1));
        assert_eq!(a.with(|_| a.with(|_| ())), Some(None), "reentrant: refused, not a panic");
        drop(b);
        assert!(a.with(|_| ()).is_some());
        assert_eq!(count(), 1, "b's engine dropped with it");
        assert_eq!(WorkerEngines::new(b"{").with(|_| ()), None, "cannot compile");
    }
}
