//! The wall clock: kernel boot-relative timestamps converted to it, and its time now.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds since the Unix epoch now.
pub fn now_unix_ns() -> u64 {
    unix_ns(SystemTime::now())
}

/// Nanoseconds since the Unix epoch of `time` (0 before the epoch).
pub fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Maps `bpf_ktime_get_boot_ns` values to nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Wall-clock time of boot, nanoseconds since the Unix epoch.
    boot_unix_ns: i128,
}

impl BootClock {
    /// Reads both clocks now to fix the offset between them.
    pub fn now() -> Self {
        let real = clock_gettime(ClockId::CLOCK_REALTIME).expect("CLOCK_REALTIME");
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME");
        let ns =
            |t: nix::sys::time::TimeSpec| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128;
        Self {
            boot_unix_ns: ns(real) - ns(boot),
        }
    }

    /// Wall-clock nanoseconds for a boot-relative timestamp.
    pub fn unix_ns(&self, boot_ns: u64) -> u64 {
        (self.boot_unix_ns + boot_ns as i128).max(0) as u64
    }

    /// Nanoseconds since boot right now.
    pub fn boot_ns_now() -> u64 {
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME");
        boot.tv_sec() as u64 * 1_000_000_000 + boot.tv_nsec() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_now_maps_to_wall_clock_now() {
        let clock = BootClock::now();
        let unix = clock.unix_ns(BootClock::boot_ns_now());
        let wall = now_unix_ns();
        assert!(
            unix.abs_diff(wall) < 1_000_000_000,
            "off by {} ns",
            unix.abs_diff(wall)
        );
    }
}
