//! Times: nanoseconds since the Unix epoch (as metadata databases store them) and
//! RFC 3339 in UTC (as lease expiry labels and image configs write them).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Nanoseconds since the Unix epoch, saturating (times before the epoch are 0, times
/// past 2262 are `i64::MAX`), for storing a time as an SQLite integer.
pub fn to_unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_unix_nanos`] (negative values are the epoch).
pub fn from_unix_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// Formats `t` as RFC 3339 in UTC (`2024-01-02T03:04:05.123Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    format_datetime(OffsetDateTime::from(t))
}

/// Formats `epoch` seconds as RFC 3339 in UTC (the epoch itself when out of range).
pub fn format_epoch(epoch: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch)
        .map(format_datetime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

fn format_datetime(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parses an RFC 3339 time into Unix nanoseconds; `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_saturation() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(from_unix_nanos(to_unix_nanos(t)), t);
        assert_eq!(to_unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(from_unix_nanos(-5), UNIX_EPOCH);
    }
}
