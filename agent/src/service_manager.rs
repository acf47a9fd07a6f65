//! systemd's service protocol (`sd_notify`), for `Type=notify` units: `READY=1` once the
//! programs are attached and the ring is being read, `WATCHDOG=1` pings while the reader and
//! the pipeline run and the reader has passed over the ring within the watchdog period
//! (systemd restarts an agent whose tasks died or hung for `WatchdogSec=`), and `STOPPING=1` on shutdown. Outside systemd (no `NOTIFY_SOCKET`) each
//! call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the agent is observing: programs attached, ring read.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the agent is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings systemd's watchdog at half its period while `alive(period)` holds, when the unit asks
/// for a watchdog; once it fails, pings stop and systemd restarts the agent.
pub async fn watchdog(alive: impl Fn(Duration) -> bool) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec);
    let mut every = tokio::time::interval(period / 2);
    loop {
        every.tick().await;
        if !alive(period) {
            tracing::error!("a core task stopped: no more watchdog pings");
            return;
        }
        notify(&[NotifyState::Watchdog]);
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
