//! RFC 3339 times as image configs write them (UTC, `Z`).

use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats `t` as RFC 3339 in UTC (`2024-01-02T03:04:05.123Z`).
pub(crate) fn format_rfc3339(t: SystemTime) -> String {
    format_datetime(OffsetDateTime::from(t))
}

/// Formats `epoch` seconds as RFC 3339 in UTC.
pub(crate) fn format_epoch(epoch: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch)
        .map(format_datetime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

fn format_datetime(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parses an RFC 3339 time into Unix nanoseconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i128> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}
