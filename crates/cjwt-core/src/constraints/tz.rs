//! Time zones for `window` constraints: fixed offsets and IANA zones, evaluated
//! from each zone's current POSIX TZ rule (daylight saving included).
//!
//! Windows are only ever evaluated at "now", so the rule in force today is all
//! that is needed; the table ([`super::tzdb`]) is generated from tzdata by
//! `scripts/gen-tzdb.py`. Zones whose future changes do not follow a fixed rule
//! (Africa/Casablanca and Africa/El_Aaiun, which suspend daylight saving during
//! Ramadan) are evaluated with their standard rule.

use super::tzdb::ZONES;

/// A transition day in a POSIX TZ rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Day {
    /// `Jn`: day 1..=365, February 29 never counted.
    JulianNoLeap(u16),
    /// `n`: day 0..=365, February 29 counted.
    Julian(u16),
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (1..=5, 5 = last) of month `m`.
    Month { month: u8, week: u8, weekday: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Transition {
    day: Day,
    /// Seconds after local midnight (may be negative or beyond 24 h).
    time: i32,
}

/// A parsed POSIX TZ rule. Offsets are seconds east of UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    std_offset: i32,
    dst: Option<(i32, Transition, Transition)>,
}

/// A zone: a fixed offset or a rule with daylight saving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// A constant offset, in seconds east of UTC.
    Fixed(i32),
    /// A POSIX TZ rule (standard offset and daylight-saving transitions).
    Rule(Rule),
}

impl Zone {
    /// `UTC`, `Z`, `±HH:MM`, or an IANA zone name.
    pub fn parse(tz: &str) -> Result<Zone, String> {
        if tz == "UTC" || tz == "Z" {
            return Ok(Zone::Fixed(0));
        }
        if let Some(sign) = tz.strip_prefix(['+', '-']).map(|_| if tz.starts_with('-') { -1 } else { 1 }) {
            let body = tz.get(1..).unwrap_or("");
            let bytes = body.as_bytes();
            let valid = bytes.len() == 5
                && bytes.get(2) == Some(&b':')
                && body.bytes().enumerate().all(|(i, b)| i == 2 || b.is_ascii_digit());
            let hours: i32 = body.get(0..2).and_then(|h| h.parse().ok()).unwrap_or(99);
            let minutes: i32 = body.get(3..5).and_then(|m| m.parse().ok()).unwrap_or(99);
            if !valid || minutes >= 60 || hours * 60 + minutes > 18 * 60 {
                return Err(format!("offset {tz:?} is not ±HH:MM within ±18:00"));
            }
            return Ok(Zone::Fixed(sign * (hours * 3600 + minutes * 60)));
        }
        let rule = ZONES
            .binary_search_by(|(name, _)| name.cmp(&tz))
            .ok()
            .and_then(|i| ZONES.get(i))
            .ok_or_else(|| format!("unknown time zone {tz:?}"))?
            .1;
        Rule::parse(rule).map(Zone::Rule).ok_or_else(|| format!("time zone {tz:?} has an unsupported rule"))
    }

    /// Offset from UTC (seconds east) at the instant `utc` (Unix seconds).
    pub fn offset_at(&self, utc: i64) -> i32 {
        match self {
            Zone::Fixed(o) => *o,
            Zone::Rule(r) => r.offset_at(utc),
        }
    }
}

impl Rule {
    /// Parses e.g. `CET-1CEST,M3.5.0,M10.5.0/3`, `<+0545>-5:45`, `<-02>2<-01>,M3.5.0/-1,M10.5.0/0`.
    pub fn parse(text: &str) -> Option<Rule> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        p.name()?;
        let std_offset = -p.offset()?;
        if p.done() {
            return Some(Rule { std_offset, dst: None });
        }
        p.name()?;
        let dst_offset = if p.peek() == Some(b',') { std_offset + 3600 } else { -p.offset()? };
        p.expect(b',')?;
        let start = p.transition()?;
        p.expect(b',')?;
        let end = p.transition()?;
        p.done().then_some(Rule { std_offset, dst: Some((dst_offset, start, end)) })
    }

    fn offset_at(&self, utc: i64) -> i32 {
        let Some((dst_offset, start, end)) = self.dst else {
            return self.std_offset;
        };
        let year = civil_from_days((utc + i64::from(self.std_offset)).div_euclid(86_400)).0;
        let start_utc = transition_local(start, year) - i64::from(self.std_offset);
        let end_utc = transition_local(end, year) - i64::from(dst_offset);
        let in_dst =
            if start_utc < end_utc { start_utc <= utc && utc < end_utc } else { !(end_utc <= utc && utc < start_utc) };
        if in_dst {
            dst_offset
        } else {
            self.std_offset
        }
    }
}

