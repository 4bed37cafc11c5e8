//! cjwt's compact zone table (current POSIX rules) agrees with the full IANA
//! database (chrono-tz) on the UTC offset, for every zone, every 6 hours over
//! 2026–2030 and at every transition instant ±1 s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code fails loudly

use chrono::{Offset, TimeZone};
use cjwt_core::constraints::tz::Zone;
use cjwt_core::constraints::tzdb::ZONES;

/// Zones whose future does not follow a fixed rule: Morocco suspends daylight
/// saving for Ramadan every year (listed transitions, not a POSIX rule).
const RULE_EXCEPTIONS: [&str; 2] = ["Africa/Casablanca", "Africa/El_Aaiun"];

#[test]
fn offsets_agree_with_the_iana_database_2026_to_2030() {
    let start = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let end = 1_924_992_000i64; // 2031-01-01T00:00:00Z
    let mut compared = 0u64;
    let mut missing = Vec::new();
    for (name, _) in ZONES {
        if RULE_EXCEPTIONS.contains(name) {
            continue;
        }
        let Ok(tz) = name.parse::<chrono_tz::Tz>() else {
            missing.push(*name);
            continue;
        };
        let ours = Zone::parse(name).unwrap();
        let theirs = |t: i64| {
            tz.offset_from_utc_datetime(&chrono::DateTime::from_timestamp(t, 0).unwrap().naive_utc())
                .fix()
                .local_minus_utc()
        };
        let mut prev = theirs(start);
        let mut t = start;
        while t < end {
            let now = theirs(t);
            if now != prev {
                // Find the transition to the second within the last 6 hours, and check around it.
                let (mut lo, mut hi) = (t - 21_600, t);
                while hi - lo > 1 {
                    let mid = (lo + hi) / 2;
                    if theirs(mid) == prev {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                for probe in [hi - 1, hi, hi + 1] {
                    assert_eq!(ours.offset_at(probe), theirs(probe), "{name} at {probe}");
                    compared += 1;
                }
                prev = now;
            }
            assert_eq!(ours.offset_at(t), now, "{name} at {t}");
            compared += 1;
            t += 21_600;
        }
    }
    assert!(missing.len() < 10, "zones chrono-tz does not know: {missing:?}");
    assert!(compared > 3_000_000, "{compared}");
}
