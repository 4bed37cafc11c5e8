//! One module per subcommand, each with its `Args` (clap derive) and `run`,
//! plus what several of them share.

pub mod attenuate;
pub mod check_config;
pub mod dpop;
pub mod explain;
pub mod inspect;
pub mod keygen;
pub mod mint;
pub mod status_list;
pub mod txn_token;

use cjwt_core::config::Config;
use std::path::Path;

/// The real current time, Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// `bytes` random bytes from the OS, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and compiles a plugin configuration (JSON or protobuf `Struct`).
pub fn load_config(path: &Path) -> Result<Config, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::from_plugin_bytes(&bytes).map_err(|e| format!("{}: configuration refused: {e}", path.display()))
}
