//! Civil time without a time-zone database: UTC epoch milliseconds to and from calendar
//! fields, and the timestamp spellings each vendor writes. Account time zones are fixed UTC
//! offsets (the corpus uses zones without daylight saving), so local time is exact.

/// Milliseconds per minute, hour and day.
pub const MIN: i64 = 60_000;
/// Milliseconds per hour.
pub const HOUR: i64 = 60 * MIN;
/// Milliseconds per day.
pub const DAY: i64 = 24 * HOUR;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Calendar date `(year, month, day)` of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Broken-down UTC (or local, after adding an offset) time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub y: i64,
    /// Month 1-12.
    pub mo: u32,
    /// Day 1-31.
    pub d: u32,
    /// Hour 0-23.
    pub h: u32,
    /// Minute.
    pub mi: u32,
    /// Second.
    pub s: u32,
    /// Millisecond.
    pub ms: u32,
    /// Day of the week, 0 = Monday.
    pub wd: u32,
}

/// Break epoch milliseconds down.
pub fn civil(ms: i64) -> Civil {
    let days = ms.div_euclid(DAY);
    let rem = ms.rem_euclid(DAY);
    let (y, mo, d) = civil_from_days(days);
    Civil {
        y,
        mo,
        d,
        h: (rem / HOUR) as u32,
        mi: ((rem / MIN) % 60) as u32,
        s: ((rem / 1000) % 60) as u32,
        ms: (rem % 1000) as u32,
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        wd: (days + 3).rem_euclid(7) as u32,
    }
}

/// `2026-03-02T09:00:01Z` (CloudTrail).
pub fn secs_z(ms: i64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.y, c.mo, c.d, c.h, c.mi, c.s
    )
}

/// `2026-03-02T09:00:01.123Z` (labels).
pub fn millis_z(ms: i64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.y, c.mo, c.d, c.h, c.mi, c.s, c.ms
    )
}

/// `2026-03-02T09:00:01.1230000Z` (Azure, seven fraction digits; `tail` fills the last four).
pub fn azure_z(ms: i64, tail: u32) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{:04}Z",
        c.y,
        c.mo,
        c.d,
        c.h,
        c.mi,
        c.s,
        c.ms,
        tail % 10_000
    )
}

/// `2026-03-02T09:00:01.123456789Z` (Cloud Logging, nanoseconds; `tail` fills the last six).
pub fn nanos_z(ms: i64, tail: u32) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{:06}Z",
        c.y,
        c.mo,
        c.d,
        c.h,
        c.mi,
        c.s,
        c.ms,
        tail % 1_000_000
    )
}

/// `YYYY-MM-DD` of a day number.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parse `YYYY-MM-DD` into a day number.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject 2026-02-31 and the like: the round trip must give the same date.
    (civil_from_days(days) == (y, m, d)).then_some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_weekdays() {
        let d = parse_date("2026-03-02").unwrap_or_default();
        assert_eq!(date(d), "2026-03-02");
        assert_eq!(civil(d * DAY).wd, 0, "2026-03-02 is a Monday");
        assert_eq!(secs_z(d * DAY + 9 * HOUR + 1000), "2026-03-02T09:00:01Z");
        assert_eq!(azure_z(d * DAY + 123, 4567), "2026-03-02T00:00:00.1234567Z");
        assert_eq!(parse_date("2026-02-31"), None);
        assert_eq!(
            parse_date("2024-02-29").map(date).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_date("nonsense"), None);
    }
}
