//! What the adapter does with a decision: the refusal it sends, or the header
//! edits it applies before forwarding.

pub mod forward;
pub mod metrics;
pub mod plan;
pub mod response;

/// The level of a log line an adapter writes for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine: a refusal, a fetch that loaded.
    Info,
    /// Something failed and cjwt kept going (previous keys kept, store unavailable).
    Warn,
    /// cjwt could not act as decided and refused (503).
    Error,
}
