//! SQLite store (`DIR/kestrel.db`): events, alerts, gaps and agents.
//!
//! One connection behind a mutex is the single writer; async callers go through
//! `spawn_blocking`. WAL journal with `synchronous=FULL`, so a committed batch survives a power
//! loss before the collector acknowledges it. SQLite integers are signed: u64 values (epoch,
//! sequence numbers, times) are stored bit-for-bit as i64 and read back with `as u64`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kestrel_proto::{Event, Gap, Heartbeat, Hello};
use rusqlite::{params, Connection};

use crate::alert::Alert;
use crate::event;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "kestrel.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    identity     TEXT    NOT NULL,
    epoch        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    time_unix_ns INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    exe          TEXT    NOT NULL,
    exec_id      TEXT    NOT NULL,
    json         TEXT    NOT NULL,
    PRIMARY KEY (identity, epoch, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_time ON events (time_unix_ns);
CREATE INDEX IF NOT EXISTS events_exec_id ON events (identity, exec_id);
CREATE TABLE IF NOT EXISTS alerts (
    id           INTEGER PRIMARY KEY,
    time_unix_ns INTEGER NOT NULL,
    rule_id      TEXT    NOT NULL,
    rule_title   TEXT    NOT NULL,
    level        TEXT    NOT NULL,
    identity     TEXT    NOT NULL,
    exec_id      TEXT    NOT NULL,
    json         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time_unix_ns);
CREATE TABLE IF NOT EXISTS gaps (
    id                  INTEGER PRIMARY KEY,
    identity            TEXT    NOT NULL,
    epoch               INTEGER NOT NULL,
    received_unix_ns    INTEGER NOT NULL,
    kind                TEXT    NOT NULL,
    cpu                 INTEGER NOT NULL,
    count               INTEGER NOT NULL,
    first_time_unix_ns  INTEGER NOT NULL,
    last_time_unix_ns   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    identity            TEXT    PRIMARY KEY,
    agent_version       TEXT    NOT NULL,
    hostname            TEXT    NOT NULL,
    kernel_release      TEXT    NOT NULL,
    epoch               INTEGER NOT NULL,
    connected_unix_ns   INTEGER NOT NULL,
    last_seen_unix_ns   INTEGER NOT NULL,
    last_heartbeat      TEXT
);
PRAGMA user_version = 1;
";

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

/// One event of a batch with the alerts its rules produced.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The event, already stamped with host identity and sequence number.
    pub event: Event,
    /// Alerts for this event; stored only when the event is new (not a duplicate).
    pub alerts: Vec<Alert>,
}

/// Handle on the store; cheap to clone, all clones share the single writer.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

fn sql(v: u64) -> i64 {
    v as i64
}

impl Store {
    /// Opens (creating when missing) `dir/kestrel.db`, creating `dir` as needed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction behind (rusqlite rolls back
        // on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a batch in one transaction: each event with `INSERT OR IGNORE` on
    /// (identity, epoch, seq), and the alerts of the events that were new. Returns the stored
    /// alerts with their row ids; duplicates (already stored events) yield no alert.
    pub fn write_batch(
        &self,
        identity: &str,
        epoch: u64,
        records: &[EventRecord],
    ) -> Result<Vec<Alert>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut stored = Vec::new();
        {
            let mut insert_event = tx.prepare_cached(
                "INSERT OR IGNORE INTO events \
                 (identity, epoch, seq, time_unix_ns, kind, pid, exe, exec_id, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut insert_alert = tx.prepare_cached(
                "INSERT INTO alerts \
                 (id, time_unix_ns, rule_id, rule_title, level, identity, exec_id, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut next_id: i64 =
                tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM alerts", [], |r| {
                    r.get(0)
                })?;
            for record in records {
                let e = &record.event;
                let process = e.process.as_ref();
                let inserted = insert_event.execute(params![
                    identity,
                    sql(epoch),
                    sql(e.seq),
                    sql(e.time_unix_ns),
                    event::kind(e),
                    process.map_or(0, |p| p.pid),
                    process.map_or("", |p| p.exe.as_str()),
                    process.map_or("", |p| p.exec_id.as_str()),
                    serde_json::to_string(e)?,
                ])?;
                if inserted == 0 {
                    continue;
                }
                for alert in &record.alerts {
                    let mut alert = alert.clone();
                    alert.id = Some(next_id);
                    next_id += 1;
                    insert_alert.execute(params![
                        alert.id,
                        sql(alert.time_unix_ns),
                        alert.rule.id,
                        alert.rule.title,
                        alert.rule.level,
                        identity,
                        alert.process.exec_id,
                        serde_json::to_string(&alert)?,
                    ])?;
                    stored.push(alert);
                }
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    /// Records a gap (events the agent lost) reported by `identity`.
    pub fn write_gap(
        &self,
        identity: &str,
        epoch: u64,
        received_unix_ns: u64,
        gap: &Gap,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO gaps (identity, epoch, received_unix_ns, kind, cpu, count, \
             first_time_unix_ns, last_time_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                identity,
                sql(epoch),
                sql(received_unix_ns),
                gap.kind,
                gap.cpu,
                sql(gap.count),
                sql(gap.first_time_unix_ns),
                sql(gap.last_time_unix_ns),
            ],
        )?;
        Ok(())
    }

    /// Records that `identity` opened a stream with this Hello.
    pub fn write_hello(
        &self,
        identity: &str,
        now_unix_ns: u64,
        hello: &Hello,
    ) -> Result<(), StoreError> {
        let kernel = hello
            .capabilities
            .as_ref()
            .map_or("", |c| c.kernel_release.as_str());
        self.lock().execute(
            "INSERT INTO agents (identity, agent_version, hostname, kernel_release, epoch, \
             connected_unix_ns, last_seen_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
             ON CONFLICT (identity) DO UPDATE SET agent_version = excluded.agent_version, \
             hostname = excluded.hostname, kernel_release = excluded.kernel_release, \
             epoch = excluded.epoch, connected_unix_ns = excluded.connected_unix_ns, \
             last_seen_unix_ns = excluded.last_seen_unix_ns",
            params![
                identity,
                hello.agent_version,
                hello.hostname,
                kernel,
                sql(hello.spool_epoch),
                sql(now_unix_ns),
            ],
        )?;
        Ok(())
    }

    /// Records a heartbeat from `identity` (last seen time and the statistics as JSON).
    pub fn write_heartbeat(
        &self,
        identity: &str,
        now_unix_ns: u64,
        heartbeat: &Heartbeat,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE agents SET last_seen_unix_ns = ?2, last_heartbeat = ?3 WHERE identity = ?1",
            params![
                identity,
                sql(now_unix_ns),
                serde_json::to_string(heartbeat)?
            ],
        )?;
        Ok(())
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