/// Local seconds since the epoch at which `t` happens in `year`.
fn transition_local(t: Transition, year: i64) -> i64 {
    let leap = is_leap(year);
    let jan1 = days_from_civil(year, 1, 1);
    let day = match t.day {
        Day::JulianNoLeap(n) => jan1 + i64::from(n) - 1 + i64::from(leap && n >= 60),
        Day::Julian(n) => jan1 + i64::from(n),
        Day::Month { month, week, weekday } => {
            let first = days_from_civil(year, i64::from(month), 1);
            let first_weekday = (first + 4).rem_euclid(7); // 1970-01-01 was a Thursday
            let mut d = first + (i64::from(weekday) - first_weekday).rem_euclid(7) + 7 * (i64::from(week) - 1);
            while d >= first + days_in_month(year, month) {
                d -= 7;
            }
            d
        }
    };
    day * 86_400 + i64::from(t.time)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u8) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.i += 1)
    }
    fn name(&mut self) -> Option<()> {
        if self.peek() == Some(b'<') {
            while self.peek()? != b'>' {
                self.i += 1;
            }
            self.i += 1;
            return Some(());
        }
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.i += 1;
        }
        (self.i - start >= 3).then_some(())
    }
    fn number(&mut self) -> Option<i32> {
        let start = self.i;
        let mut n: i32 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(i32::from(b - b'0'))?;
            self.i += 1;
        }
        (self.i > start).then_some(n)
    }
    /// `[+-]hh[:mm[:ss]]` in seconds (POSIX sign: positive is west of UTC).
    fn offset(&mut self) -> Option<i32> {
        let sign = match self.peek() {
            Some(b'-') => {
                self.i += 1;
                -1
            }
            Some(b'+') => {
                self.i += 1;
                1
            }
            _ => 1,
        };
        let mut secs = self.number()?.checked_mul(3600)?;
        if self.peek() == Some(b':') {
            self.i += 1;
            secs += self.number()? * 60;
            if self.peek() == Some(b':') {
                self.i += 1;
                secs += self.number()?;
            }
        }
        Some(sign * secs)
    }
    fn transition(&mut self) -> Option<Transition> {
        let day = match self.peek()? {
            b'J' => {
                self.i += 1;
                Day::JulianNoLeap(u16::try_from(self.number()?).ok().filter(|n| (1..=365).contains(n))?)
            }
            b'M' => {
                self.i += 1;
                let month = u8::try_from(self.number()?).ok().filter(|m| (1..=12).contains(m))?;
                self.expect(b'.')?;
                let week = u8::try_from(self.number()?).ok().filter(|w| (1..=5).contains(w))?;
                self.expect(b'.')?;
                let weekday = u8::try_from(self.number()?).ok().filter(|d| *d <= 6)?;
                Day::Month { month, week, weekday }
            }
            _ => Day::Julian(u16::try_from(self.number()?).ok().filter(|n| *n <= 365)?),
        };
        let time = if self.peek() == Some(b'/') {
            self.i += 1;
            self.offset()?
        } else {
            7200
        };
        Some(Transition { day, time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: i64, d: i64, h: i64, mi: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60
    }

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 11, 30), 20_787);
    }

    #[test]
    fn every_zone_in_the_table_parses() {
        for (name, rule) in ZONES {
            assert!(Rule::parse(rule).is_some(), "{name}: {rule}");
        }
        assert!(ZONES.windows(2).all(|w| w[0].0 < w[1].0), "sorted for binary search");
    }

    #[test]
    fn berlin_switches_at_0100_utc_on_the_last_sundays() {
        let z = Zone::parse("Europe/Berlin").unwrap();
        // 2026: DST from Sunday 29 March 01:00 UTC to Sunday 25 October 01:00 UTC.
        assert_eq!(z.offset_at(at(2026, 3, 29, 0, 59)), 3600);
        assert_eq!(z.offset_at(at(2026, 3, 29, 1, 0)), 7200);
        assert_eq!(z.offset_at(at(2026, 10, 25, 0, 59)), 7200);
        assert_eq!(z.offset_at(at(2026, 10, 25, 1, 0)), 3600);
    }

    #[test]
    fn southern_hemisphere_and_negative_transition_times() {
        let syd = Zone::parse("Australia/Sydney").unwrap();
        assert_eq!(syd.offset_at(at(2026, 1, 15, 0, 0)), 11 * 3600);
        assert_eq!(syd.offset_at(at(2026, 7, 15, 0, 0)), 10 * 3600);
        let nuuk = Rule::parse("<-02>2<-01>,M3.5.0/-1,M10.5.0/0").unwrap();
        assert_eq!(nuuk.offset_at(at(2026, 7, 1, 12, 0)), -3600);
        assert_eq!(nuuk.offset_at(at(2026, 1, 1, 12, 0)), -7200);
        assert_eq!(Zone::parse("Asia/Kolkata").unwrap().offset_at(0), 5 * 3600 + 1800);
    }

    #[test]
    fn fixed_offsets_and_refusals() {
        assert_eq!(Zone::parse("+05:30"), Ok(Zone::Fixed(19_800)));
        assert_eq!(Zone::parse("-08:00"), Ok(Zone::Fixed(-28_800)));
        for bad in ["+5:00", "+19:00", "+05:60", "Mars/Olympus", "europe/berlin", "", "+0530"] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }
}
