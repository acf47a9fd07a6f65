//! What readiness sees of each sink: whether its delivery worker runs and how many deliveries
//! in a row have failed. A sink is dead when its worker has stopped (it ended or panicked) or
//! when it has failed `meta_alert_after` times in a row (the point where the
//! `kestrel.system.sink-failing` alert goes out); one delivery that succeeds revives it.

use std::sync::{Arc, Mutex, MutexGuard};

/// One sink's delivery state, shared by its worker and `/readyz`.
#[derive(Debug)]
pub struct SinkStatus {
    name: String,
    /// Failures in a row that make the sink dead (0: failures never do).
    dead_after: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// False once the worker has stopped.
    running: bool,
    failures: u32,
    last_error: String,
}

/// Held by the worker; dropping it (the worker ends or its task panics) marks the sink dead.
#[derive(Debug)]
pub struct WorkerGuard(Arc<SinkStatus>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.0.lock().running = false;
    }
}

impl SinkStatus {
    /// The status of sink `name`, dead after `dead_after` failures in a row. Alive from the
    /// start: its worker is spawned with it, and counts as running until its
    /// [`SinkStatus::worker`] guard is dropped.
    pub fn new(name: &str, dead_after: u32) -> Arc<SinkStatus> {
        Arc::new(SinkStatus {
            name: name.to_owned(),
            dead_after,
            state: Mutex::new(State {
                running: true,
                failures: 0,
                last_error: String::new(),
            }),
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The guard the worker holds while it runs.
    pub fn worker(self: &Arc<Self>) -> WorkerGuard {
        WorkerGuard(self.clone())
    }

    /// A delivery succeeded.
    pub fn delivered(&self) {
        let mut state = self.lock();
        state.failures = 0;
        state.last_error.clear();
    }

    /// A delivery failed, the `failures`-th in a row, with `error`.
    pub fn failed(&self, failures: u32, error: &str) {
        let mut state = self.lock();
        state.failures = failures;
        state.last_error = error.to_owned();
    }

    /// `Ok` with a description when the sink is alive, `Err` saying why it is dead.
    pub fn alive(&self) -> Result<String, String> {
        let state = self.lock();
        if !state.running {
            return Err(format!("sink {}: delivery worker not running", self.name));
        }
        if self.dead_after > 0 && state.failures >= self.dead_after {
            return Err(format!(
                "sink {}: {} deliveries failed in a row (last error: {})",
                self.name, state.failures, state.last_error
            ));
        }
        Ok(format!(
            "sink {}: delivering ({} failures in a row)",
            self.name, state.failures
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_is_dead_when_its_worker_stops_or_it_keeps_failing() {
        let status = SinkStatus::new("webhook", 3);
        assert!(status.alive().is_ok(), "alive while its worker starts");
        let worker = status.worker();
        assert!(status.alive().is_ok());
        status.failed(2, "connection refused");
        assert!(status.alive().is_ok(), "below the threshold");
        status.failed(3, "connection refused");
        let dead = status.alive().unwrap_err();
        assert!(dead.contains("3 deliveries failed in a row"), "{dead}");
        assert!(dead.contains("connection refused"), "{dead}");
        status.delivered();
        assert!(status.alive().is_ok(), "one success revives it");
        drop(worker);
        assert_eq!(
            status.alive().unwrap_err(),
            "sink webhook: delivery worker not running"
        );
    }
}
