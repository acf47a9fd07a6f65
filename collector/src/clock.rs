//! The collector's one reading of the wall clock, as the store and the CLI record time:
//! nanoseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> u64 {
    unix_ns(SystemTime::now())
}

/// `time` as nanoseconds since the Unix epoch: 0 before the epoch, `u64::MAX` past 2554.
pub fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
