//! The one table of request cases (`cjwt_core::testing::cases`: the 401, 403 and
//! 503 classes), decided by the core on a static host at a fixed clock. The same
//! tables run through a real Envoy with each build (crates/cjwt-e2e/tests/envoy_e2e.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use cjwt_core::reason::{Class, Reason};
use cjwt_core::testing::cases::{self, Table};
use cjwt_core::testing::*;
use serde_json::json;

/// Runs `table` through a fresh engine for its configuration; `decide` is the
/// verdict function (with or without a store).
fn run(
    class: &str,
    table: &Table,
    decide: fn(&mut cjwt_core::engine::Engine, &StaticHost) -> Option<Reason>,
) -> Vec<String> {
    let mut engine = engine_for(&table.config);
    table
        .cases
        .iter()
        .filter_map(|case| {
            let got = decide(&mut engine, &case.host(NOW));
            (got != case.want).then(|| format!("{class} {:?}: got {got:?}, want {:?}", case.name, case.want))
        })
        .collect()
}

#[test]
fn the_401_table() {
    let table = cases::untrusted(NOW);
    assert_eq!(run("401", &table, verdict), Vec::<String>::new());
    for case in &table.cases {
        if let Some(reason) = case.want {
            assert_eq!(reason.status(), 401, "{}: a case of the 401 table is a 401", case.name);
        }
    }
}

#[test]
fn the_403_table() {
    let table = cases::forbidden(NOW, json!({"value": "eu-west-1"}));
    assert_eq!(run("403", &table, verdict), Vec::<String>::new());
    for case in &table.cases {
        if let Some(reason) = case.want {
            assert_eq!(reason.class(), Class::Forbidden, "{}: a case of the 403 table is a 403", case.name);
        }
    }
    // The wasm build's source of the region: node metadata.
    let node = cases::forbidden(NOW, json!({"node_metadata": "REGION"}));
    let mut engine = engine_for(&node.config);
    for case in &node.cases {
        let host = case.host(NOW).property(&["xds", "node", "metadata", "REGION"], "eu-west-1");
        assert_eq!(verdict(&mut engine, &host), case.want, "403 (region from node metadata) {:?}", case.name);
    }
}

#[test]
fn the_503_table() {
    let table = cases::unavailable(NOW);
    assert_eq!(run("503", &table, verdict_store_silent), Vec::<String>::new());
    assert!(table.cases.iter().any(|c| c.want.is_some_and(|r| r.status() == 503)), "the 503 table has a 503");
}

/// Every table has both refusals and allowed edges, and no case name twice (the
/// messages tell cases apart by name).
#[test]
fn the_tables_are_well_formed() {
    for (class, table) in cases::all_at_now() {
        assert!(table.cases.iter().any(|c| c.want.is_some()), "{class}: no refusal");
        assert!(table.allowed() > 0, "{class}: no allowed edge");
        let mut names: Vec<&str> = table.cases.iter().map(|c| c.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "{class}: a case name appears twice");
    }
}
