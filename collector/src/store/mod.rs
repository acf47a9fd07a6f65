//! SQLite store (`DIR/kestrel.db`): events, alerts, gaps, agents, and the enrolment's join
//! tokens, issued certificates and revocations. The only module that
//! speaks SQL: every other part of the collector calls the typed functions here and gets plain
//! Rust values back.
//!
//! One connection behind a mutex is the single writer; async callers go through
//! `spawn_blocking`. Ingest writes through [`Store::write_group`]: many batches in one
//! transaction, one commit (group commit, driven by the ingest pipeline). WAL journal with
//! `synchronous=FULL`, so a committed batch survives a power loss before the collector
//! acknowledges it. SQLite integers are signed: u64 values (epoch,
//! sequence numbers, times) are stored bit-for-bit as i64 and read back with `as u64`.

mod admission;
mod agents;
mod alerts;
mod certificates;
mod checkpoint;
mod events;
mod gaps;
mod join_tokens;
mod outbox;
mod probe;
mod rate_limits;
pub mod retention;
mod schema;
mod sequences;
mod stats;
mod suppressions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use admission::AdmissionTx;
pub use agents::{AgentLiveness, AgentRow};
pub use alerts::{AlertAck, OpenAlert};
pub use certificates::{IssuedCertificate, Revoked};
pub use events::{append_event_json, event_digest, event_json, EventFilter, GroupWriter, Inserted};
pub use gaps::GapRow;
pub use join_tokens::TokenRefusal;
pub use outbox::{DeliveryState, Pending, SinkBacklog};
pub use rate_limits::RateWindow;
pub use stats::StoreStats;
pub use suppressions::{Matcher, Suppression};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "kestrel.db";

/// Page size of a new database. Events are about a kilobyte each: on 4 KiB pages an events
/// leaf holds three of them and inserts split pages all the time; larger pages mean fewer
/// splits and fewer (larger) WAL frames per commit.
const PAGE_SIZE: i64 = 16 * 1024;

/// Page cache of the writer connection. A group commit of up to
/// `pipeline::MAX_GROUP_EVENTS` events dirties tens of MiB; with the default 2 MiB
/// SQLite would spill pages to the WAL mid-transaction and read them back.
const CACHE_SIZE_KIB: i64 = 64 * 1024;

/// How long a statement waits for another connection's lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("data directory {}: {source}", dir.display())]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Opening or preparing the database failed.
    #[error("database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The store was migrated by a newer collector: this one would write rows that schema does
    /// not expect, so it leaves the store alone (roll forward, or restore the copy taken before
    /// the upgrade).
    #[error(
        "database {}: schema version {found} was written by a newer collector; this one knows \
         up to {known} (run the newer collector, or restore the copy taken before upgrading)",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        found: i64,
        /// [`schema::SCHEMA_VERSION`].
        known: i64,
    },
    /// A read or write failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An event or alert could not be serialized.
    #[error("serializing a record: {0}")]
    Json(#[from] serde_json::Error),
    /// The blocking task running the statement panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

/// How [`connect`] opens the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and write, creating the file when it is missing (the collector's writer).
    Create,
    /// Read and write an existing file (command-line tools next to a running collector).
    ReadWrite,
    /// Read an existing file only (metrics scrapes).
    ReadOnly,
}

/// Opens a connection to the database file at `path`: the one place a connection is made.
fn connect(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    let flags = match access {
        Access::Create => OpenFlags::default(),
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Handle on the store; cheap to clone, all clones share the single writer.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// A u64 as SQLite stores it (bit-for-bit as i64).
fn sql(v: u64) -> i64 {
    v as i64
}

impl Store {
    /// Opens (creating when missing) `dir/kestrel.db`, creating `dir` as needed, brings its
    /// schema up to date and starts the background WAL checkpoints. The directory is created
    /// 0700, the database and its WAL and shared-memory files are 0600 whatever the umask
    /// (SQLite gives the WAL and shared memory the database file's mode).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let dir_err = |source| StoreError::DataDir {
            dir: dir.to_path_buf(),
            source,
        };
        crate::private_files::create_dir(dir).map_err(dir_err)?;
        let path = dir.join(DB_FILE);
        crate::private_files::restrict_sqlite_files(&path).map_err(dir_err)?;
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = connect(&path, Access::Create).map_err(open_err)?;
        // Takes effect only when the file is created (before WAL mode writes its header).
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)
            .map_err(open_err)?;
        checkpoint::configure(&conn).map_err(open_err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open_err)?;
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found,
                known: schema::SCHEMA_VERSION,
            });
        }
        schema::create(&conn).map_err(open_err)?;
        let conn = Arc::new(Mutex::new(conn));
        checkpoint::spawn(path, Arc::downgrade(&conn));
        Ok(Store { conn })
    }

    /// Opens the existing `dir/kestrel.db` as it is (no schema change, no checkpoints): for
    /// tools that read the store of a collector that may be running.
    pub fn open_existing(dir: &Path, access: Access) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        let conn = connect(&path, access).map_err(|source| StoreError::Open { path, source })?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction behind (rusqlite rolls back
        // on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a store operation on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}
