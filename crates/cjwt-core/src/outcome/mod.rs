//! What the adapter does with a decision: the refusal it sends, or the header
//! edits it applies before forwarding.

pub mod forward;
pub mod metrics;
pub mod plan;
pub mod response;
