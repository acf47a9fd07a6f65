//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the threshold: that commit
//! (and so the acknowledgement of that batch, and every batch queued behind the single writer)
//! waits while pages are copied into the database and fsynced. Instead the store turns automatic
//! checkpoints off and this thread, on a connection of its own, runs a `PASSIVE` checkpoint
//! (never blocking the writer or readers) at a fixed interval. The thread ends soon after the
//! store is dropped.

use std::path::PathBuf;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use rusqlite::Connection;
use tracing::warn;

use super::{connect, Access};

/// How often the WAL is checkpointed.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// The WAL file is truncated back to at most this size after a checkpoint that reset it.
pub const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Prepares the writer connection: no automatic checkpoints, bounded WAL file.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
}

/// Checkpoints the database at `path` every [`INTERVAL`] while `store` is alive.
pub(super) fn spawn<T: Send + 'static>(path: PathBuf, store: Weak<Mutex<T>>) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let conn = match connect(&path, Access::ReadWrite) {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(db = %path.display(), error = %e, "no background checkpoints");
                    return;
                }
            };
            while store.strong_count() > 0 {
                std::thread::sleep(INTERVAL);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    warn!(db = %path.display(), error = %e, "WAL checkpoint failed");
                }
            }
            // A last one, so a store closed cleanly leaves little WAL behind.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the checkpoint thread");
    }
}
