//! Times as stored in metadata databases: nanoseconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
