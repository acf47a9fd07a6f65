//! The retention window of events: events older than it (by event time) are deleted from the
//! store, oldest first, so the store holds recent events for investigation and does not grow
//! until the disk is full. Alerts (with their evidence), gaps and agents are kept.
//!
//! Deletion goes in steps of at most [`STEP_ROWS`] rows, each its own short transaction on the
//! store's one connection, so the store writer waits at most one step between two groups.

use std::time::Duration;

use rusqlite::params;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::events::add_to_event_count;
use super::{sql, Store, StoreError};
use crate::clock::now_unix_ns;

/// Events are kept this long unless `--event-retention` says otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most rows one deletion step removes.
pub const STEP_ROWS: usize = 10_000;

/// Longest pause between two prunes (shorter for short windows: a tenth of the window).
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// `serve` options of the event store.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct StoreArgs {
    /// How long stored events are kept, by event time (e.g. `7d`, `36h`); `0s` keeps them
    /// forever. Alerts, with the events they cite as evidence, are always kept.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub event_retention: Duration,
}

impl Default for StoreArgs {
    fn default() -> StoreArgs {
        StoreArgs {
            event_retention: DEFAULT_WINDOW,
        }
    }
}

/// Prunes events older than `window` now and then every interval until `stop` (nothing when
/// the window is zero).
pub async fn run(store: Store, window: Duration, stop: CancellationToken) {
    if window.is_zero() {
        return;
    }
    let interval = (window / 10).clamp(Duration::from_millis(100), MAX_INTERVAL);
    let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    loop {
        let cutoff = now_unix_ns().saturating_sub(window_ns);
        match prune(&store, cutoff).await {
            Ok(0) => {}
            Ok(deleted) => info!(
                deleted,
                retention = %humantime::format_duration(window),
                "deleted events older than the retention window"
            ),
            Err(e) => warn!(error = %e, "deleting expired events failed; retrying later"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Deletes every event whose time is before `cutoff_unix_ns`, step by step; returns how many.
pub async fn prune(store: &Store, cutoff_unix_ns: u64) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let deleted = store
            .run(move |store| store.prune_events(cutoff_unix_ns, STEP_ROWS))
            .await?;
        total += deleted;
        if deleted < STEP_ROWS {
            return Ok(total);
        }
    }
}

impl Store {
    /// Deletes up to `max_rows` of the oldest events whose time is before `before_unix_ns` (the
    /// retention window); returns how many were deleted. Alerts keep their own copy of their
    /// evidence and are not touched.
    pub fn prune_events(&self, before_unix_ns: u64, max_rows: usize) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let deleted = tx.execute(
            "DELETE FROM events WHERE (identity, epoch, seq) IN \
             (SELECT identity, epoch, seq FROM events WHERE time_unix_ns < ?1 \
              ORDER BY time_unix_ns LIMIT ?2)",
            params![
                sql(before_unix_ns),
                i64::try_from(max_rows).unwrap_or(i64::MAX)
            ],
        )?;
        add_to_event_count(&tx, -i64::try_from(deleted).unwrap_or(i64::MAX))?;
        tx.commit()?;
        Ok(deleted)
    }
}
