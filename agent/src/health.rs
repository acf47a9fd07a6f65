//! What `/healthz` and `/readyz` answer (served by [`crate::endpoint`]).
//!
//! Alive (`/healthz`): the process answers HTTP. Ready (`/readyz`): the eBPF programs are
//! loaded with at least one hook attached, and the ring buffer reader has made progress
//! within [`RING_STALL`] (it completes a pass at least every poll interval, 20 ms, unless the
//! stages after it have stopped taking records, which leaves the kernel dropping events).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use kestrel_service::readiness::{Check, Readiness};

/// The ring reader not having finished a pass for this long makes the agent not ready.
pub const RING_STALL: Duration = Duration::from_secs(5);

/// The agent's health as the stages report it; shared with the endpoint.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// `(attached, unavailable)` hooks once the programs are loaded.
    hooks: Mutex<Option<(usize, usize)>>,
    reader: ReadProgress,
}

/// The ring reader's heartbeat: it calls [`ReadProgress::mark`] after every pass.
#[derive(Debug, Clone)]
pub struct ReadProgress {
    started: Instant,
    /// Milliseconds after `started` of the last pass, plus one (0: none yet).
    last_pass_ms: Arc<AtomicU64>,
}

impl ReadProgress {
    /// Notes that the reader finished a pass over the ring now.
    pub fn mark(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_pass_ms.store(ms + 1, Ordering::Relaxed);
    }

    /// How long ago the last pass finished; `None` before the first.
    pub fn since_last_pass(&self) -> Option<Duration> {
        match self.last_pass_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}

impl Health {
    /// Nothing loaded, nothing read yet: not ready.
    pub fn new() -> Arc<Health> {
        let started = Instant::now();
        Arc::new(Health {
            started,
            hooks: Mutex::new(None),
            reader: ReadProgress {
                started,
                last_pass_ms: Arc::new(AtomicU64::new(0)),
            },
        })
    }

    /// Records that the programs are loaded with `attached` hooks attached and `unavailable`
    /// ones this kernel refused.
    pub fn programs_loaded(&self, attached: usize, unavailable: usize) {
        *self.hooks.lock().unwrap_or_else(|p| p.into_inner()) = Some((attached, unavailable));
    }

    /// The handle the ring reader marks its passes with.
    pub fn read_progress(&self) -> ReadProgress {
        self.reader.clone()
    }

    /// The checks now.
    pub fn readiness(&self) -> Readiness {
        let hooks = *self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        let programs = match hooks {
            None => Check {
                name: "programs_attached",
                ok: false,
                detail: format!(
                    "eBPF programs not loaded yet ({:.1}s after start)",
                    self.started.elapsed().as_secs_f64()
                ),
            },
            Some((attached, unavailable)) => Check {
                name: "programs_attached",
                ok: attached > 0,
                detail: format!("{attached} hooks attached, {unavailable} unavailable"),
            },
        };
        let ring = match self.reader.since_last_pass() {
            None => Check {
                name: "ring_read",
                ok: false,
                detail: "the ring buffer reader has not started".into(),
            },
            Some(ago) => Check {
                name: "ring_read",
                ok: ago < RING_STALL,
                detail: format!(
                    "last pass over the ring buffer {:.3}s ago",
                    ago.as_secs_f64()
                ),
            },
        };
        let checks = vec![programs, ring];
        Readiness::of(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_programs_are_attached_and_the_ring_is_read() {
        let health = Health::new();
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert!(readiness.checks.iter().all(|c| !c.ok), "{readiness:?}");

        health.programs_loaded(0, 12);
        health.read_progress().mark();
        let readiness = health.readiness();
        assert!(!readiness.ready, "no hook attached: {readiness:?}");

        health.programs_loaded(40, 2);
        let readiness = health.readiness();
        assert!(readiness.ready, "{readiness:?}");
        assert_eq!(
            readiness.checks[0].detail,
            "40 hooks attached, 2 unavailable"
        );
    }

    #[test]
    fn a_reader_that_stopped_passing_makes_the_agent_not_ready() {
        // Started RING_STALL ago, with its only pass right at the start.
        let started = Instant::now().checked_sub(RING_STALL).expect("uptime");
        let stalled = Health {
            started,
            hooks: Mutex::new(Some((40, 0))),
            reader: ReadProgress {
                started,
                last_pass_ms: Arc::new(AtomicU64::new(1)),
            },
        };
        let readiness = stalled.readiness();
        assert!(!readiness.ready, "{readiness:?}");
        assert!(!readiness.checks[1].ok);
        stalled.read_progress().mark();
        assert!(stalled.readiness().ready);
    }
}
