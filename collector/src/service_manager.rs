//! systemd's service protocol (`sd_notify`), for `Type=notify` units: `READY=1` once agents
//! can connect, `WATCHDOG=1` pings while the runtime answers (systemd restarts a collector
//! that stops answering for `WatchdogSec=`), and `STOPPING=1` when it drains. Outside
//! systemd (no `NOTIFY_SOCKET`) each call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Tells systemd the collector is ready: listening, rules loaded, store open.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the collector is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings systemd's watchdog at half its period until `stop`, when the unit asks for one.
pub async fn watchdog(stop: CancellationToken) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut every = tokio::time::interval(Duration::from_micros(usec) / 2);
    loop {
        tokio::select! {
            _ = every.tick() => notify(&[NotifyState::Watchdog]),
            () = stop.cancelled() => return,
        }
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "cannot notify systemd");
    }
}
