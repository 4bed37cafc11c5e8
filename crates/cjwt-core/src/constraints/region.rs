//! The `region` constraint (SPEC §3): the request's region (from the configured
//! source, [`RequestView::region`]) equals one of the listed names. Without a
//! region source every request is refused.

use crate::reason::Reason;
use crate::request::view::RequestView;
use serde_json::Value;

/// Compiles the `region` value: a list of region names, or a single one.
pub fn parse(value: &Value) -> Result<Vec<String>, String> {
    Ok(super::strings("region", value)?.into_iter().map(str::to_owned).collect())
}

/// Holds when the request's region equals one of `regions`.
pub fn check(regions: &[String], view: &RequestView<'_>) -> Result<(), Reason> {
    let region = view.region().ok_or(Reason::Region)?;
    if regions.iter().any(|r| r == region) {
        Ok(())
    } else {
        Err(Reason::Region)
    }
}

/// Whether `child` allows no region `parent` refuses (SPEC §16): its regions
/// are a subset. A value that does not parse is not within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    match (parse(parent), parse(child)) {
        (Ok(parent), Ok(child)) => child.iter().all(|c| parent.contains(c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientIpSource, RegionSource};
    use crate::request::view::test_host::TestHost;
    use serde_json::json;

    #[test]
    fn the_region_must_equal_one() {
        let host = TestHost::new("GET", "/")
            .header("x-region", "eu-west-1")
            .property(&["xds", "node", "metadata", "region"], "us-east-1");
        let header = RegionSource::Header("x-region".into());
        let metadata = RegionSource::NodeMetadata("region".into());
        let fixed = RegionSource::Static("ap-south-1".into());
        let missing = RegionSource::Header("x-none".into());
        // (constraint value, region source, want)
        let table: &[(Value, Option<&RegionSource>, Result<(), Reason>)] = &[
            (json!(["eu-west-1"]), Some(&header), Ok(())),
            (json!("eu-west-1"), Some(&header), Ok(())),
            (json!(["us-east-1", "eu-west-1"]), Some(&header), Ok(())),
            (json!(["EU-WEST-1"]), Some(&header), Err(Reason::Region)),
            (json!(["us-east-1"]), Some(&metadata), Ok(())),
            (json!(["eu-west-1"]), Some(&metadata), Err(Reason::Region)),
            (json!(["ap-south-1"]), Some(&fixed), Ok(())),
            (json!(["eu-west-1"]), Some(&missing), Err(Reason::Region)),
            (json!(["eu-west-1"]), None, Err(Reason::Region)),
            (json!([]), Some(&header), Err(Reason::Region)),
        ];
        for (value, source, want) in table {
            let regions = parse(value).unwrap();
            let view = RequestView::new(&host, ClientIpSource::Peer, *source, &[]);
            assert_eq!(check(&regions, &view), *want, "{value} {source:?}");
        }
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        for bad in [json!({"x": 1}), json!([1]), json!(3)] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
