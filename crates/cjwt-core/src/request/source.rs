//! Where the core reads each configured value of a request: the credential,
//! the client IP, the region, a custom constraint's attribute. Compiled by the
//! configuration (`crate::config` re-exports them), read by the view and the
//! credential search.

/// Where a credential may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header (lowercase name); `prefix` is matched ASCII-case-insensitively.
    Header {
        /// The header name, lowercase.
        name: String,
        /// Text that precedes the token in the value (e.g. `Bearer `); empty: none.
        prefix: String,
    },
    /// A cookie of this name.
    Cookie(String),
    /// A query parameter of this name.
    Query(String),
}

/// How the client IP is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The downstream peer (`source.address`).
    Peer,
    /// `x-forwarded-for`, trusting this many proxy hops in front of Envoy.
    ForwardedFor {
        /// Proxies trusted in front of Envoy (1..=10): the client is the entry
        /// this many places from the right (1 = the last).
        trusted_hops: u32,
    },
}

/// Where the request's region comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSource {
    /// The same region for every request (`region.value`).
    Static(String),
    /// The single value of this request header (lowercase name).
    Header(String),
    /// This key of the Envoy node metadata (`xds.node.metadata.<key>`).
    NodeMetadata(String),
}

/// A request attribute that a custom constraint compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// The single value of this request header (lowercase name).
    Header(String),
    /// The single, decoded value of this query parameter.
    Query(String),
    /// The segment of the normalized path at this 0-based index (< 64).
    PathSegment(usize),
}
