//! Timestamps as the three clouds write them, to epoch milliseconds UTC.
//!
//! Accepted: `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|z|±HH:MM|±HHMM]` (a missing zone means UTC),
//! which covers CloudTrail `eventTime`, Logstash `@timestamp`, Azure `time` with 7-digit
//! fractions, GCP `timestamp` with nanoseconds and Panther's `2021-05-20 15:53:47Z`.

/// Parse an RFC 3339 / ISO 8601 timestamp to epoch milliseconds (UTC). Fractions beyond
/// milliseconds are truncated. Returns `None` for anything else.
pub fn parse_millis(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19 {
        return None;
    }
    let year = digits(b, 0, 4)? as i64;
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_secs: i64 = if i == b.len() {
        0
    } else {
        match b[i] {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            b'+' | b'-' => {
                let sign = if b[i] == b'+' { 1 } else { -1 };
                let rest = &b[i + 1..];
                let (h, m) = match rest.len() {
                    5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                    4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                    2 => (digits(rest, 0, 2)?, 0),
                    _ => return None,
                };
                if h > 23 || m > 59 {
                    return None;
                }
                sign * i64::from(h * 3600 + m * 60)
            }
            _ => return None,
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    Some(secs * 1000 + millis)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

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

/// Format epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    push_millis(&mut out, ms);
    out
}

/// [`format_millis`] appended to `out` (digits written directly: this runs once per Azure
/// event without an id, and `format!` showed in profiles).
pub fn push_millis(out: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
    if !(0..=9999).contains(&y) {
        out.push_str(&format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z"
        ));
        return;
    }
    push_digits(out, y, 4);
    let parts: [(char, i64, u32); 6] = [
        ('-', i64::from(m), 2),
        ('-', i64::from(d), 2),
        ('T', hh, 2),
        (':', mm, 2),
        (':', ss, 2),
        ('.', millis, 3),
    ];
    for (sep, v, n) in parts {
        out.push(sep);
        push_digits(out, v, n);
    }
    out.push('Z');
}

/// The last `n` decimal digits of `v` (0 ≤ v), zero-padded.
fn push_digits(out: &mut String, v: i64, n: u32) {
    for k in (0..n).rev() {
        let digit = (v / 10_i64.pow(k)).rem_euclid(10);
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Inverse of [`days_from_civil`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_millis_matches_format() {
        let reference = |ms: i64| {
            let secs = ms.div_euclid(1000);
            let sod = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60,
                ms.rem_euclid(1000)
            )
        };
        let mut ms: i64 = -62_200_000_000_000;
        while ms < 260_000_000_000_000 {
            assert_eq!(format_millis(ms), reference(ms), "{ms}");
            ms += 791_987_654_321;
        }
        for ms in [0, 1, 999, 1_000, -1, 1_715_677_924_000, 253_402_300_799_999] {
            assert_eq!(format_millis(ms), reference(ms), "{ms}");
        }
        assert_eq!(format_millis(1_715_677_924_007), "2024-05-14T09:12:04.007Z");
    }

    #[test]
    fn vendor_shapes() {
        let base = 1_688_981_767_000; // 2023-07-10T09:36:07Z
        assert_eq!(parse_millis("2023-07-10T09:36:07Z"), Some(base));
        assert_eq!(parse_millis("2023-07-10 09:36:07Z"), Some(base));
        assert_eq!(parse_millis("2023-07-10T09:36:07"), Some(base));
        assert_eq!(
            parse_millis("2023-07-10T09:36:07.1234567Z"),
            Some(base + 123)
        );
        assert_eq!(parse_millis("2023-07-10T09:36:07.5Z"), Some(base + 500));
        assert_eq!(
            parse_millis("2023-07-10T09:36:07.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(parse_millis("2023-07-10T11:36:07+02:00"), Some(base));
        assert_eq!(parse_millis("2023-07-10T04:36:07-0500"), Some(base));
        assert_eq!(parse_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_millis("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2023-07-10",
            "2023-13-10T00:00:00Z",
            "2023-02-30T00:00:00Z",
            "2023-07-10T24:00:00Z",
            "2023-07-10T09:36:07.Z",
            "2023-07-10T09:36:07Zjunk",
            "yesterday at noon",
        ] {
            assert_eq!(parse_millis(s), None, "{s}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 1_688_981_767_123, 1_709_164_800_000, -86_400_000] {
            assert_eq!(parse_millis(&format_millis(ms)), Some(ms));
        }
    }
}
