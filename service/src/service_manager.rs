//! systemd's service protocol (`sd_notify`), for `Type=notify` units: `READY=1` with a status
//! line once the binary does its job, `WATCHDOG=1` pings while its own liveness test holds
//! (systemd restarts a process that stops pinging for `WatchdogSec=`), and `STOPPING=1` when
//! it shuts down. Outside systemd (no `NOTIFY_SOCKET`) each call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the service is ready, with `status` for `systemctl status`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the service is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings systemd's watchdog at half its period while `alive(period)` holds, when the unit asks
/// for a watchdog (else returns at once); once it fails, pings stop and systemd restarts the
/// service.
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
            tracing::error!("liveness test failed: no more watchdog pings");
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
