//! UTC calendar arithmetic: the civil date, time and ISO week of a Unix time, for the time fields
//! and the time modifiers.

use std::fmt::Write as _;

/// Civil UTC date and time of a Unix time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcParts {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) millis: u32,
    /// ISO week number (1..=53).
    pub(crate) week: u32,
}

/// Splits a Unix time into UTC calendar parts (proleptic Gregorian, days-from-civil inverse).
pub(crate) fn utc_parts(unix_ns: u64) -> UtcParts {
    let secs = unix_ns / 1_000_000_000;
    let millis = ((unix_ns / 1_000_000) % 1000) as u32;
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    // ISO week: weekday (Monday = 1) of this day, and the ordinal day of the year.
    let weekday = (days + 3).rem_euclid(7) + 1;
    let ordinal = days - days_from_civil(year, 1, 1) + 1;
    let mut week = (ordinal - weekday + 10) / 7;
    if week < 1 {
        week = iso_weeks_in_year(year - 1);
    } else if week > iso_weeks_in_year(year) {
        week = 1;
    }
    UtcParts {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        millis,
        week: week as u32,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn iso_weeks_in_year(year: i64) -> i64 {
    // A year has 53 ISO weeks when Jan 1 is a Thursday, or a Wednesday in a leap year.
    let jan1 = (days_from_civil(year, 1, 1) + 3).rem_euclid(7) + 1;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if jan1 == 4 || (leap && jan1 == 3) {
        53
    } else {
        52
    }
}

/// Appends a Unix time in nanoseconds as `YYYY-MM-DD HH:MM:SS.fff` UTC, the text of time fields.
pub(crate) fn utc_time_into(out: &mut String, unix_ns: u64) {
    let p = utc_parts(unix_ns);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.millis
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_is_civil_time() {
        // 2023-11-14T22:13:20.123Z, a Tuesday in ISO week 46.
        let p = utc_parts(1_700_000_000_123_456_789);
        assert_eq!(
            (p.year, p.month, p.day, p.hour, p.minute, p.second, p.millis, p.week),
            (2023, 11, 14, 22, 13, 20, 123, 46)
        );
        let mut s = String::new();
        utc_time_into(&mut s, 1_700_000_000_123_456_789);
        assert_eq!(s, "2023-11-14 22:13:20.123");
        assert_eq!(utc_parts(0).week, 1, "1970-01-01 is in ISO week 1");
        // 2021-01-03 (Sunday) belongs to ISO week 53 of 2020.
        assert_eq!(utc_parts(1_609_632_000_000_000_000).week, 53);
    }
}
