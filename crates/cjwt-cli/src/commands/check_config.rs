//! `cjwt check-config`: compile a plugin configuration as the filter would.

use crate::commands::load_config;
use std::path::PathBuf;

/// Arguments of `cjwt check-config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The plugin configuration (JSON, or a serialized protobuf Struct).
    #[arg(value_name = "FILE")]
    config: PathBuf,
}

/// Prints a one-line summary; a refused configuration is an error naming the field.
pub fn run(a: Args) -> Result<u8, String> {
    let config = load_config(&a.config)?;
    out!("ok: {} provider(s), {} rule(s), mode {:?}", config.provider_count(), config.rule_count(), config.mode());
    Ok(0)
}
