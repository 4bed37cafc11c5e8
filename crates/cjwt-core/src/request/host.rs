//! What the core needs from the proxy for one request, and nothing more.
//!
//! The proxy-wasm adapter implements [`Host`] over hostcalls; tests implement it
//! over plain data. Properties are fetched lazily, only when a decision needs them.

/// The proxy as seen by one request.
pub trait Host {
    /// Every request header as received, pseudo-headers included, names lowercase,
    /// repeated names kept as separate entries, in order.
    fn headers(&self) -> &[(String, Vec<u8>)];
    /// A host property (e.g. `["source", "address"]`), raw bytes.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The host clock, Unix seconds. Never taken from the token or the request.
    fn now(&self) -> i64;
}

/// All values of header `name` (lowercase), as bytes.
pub fn header_values<'a>(host: &'a dyn Host, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    host.headers().iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// The single value of header `name` as UTF-8; `None` if absent, repeated or not UTF-8.
pub fn single_header<'a>(host: &'a dyn Host, name: &'a str) -> Option<&'a str> {
    let mut values = header_values(host, name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(first).ok()
}

/// A request's headers copied into a buffer its thread reuses request after
/// request (a host that copies them out of the proxy: the native module). The
/// buffer goes back to the thread when this is dropped.
#[derive(Debug, Default)]
pub struct ReusedHeaders {
    buffer: Vec<(String, Vec<u8>)>,
    len: usize,
}

thread_local! {
    /// Each thread's header buffer, lent to one [`ReusedHeaders`] at a time.
    static HEADERS: std::cell::RefCell<Vec<(String, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ReusedHeaders {
    /// Lends this thread's buffer to `fill`, which overwrites its first entries
    /// (reusing their allocations) and says how many are the request's.
    pub fn fill(fill: impl FnOnce(&mut Vec<(String, Vec<u8>)>) -> usize) -> ReusedHeaders {
        let mut buffer = HEADERS.with(|b| b.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default());
        let len = fill(&mut buffer);
        ReusedHeaders { buffer, len }
    }

    /// The request's headers (for [`Host::headers`]).
    pub fn as_slice(&self) -> &[(String, Vec<u8>)] {
        self.buffer.get(..self.len).unwrap_or(&[])
    }
}

impl Drop for ReusedHeaders {
    /// Gives the buffer back to the thread.
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        HEADERS.with(|b| {
            if let Ok(mut b) = b.try_borrow_mut() {
                *b = buffer;
            }
        });
    }
}

/// Reading the host clock.
pub mod clock {
    /// 2020-01-01T00:00:00Z: a host clock before this is broken, not early.
    pub const EARLIEST: i64 = 1_577_836_800;

    /// Unix seconds of a host clock reading, or `None` for a reading no working
    /// clock gives (before [`EARLIEST`], or beyond `i64`): the caller fails closed.
    pub fn unix_seconds(t: std::time::SystemTime) -> Option<i64> {
        let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        i64::try_from(secs).ok().filter(|s| *s >= EARLIEST)
    }

    /// Milliseconds since 1970 of a host clock reading (0 before 1970: every
    /// deadline has passed), for the request lifecycle's deadlines.
    pub fn unix_millis(t: std::time::SystemTime) -> u64 {
        t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::{Duration, SystemTime, UNIX_EPOCH};

        #[test]
        fn a_broken_clock_reads_as_none_not_1970() {
            assert_eq!(unix_seconds(UNIX_EPOCH), None);
            assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(86_400)), None);
            assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(1_800_000_000)), Some(1_800_000_000));
            assert!(unix_seconds(SystemTime::now()).is_some());
            assert_eq!(unix_millis(UNIX_EPOCH), 0);
            assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_millis(1_800_000_000_123)), 1_800_000_000_123);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str) -> (String, Vec<u8>) {
        (name.to_string(), b"v".to_vec())
    }

    #[test]
    fn the_header_buffer_is_reused_and_only_the_requests_entries_are_shown() {
        let first = ReusedHeaders::fill(|b| {
            b.clear();
            b.extend([header("a"), header("b"), header("c")]);
            3
        });
        assert_eq!(first.as_slice().len(), 3);
        drop(first);
        let second = ReusedHeaders::fill(|b| {
            assert_eq!(b.len(), 3, "the buffer came back");
            b[0] = header("x");
            1
        });
        assert_eq!(second.as_slice(), [header("x")]);
        // Lent out already: a second reader gets a buffer of its own.
        let third = ReusedHeaders::fill(|b| b.len());
        assert!(third.as_slice().is_empty());
        assert_eq!(ReusedHeaders::fill(|_| 5).as_slice(), [], "more than it holds: none");
    }
}
