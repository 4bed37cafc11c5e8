//! Test support (feature `testing`, never in the filter): reference
//! implementations that cjwt's own code is checked against.

pub mod reference;
