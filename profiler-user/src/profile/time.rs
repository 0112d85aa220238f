//! Wall-clock times broken down in UTC, as file names, titles and the
//! manifest spell them.

use std::time::{SystemTime, UNIX_EPOCH};

/// A wall-clock time broken down in UTC, without pulling in a date crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// Times before 1970 (a badly set clock) clamp to the epoch and times
    /// past year 9999 to its end, instead of panicking.
    pub(crate) fn from_system(time: SystemTime) -> Self {
        const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).min(MAX_SECS) as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `20261126T123000Z`, as in file names.
    pub(crate) fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-11-26`.
    pub(crate) fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `12:30:00`.
    pub(crate) fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_matches_humantime() {
        for secs in [0u64, 59, 951_782_400 /* 2000-02-29 */, 1_795_696_200, 4_102_444_799, 253_402_300_799] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let utc = UtcTime::from_system(t);
            let expected = humantime::format_rfc3339_seconds(t).to_string();
            assert_eq!(format!("{}T{}Z", utc.date(), utc.time()), expected);
        }
        let t = UNIX_EPOCH + Duration::from_secs(1_795_696_200);
        assert_eq!(UtcTime::from_system(t).compact(), "20261126T123000Z");
        assert_eq!(UtcTime::from_system(UNIX_EPOCH - Duration::from_secs(5)).compact(), "19700101T000000Z");
    }
}
