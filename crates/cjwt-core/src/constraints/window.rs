//! Time-window constraints (SPEC §3 `window`): days, `start` inclusive, `end`
//! exclusive, `end < start` spans midnight, `tz` as `UTC`, `±HH:MM` or an IANA name
//! (daylight saving applied by the tz database). The instant is the host clock,
//! never the request's or the token's.

use crate::constraints::tz::Zone;
use crate::reason::Reason;
use serde_json::Value;

/// Compiles the `window` value: a list of window objects, or a single one.
pub fn parse(value: &Value) -> Result<Vec<Window>, String> {
    let list: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        _ => return Err("window: not a list of windows".into()),
    };
    list.into_iter().map(|w| Window::parse(w).map_err(|e| format!("window: {e}"))).collect()
}

/// Holds when `now` (host clock, Unix seconds) lies inside one of `windows`.
pub fn check(windows: &[Window], now: i64) -> Result<(), Reason> {
    if windows.iter().any(|w| w.contains(now)) {
        Ok(())
    } else {
        Err(Reason::Window)
    }
}

impl super::Footprint for Window {
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// Whether `child` allows no instant `parent` refuses (SPEC §16): every child
/// window lies inside a parent window ([`Window::within`]). A value that does
/// not parse is not within (fail closed).
pub fn within(parent: &Value, child: &Value) -> bool {
    let (Ok(parent), Ok(child)) = (parse(parent), parse(child)) else {
        return false;
    };
    child.iter().all(|c| parent.iter().any(|p| c.within(p)))
}

/// One compiled window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Bit `n` set = weekday `n` (Monday = 0) allowed.
    days: u8,
    /// Minutes after local midnight, `start` in 0..1440, `end` in 1..=1440.
    start: u16,
    end: u16,
    zone: Zone,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    /// Parses one window object. Unknown members, bad times, unknown zones and
    /// `start == end` are errors.
    pub fn parse(value: &Value) -> Result<Window, String> {
        let obj = value.as_object().ok_or("window must be an object")?;
        if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "days" | "start" | "end" | "tz")) {
            return Err(format!("unknown window member {k:?}"));
        }
        let days = match obj.get("days") {
            None => 0x7f,
            Some(v) => {
                let list: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    single => vec![single],
                };
                let mut bits = 0u8;
                for d in list {
                    let name = d.as_str().ok_or("days must be strings")?;
                    let index =
                        DAY_NAMES.iter().position(|n| *n == name).ok_or_else(|| format!("unknown day {name:?}"))?;
                    bits |= 1 << index;
                }
                bits
            }
        };
        let start = parse_hhmm(obj.get("start").and_then(Value::as_str).ok_or("window needs `start`")?, false)?;
        let end = parse_hhmm(obj.get("end").and_then(Value::as_str).ok_or("window needs `end`")?, true)?;
        if start == end {
            return Err("window `start` equals `end`".into());
        }
        let zone = match obj.get("tz") {
            None => Zone::Fixed(0),
            Some(Value::String(tz)) => Zone::parse(tz)?,
            Some(_) => return Err("`tz` must be a string".into()),
        };
        Ok(Window { days, start, end, zone })
    }

    /// True when every instant of this window lies inside `parent` (SPEC §16):
    /// the same zone, a subset of its days, and the same kind of interval
    /// (within a day, or across midnight) inside its hours.
    pub fn within(&self, parent: &Window) -> bool {
        let days = self.days & !parent.days == 0;
        let same_kind = (self.start < self.end) == (parent.start < parent.end);
        self.zone == parent.zone && days && same_kind && parent.start <= self.start && self.end <= parent.end
    }

    /// True when the instant `now` (Unix seconds) lies inside this window.
    pub fn contains(&self, now: i64) -> bool {
        let local = now.saturating_add(i64::from(self.zone.offset_at(now)));
        let days = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday: Monday = 0.
        let weekday = u8::try_from((days + 3).rem_euclid(7)).unwrap_or(0);
        let minute = u16::try_from(local.rem_euclid(86_400) / 60).unwrap_or(0);
        let day_allowed = |d: u8| self.days & (1 << d) != 0;
        if self.start < self.end {
            day_allowed(weekday) && self.start <= minute && minute < self.end
        } else {
            // Spans midnight: the evening part belongs to the listed day, the
            // morning part to the day after it.
            (day_allowed(weekday) && minute >= self.start) || (day_allowed((weekday + 6) % 7) && minute < self.end)
        }
    }
}

