//! Retry delays: exponential backoff with jitter.

use std::time::Duration;

/// Delay before retry number `attempt` (1 = first retry): `initial * 2^(attempt-1)`, capped at
/// `max`, then jittered to a uniformly random value in [delay/2, delay] so that sinks failing
/// together do not retry in lockstep.
pub fn delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let full = initial
        .checked_mul(1u32 << exponent.min(31))
        .unwrap_or(max)
        .min(max);
    let half = full / 2;
    let jitter_ns = fastrand::u64(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
    half + Duration::from_nanos(jitter_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_per_attempt_within_jitter_and_is_capped() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..100 {
            let first = delay(1, initial, max);
            assert!(
                first >= Duration::from_millis(50) && first <= initial,
                "{first:?}"
            );
            let third = delay(3, initial, max);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = delay(40, initial, max);
            assert!(late >= max / 2 && late <= max, "{late:?}");
        }
    }
}
