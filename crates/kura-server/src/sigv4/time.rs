//! The two timestamp forms SigV4 meets: ISO 8601 basic (`20150830T123600Z`, in
//! `X-Amz-Date`) and the HTTP IMF-fixdate (`Sun, 30 Aug 2015 12:36:00 GMT`, in `Date`).
//! Proleptic Gregorian calendar, UTC, no leap seconds; no external date crate.

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix seconds of a validated civil date and time, or `None` if any field is out of range.
fn unix_from_parts(year: i64, month: i64, day: i64, h: i64, m: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..60).contains(&s)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// The value of a run of ASCII digits, or `None` if any byte is not a digit.
fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Parses `yyyymmddTHHMMSSZ` exactly (16 bytes) into Unix seconds.
pub(crate) fn parse_iso_basic(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    unix_from_parts(
        digits(&b[0..4])?,
        digits(&b[4..6])?,
        digits(&b[6..8])?,
        digits(&b[9..11])?,
        digits(&b[11..13])?,
        digits(&b[13..15])?,
    )
}

/// Parses an HTTP IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
/// The day name is checked for form only, as HTTP recipients do.
pub(crate) fn parse_imf_fixdate(s: &str) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let b = s.as_bytes();
    // "Sun, 06 Nov 1994 08:49:37 GMT" is 29 bytes.
    if b.len() != 29
        || !b[0..3].iter().all(u8::is_ascii_alphabetic)
        || &b[3..5] != b", "
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || b[19] != b':'
        || b[22] != b':'
        || &b[25..29] != b" GMT"
    {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == &b[8..11])?;
    let month = i64::try_from(month).ok()? + 1;
    unix_from_parts(
        digits(&b[12..16])?,
        month,
        digits(&b[5..7])?,
        digits(&b[17..19])?,
        digits(&b[20..22])?,
        digits(&b[23..25])?,
    )
}

/// Formats Unix seconds as `yyyymmddTHHMMSSZ`. Values are clamped to years 0000–9999 so
/// that any `i64` (a caller's clock, plus or minus a skew) formats without overflow.
pub(crate) fn format_iso_basic(unix: i64) -> String {
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let t = unix.clamp(MIN, MAX);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_basic_round_trips() {
        for (s, t) in [
            ("19700101T000000Z", 0),
            ("20150830T123600Z", 1_440_938_160),
            ("20000229T235959Z", 951_868_799),
            ("20260101T000500Z", 1_767_225_900),
            ("19691231T235959Z", -1),
            ("00000101T000000Z", -62_167_219_200),
            ("99991231T235959Z", 253_402_300_799),
        ] {
            assert_eq!(parse_iso_basic(s), Some(t), "{s}");
            assert_eq!(format_iso_basic(t), s);
        }
    }

    #[test]
    fn iso_basic_rejects_malformed() {
        for s in [
            "",
            "20150830T123600",
            "20150830T123600z",
            "20150830 123600Z",
            "2015-08-30T12:36:00Z",
            "20150830T123600Z ",
            "20151330T123600Z",
            "20150230T123600Z",
            "20190229T000000Z",
            "20150800T123600Z",
            "20150830T243600Z",
            "20150830T126000Z",
            "20150830T123660Z",
            "2015083OT123600Z",
            "+0150830T123600Z",
            "２0150830T123600",
        ] {
            assert_eq!(parse_iso_basic(s), None, "{s:?}");
        }
    }

    #[test]
    fn imf_fixdate() {
        assert_eq!(
            parse_imf_fixdate("Sun, 30 Aug 2015 12:36:00 GMT"),
            Some(1_440_938_160)
        );
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(951_868_799)
        );
        for s in [
            "Sun, 30 Aug 2015 12:36:00 UTC",
            "Sun, 30 Foo 2015 12:36:00 GMT",
            "Sun, 31 Sep 2015 12:36:00 GMT",
            "Sunday, 30-Aug-15 12:36:00 GMT",
            "Sun Aug 30 12:36:00 2015",
            "Sun, 30 Aug 2015 12:36:00 GMT ",
        ] {
            assert_eq!(parse_imf_fixdate(s), None, "{s:?}");
        }
    }

    #[test]
    fn format_clamps_extremes() {
        assert_eq!(format_iso_basic(i64::MIN), "00000101T000000Z");
        assert_eq!(format_iso_basic(i64::MAX), "99991231T235959Z");
    }
}