/// `HH:MM`, two digits each; `24:00` only as an end.
fn parse_hhmm(s: &str, is_end: bool) -> Result<u16, String> {
    let bytes = s.as_bytes();
    let valid = bytes.len() == 5
        && bytes.get(2) == Some(&b':')
        && s.bytes().enumerate().all(|(i, b)| i == 2 || b.is_ascii_digit());
    if !valid {
        return Err(format!("time {s:?} is not HH:MM"));
    }
    let h: u16 = s.get(0..2).and_then(|x| x.parse().ok()).ok_or("hour")?;
    let m: u16 = s.get(3..5).and_then(|x| x.parse().ok()).ok_or("minute")?;
    let total = h * 60 + m;
    let ok = m < 60 && (h < 24 || (is_end && h == 24 && m == 0));
    if ok {
        Ok(total)
    } else {
        Err(format!("time {s:?} is out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        crate::constraints::tz::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60
    }

    fn w(v: Value) -> Window {
        Window::parse(&v).unwrap()
    }

    #[test]
    fn start_is_inclusive_end_exclusive() {
        let win = w(json!({"start": "09:00", "end": "17:30"}));
        assert!(!win.contains(at(2026, 11, 30, 8, 59)));
        assert!(win.contains(at(2026, 11, 30, 9, 0)));
        assert!(win.contains(at(2026, 11, 30, 17, 29)));
        assert!(!win.contains(at(2026, 11, 30, 17, 30)));
        assert!(win.contains(at(2026, 11, 30, 17, 29) + 59), "17:29:59 is inside");
    }

    #[test]
    fn days_restrict_and_default_to_all() {
        // 2026-11-30 is a Monday, 2026-11-29 a Sunday.
        let weekdays = w(json!({"days": ["mon", "tue", "wed", "thu", "fri"], "start": "00:00", "end": "24:00"}));
        assert!(weekdays.contains(at(2026, 11, 30, 12, 0)));
        assert!(!weekdays.contains(at(2026, 11, 29, 12, 0)));
        let single = w(json!({"days": "sun", "start": "00:00", "end": "24:00"}));
        assert!(single.contains(at(2026, 11, 29, 23, 59)));
    }

    #[test]
    fn midnight_span_belongs_to_the_starting_day() {
        let night = w(json!({"days": ["fri"], "start": "22:00", "end": "02:00"}));
        // Friday 2026-11-27 23:00 and Saturday 01:59 are inside; Saturday 02:00 and Friday 01:00 are not.
        assert!(night.contains(at(2026, 11, 27, 23, 0)));
        assert!(night.contains(at(2026, 11, 28, 1, 59)));
        assert!(!night.contains(at(2026, 11, 28, 2, 0)));
        assert!(!night.contains(at(2026, 11, 27, 1, 0)));
        assert!(!night.contains(at(2026, 11, 28, 22, 0)), "Saturday evening is not Friday");
    }

    #[test]
    fn fixed_offsets_shift_local_time() {
        let win = w(json!({"start": "09:00", "end": "10:00", "tz": "+05:30"}));
        assert!(win.contains(at(2026, 11, 30, 3, 30)));
        assert!(!win.contains(at(2026, 11, 30, 4, 30)));
        let west = w(json!({"start": "09:00", "end": "10:00", "tz": "-08:00"}));
        assert!(west.contains(at(2026, 11, 30, 17, 0)));
    }

    #[test]
    fn iana_zones_follow_daylight_saving() {
        let berlin = w(json!({"start": "09:00", "end": "10:00", "tz": "Europe/Berlin"}));
        // Winter (CET, +1): 09:00 local = 08:00 UTC. Summer (CEST, +2): 09:00 local = 07:00 UTC.
        assert!(berlin.contains(at(2026, 1, 15, 8, 0)));
        assert!(!berlin.contains(at(2026, 1, 15, 7, 0)));
        assert!(berlin.contains(at(2026, 7, 15, 7, 0)));
        assert!(!berlin.contains(at(2026, 7, 15, 8, 0)));
    }

    #[test]
    fn malformed_windows_are_refused() {
        for bad in [
            json!({"start": "9:00", "end": "17:00"}),
            json!({"start": "09:00", "end": "17:60"}),
            json!({"start": "24:00", "end": "01:00"}),
            json!({"start": "09:00", "end": "09:00"}),
            json!({"start": "09:00"}),
            json!({"start": "09:00", "end": "10:00", "tz": "Mars/Olympus"}),
            json!({"start": "09:00", "end": "10:00", "tz": "+5:00"}),
            json!({"start": "09:00", "end": "10:00", "tz": "+19:00"}),
            json!({"start": "09:00", "end": "10:00", "days": ["monday"]}),
            json!({"start": "09:00", "end": "10:00", "extra": 1}),
            json!("09:00-10:00"),
        ] {
            assert!(Window::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_constraint_holds_inside_one_window() {
        // 2026-11-30 is a Monday.
        let monday_10 = at(2026, 11, 30, 10, 0);
        // (constraint value, instant, want)
        let table: &[(Value, i64, Result<(), Reason>)] = &[
            (json!([{"start": "09:00", "end": "17:00"}]), monday_10, Ok(())),
            (json!({"start": "09:00", "end": "17:00"}), monday_10, Ok(())),
            (json!([{"start": "11:00", "end": "17:00"}]), monday_10, Err(Reason::Window)),
            (json!([{"start": "11:00", "end": "12:00"}, {"start": "10:00", "end": "10:01"}]), monday_10, Ok(())),
            (json!([{"start": "10:00", "end": "11:00"}]), monday_10 - 1, Err(Reason::Window)),
            (json!([{"start": "09:00", "end": "10:00"}]), monday_10, Err(Reason::Window)),
            (json!([{"days": ["sat", "sun"], "start": "00:00", "end": "24:00"}]), monday_10, Err(Reason::Window)),
            (json!([{"days": "sun", "start": "22:00", "end": "10:01"}]), monday_10, Ok(())),
            (json!([{"start": "11:00", "end": "12:00", "tz": "+01:00"}]), monday_10, Ok(())),
            (json!([{"start": "11:00", "end": "12:00", "tz": "Europe/Berlin"}]), monday_10, Ok(())),
            (json!([]), monday_10, Err(Reason::Window)),
        ];
        for (value, now, want) in table {
            let windows = parse(value).unwrap();
            assert_eq!(check(&windows, *now), *want, "{value} at {now}");
        }
    }

    #[test]
    fn malformed_constraint_values_are_refused() {
        for bad in [json!("always"), json!(7), json!([{"start": "25:00", "end": "01:00"}]), json!(["09:00-10:00"])] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
