//! How often one source address may try to enrol: a fixed one-minute window per address, so
//! a peer guessing join tokens or replaying service account tokens is slowed to a trickle while
//! a fleet enrolling from many addresses is not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window attempts are counted in.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered before old windows are forgotten.
const MAX_ADDRESSES: usize = 16 * 1024;

/// Enrolment attempts by source address.
#[derive(Debug)]
pub struct Attempts {
    per_window: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Attempts {
    /// At most `per_minute` attempts per address per minute.
    pub fn new(per_minute: u32) -> Attempts {
        Attempts {
            per_window: per_minute,
            seen: Mutex::default(),
        }
    }

    /// Counts an attempt from `address` at `now`; `Err` with how long until it may try again
    /// when it is over the limit.
    pub fn attempt(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_ADDRESSES {
            seen.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if seen.len() >= MAX_ADDRESSES {
                // Every address is in a live window: a flood from many addresses. Refuse
                // newcomers until windows expire rather than grow without bound.
                return Err(WINDOW);
            }
        }
        let (start, count) = seen.entry(address).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_window {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_limit_waits_for_the_next_window_and_others_do_not() {
        let attempts = Attempts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(attempts.attempt(a, t0).is_ok());
        assert!(attempts.attempt(a, t0).is_ok());
        let wait = attempts
            .attempt(a, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(attempts.attempt(b, t0).is_ok());
        assert!(attempts.attempt(a, t0 + WINDOW).is_ok());
    }
}
