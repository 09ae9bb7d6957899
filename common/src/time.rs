//! Wall-clock milliseconds and civil (calendar) dates.
//!
//! RocketMQ stamps messages, names index files and schedules retention with
//! `System.currentTimeMillis()` and Java's calendar; these are the same facts without
//! a date crate: [`now_ms`] is the one place the workspace reads the wall clock as
//! epoch milliseconds, and [`DateTime`] splits a millisecond instant into calendar
//! fields at a given offset from UTC (the caller supplies the offset, so this module
//! stays free of time-zone lookups).

use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_DAY: i64 = 86_400_000;

/// Milliseconds since the Unix epoch (`System.currentTimeMillis()`); 0 if the clock
/// reads before the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Calendar fields of an instant: proleptic Gregorian, 24-hour clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    /// 0..=23
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millisecond: u32,
}

impl DateTime {
    /// The calendar fields of `ms` (since the epoch) at `offset_secs` east of UTC.
    pub fn from_ms(ms: i64, offset_secs: i32) -> Self {
        let local = ms + i64::from(offset_secs) * 1000;
        let (days, rem) = (local.div_euclid(MS_PER_DAY), local.rem_euclid(MS_PER_DAY));
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (rem / 3_600_000) as u32,
            minute: (rem / 60_000 % 60) as u32,
            second: (rem / 1000 % 60) as u32,
            millisecond: (rem % 1000) as u32,
        }
    }

    /// `yyyyMMddHHmmssSSS`, the shape of RocketMQ's index file names.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}{:03}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond
        )
    }
}

/// Start of the month (at `offset_secs` east of UTC) containing `ms`, and start of the
/// next month, both as epoch milliseconds.
pub fn month_bounds(ms: i64, offset_secs: i32) -> (i64, i64) {
    let offset_ms = i64::from(offset_secs) * 1000;
    let days = (ms + offset_ms).div_euclid(MS_PER_DAY);
    let (y, m, _) = civil_from_days(days);
    let start = days_from_civil(y, m, 1) * MS_PER_DAY - offset_ms;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, days_from_civil(ny, nm, 1) * MS_PER_DAY - offset_ms)
}

// Howard Hinnant's civil-date algorithms: exact proleptic Gregorian conversions
// without pulling in a date crate for two computations.

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date (month 1..=12).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ms: i64, offset_secs: i32, expected: &str) {
        assert_eq!(DateTime::from_ms(ms, offset_secs).compact(), expected);
    }

    #[test]
    fn compact_names() {
        check(0, 0, "19700101000000000");
        // 2024-02-29T13:14:15.678Z
        check(1_709_212_455_678, 0, "20240229131415678");
        // the same instant in UTC+8 and UTC-5
        check(1_709_212_455_678, 8 * 3600, "20240229211415678");
        check(1_709_212_455_678, -5 * 3600, "20240229081415678");
        // before the epoch
        check(-1, 0, "19691231235959999");
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 59, 60, 10_957, 19_782, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn months() {
        // 2024-02-29T13:14:15.678Z: February 2024 in UTC
        let (start, next) = month_bounds(1_709_212_455_678, 0);
        assert_eq!(DateTime::from_ms(start, 0).compact(), "20240201000000000");
        assert_eq!(DateTime::from_ms(next, 0).compact(), "20240301000000000");
        // In UTC+12 that instant is already 1 March.
        let (start, _) = month_bounds(1_709_212_455_678, 12 * 3600);
        assert_eq!(DateTime::from_ms(start, 12 * 3600).compact(), "20240301000000000");
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
