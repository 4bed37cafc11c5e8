//! Any bytes as a status list (SPEC §11): as a fetched Status List Token body, as
//! a zlib stream inflated under a small cap, and as a `status_list` claim — never
//! a panic, never more than the cap, and a random body is never accepted.
#![no_main]

use cjwt_core::config::Config;
use cjwt_core::encoding::b64;
use cjwt_core::jwks::store::Fetched;
use cjwt_core::keys::host_crypto::PureRust;
use cjwt_core::revocation::status_list::{
    decode_status_list, inflate_capped, verify_status_list, StatusList, TokenStatus,
};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::sync::OnceLock;

/// One provider and one status list, compiled once per process.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let cfg = json!({"providers": [{"name": "corp", "issuer": "https://i",
            "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}]}}],
            "status_lists": [{"uri": "https://i/sl", "provider": "corp", "cluster": "c", "path": "/sl", "max_bytes": 4096}]});
        Config::from_json(cfg.to_string().as_bytes()).expect("fuzz config compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let store = Fetched::new(1);
    assert!(
        verify_status_list(config, 0, &store, &PureRust, data, 1_800_000_000).is_err(),
        "a random body was accepted as a signed list"
    );
    if let Ok(bytes) = inflate_capped(data, 4096) {
        assert!(bytes.len() <= 4096);
    }
    if let Some((&bits, rest)) = data.split_first() {
        let claim = json!({"bits": bits % 9, "lst": b64::encode(rest)});
        if let Ok((bits, bytes)) = decode_status_list(&claim, 4096) {
            let list = StatusList::new(bits, bytes, i64::MAX).unwrap();
            for idx in [0, 1, list.len(), list.len().saturating_sub(1), u64::MAX] {
                let _ = list.get(idx);
            }
        }
    }
    if let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice(data) {
        let _ = TokenStatus::parse(&claims);
    }
});
