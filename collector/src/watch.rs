//! The poll loop behind every file the collector re-reads while it runs (TLS files, the
//! deny-list): one place that decides how often and how a slow check delays the next.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `check` every `interval` until `stop` is cancelled. A check slower than the interval
/// delays the next one rather than letting missed ticks fire back to back.
pub async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => check().await,
        }
    }
}
