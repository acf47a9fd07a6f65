//! SQLite store (`DIR/kestrel.db`): events, alerts, gaps and agents.
//!
//! One connection behind a mutex is the single writer; async callers go through
//! `spawn_blocking`. Ingest writes through [`Store::write_group`]: many batches in one
//! transaction, one commit (group commit, driven by [`crate::pipeline`]). WAL journal with
//! `synchronous=FULL`, so a committed batch survives a power loss before the collector
//! acknowledges it. SQLite integers are signed: u64 values (epoch,
//! sequence numbers, times) are stored bit-for-bit as i64 and read back with `as u64`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kestrel_proto::{Event, Gap, Heartbeat, Hello};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};

use crate::alert::Alert;
use crate::alerting::{self, Admission, Policy};
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
    last_time_unix_ns   INTEGER NOT NULL,
    reason              TEXT    NOT NULL DEFAULT '',
    first_seq           INTEGER NOT NULL DEFAULT 0,
    last_seq            INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agents (
    identity            TEXT    PRIMARY KEY,
    agent_version       TEXT    NOT NULL,
    hostname            TEXT    NOT NULL,
    kernel_release      TEXT    NOT NULL,
    epoch               INTEGER NOT NULL,
    connected_unix_ns   INTEGER NOT NULL,
    last_seen_unix_ns   INTEGER NOT NULL,
    last_heartbeat      TEXT,
    silent_since_unix_ns INTEGER
);
PRAGMA user_version = 1;
";

/// An agent as silence detection sees it in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLiveness {
    /// The agent's identity.
    pub identity: String,
    /// When it was last heard from (Hello or heartbeat), Unix ns.
    pub last_seen_unix_ns: u64,
    /// Since when (Unix ns) it has been silent, if `agent silent` was raised and it has not
    /// been heard from since.
    pub silent_since_unix_ns: Option<u64>,
}

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

/// Page size of a new database. Events are about a kilobyte each: on 4 KiB pages an events
/// leaf holds three of them and inserts split pages all the time; larger pages mean fewer
/// splits and fewer (larger) WAL frames per commit.
const PAGE_SIZE: i64 = 16 * 1024;

/// Page cache of the writer connection. A group commit of up to
/// [`crate::pipeline::MAX_GROUP_EVENTS`] events dirties tens of MiB; with the default 2 MiB
/// SQLite would spill pages to the WAL mid-transaction and read them back.
const CACHE_SIZE_KIB: i64 = 64 * 1024;

const INSERT_EVENT: &str = "INSERT OR IGNORE INTO events \
     (identity, epoch, seq, time_unix_ns, kind, pid, exe, exec_id, json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Writes inside one open transaction of [`Store::write_group`]: events (deduplicated) and
/// alerts. Nothing is durable until the group commits.
pub struct GroupWriter<'c> {
    conn: &'c Connection,
    insert_event: CachedStatement<'c>,
    /// Events this group added (the running count in `counters` is raised by it at commit).
    inserted: i64,
}

impl GroupWriter<'_> {
    /// Inserts `event` (stamped with its sequence number) unless (identity, epoch, seq) is
    /// already stored; `json` is the event serialized ([`event_json`]). True when it was new.
    pub fn insert_event(
        &mut self,
        identity: &str,
        epoch: u64,
        event: &Event,
        json: &str,
    ) -> Result<bool, StoreError> {
        let process = event.process.as_ref();
        let inserted = self.insert_event.execute(params![
            identity,
            sql(epoch),
            sql(event.seq),
            sql(event.time_unix_ns),
            event::kind(event),
            process.map_or(0, |p| p.pid),
            process.map_or("", |p| p.exe.as_str()),
            process.map_or("", |p| p.exec_id.as_str()),
            json,
        ])?;
        self.inserted += i64::from(inserted > 0);
        Ok(inserted > 0)
    }

    /// Admits `alert` under `policy` at `now_unix_ns` (suppression, dedup, rate limit, outbox
    /// rows); returns it with its row id when it became a new alert.
    pub fn admit(
        &mut self,
        policy: &Policy,
        alert: Alert,
        now_unix_ns: u64,
    ) -> Result<Option<Alert>, StoreError> {
        match alerting::admit::admit(self.conn, policy, alert, now_unix_ns, &[])? {
            Admission::Created(alert) => Ok(Some(*alert)),
            _ => Ok(None),
        }
    }
}

/// An event as the `json` column stores it.
pub fn event_json(event: &Event) -> Result<String, StoreError> {
    Ok(serde_json::to_string(event)?)
}

/// Appends `event` as the `json` column stores it ([`event_json`]) to `buf`, so a whole batch
/// can share one buffer instead of an allocation (grown several times) per event.
pub fn append_event_json(buf: &mut Vec<u8>, event: &Event) -> Result<(), StoreError> {
    Ok(serde_json::to_writer(buf, event)?)
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
        // Takes effect only when the file is created (before WAL mode writes its header).
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)
            .map_err(open_err)?;
        crate::checkpoint::configure(&conn).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        migrate_gaps(&conn).map_err(open_err)?;
        add_missing_columns(&conn, "agents", &[("silent_since_unix_ns", "INTEGER")])
            .map_err(open_err)?;
        count_events(&conn).map_err(open_err)?;
        alerting::schema::create(&conn).map_err(open_err)?;
        let conn = Arc::new(Mutex::new(conn));
        crate::checkpoint::spawn(path, Arc::downgrade(&conn));
        Ok(Store { conn })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction behind (rusqlite rolls back
        // on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection (blocking: call from a blocking context or through
    /// [`run`](Self::run)). The alerting layer keeps its queries in its own modules.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut self.lock())
    }

    /// [`write_batch_with`](Self::write_batch_with) under [`Policy::store_only`]: every alert
    /// of a new event is stored, none is folded, limited or queued for a sink.
    pub fn write_batch(
        &self,
        identity: &str,
        epoch: u64,
        records: &[EventRecord],
    ) -> Result<Vec<Alert>, StoreError> {
        let now = crate::clock::now_unix_ns();
        self.write_batch_with(identity, epoch, records, &Policy::store_only(), now)
    }

    /// Stores a batch in one transaction: each event with `INSERT OR IGNORE` on
    /// (identity, epoch, seq), and the alerts of the events that were new, admitted under
    /// `policy` (suppression, dedup, rate limit, outbox rows for the sinks) at `now_unix_ns`.
    /// Returns the newly created alerts with their row ids; duplicates (already stored events)
    /// yield no alert.
    pub fn write_batch_with(
        &self,
        identity: &str,
        epoch: u64,
        records: &[EventRecord],
        policy: &Policy,
        now_unix_ns: u64,
    ) -> Result<Vec<Alert>, StoreError> {
        self.write_group(|w| {
            let mut stored = Vec::new();
            for record in records {
                let json = event_json(&record.event)?;
                if !w.insert_event(identity, epoch, &record.event, &json)? {
                    continue;
                }
                for alert in &record.alerts {
                    stored.extend(w.admit(policy, alert.clone(), now_unix_ns)?);
                }
            }
            Ok(stored)
        })
    }

    /// Runs `f` in one transaction and commits it (one WAL fsync, however many batches `f`
    /// writes). When `f` fails nothing it wrote is kept. Holds the single writer throughout.
    pub fn write_group<T>(
        &self,
        f: impl FnOnce(&mut GroupWriter<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let (result, inserted) = {
            let mut writer = GroupWriter {
                conn: &tx,
                insert_event: tx.prepare_cached(INSERT_EVENT)?,
                inserted: 0,
            };
            (f(&mut writer)?, writer.inserted)
        };
        add_to_event_count(&tx, inserted)?;
        tx.commit()?;
        Ok(result)
    }

    /// Deletes up to `max_rows` of the oldest events whose time is before `before_unix_ns` (the
    /// retention window, see [`crate::retention`]); returns how many were deleted. Alerts keep
    /// their own copy of their evidence and are not touched.
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

    /// How many events the store holds: a running count kept with every insert and deletion,
    /// so reading it costs nothing however large the store is (`COUNT(*)` scans an index).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        Ok(read_event_count(&self.lock())?)
    }

    /// Records a gap (events the agent lost) reported by `identity`. A sequenced gap
    /// (`first_seq` > 0) is stored once per (identity, epoch, first_seq): a resend is ignored.
    pub fn write_gap(
        &self,
        identity: &str,
        epoch: u64,
        received_unix_ns: u64,
        gap: &Gap,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR IGNORE INTO gaps (identity, epoch, received_unix_ns, kind, cpu, count, \
             first_time_unix_ns, last_time_unix_ns, reason, first_seq, last_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                identity,
                sql(epoch),
                sql(received_unix_ns),
                gap.kind,
                gap.cpu,
                sql(gap.count),
                sql(gap.first_time_unix_ns),
                sql(gap.last_time_unix_ns),
                gap.reason,
                sql(gap.first_seq),
                sql(gap.last_seq),
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

    /// Every agent the store has seen, with what silence detection needs to carry on across a
    /// collector restart.
    pub fn agent_liveness(&self) -> Result<Vec<AgentLiveness>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT identity, last_seen_unix_ns, silent_since_unix_ns FROM agents ORDER BY identity",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(AgentLiveness {
                identity: row.get(0)?,
                last_seen_unix_ns: row.get::<_, i64>(1)? as u64,
                silent_since_unix_ns: row.get::<_, Option<i64>>(2)?.map(|t| t as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that `identity` has been silent since `since` (Unix ns), or (`None`) that it
    /// is not silent.
    pub fn set_agent_silent(&self, identity: &str, since: Option<u64>) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE agents SET silent_since_unix_ns = ?2 WHERE identity = ?1",
            params![identity, since.map(sql)],
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

/// Creates the running event count of a store made before it existed (one `COUNT(*)`, once).
fn count_events(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) \
         WITHOUT ROWID",
    )?;
    if read_event_count(conn).optional()?.is_none() {
        conn.execute(
            "INSERT INTO counters (name, value) SELECT 'events', COUNT(*) FROM events",
            [],
        )?;
    }
    Ok(())
}

/// Adds `delta` to the running event count, inside the transaction that changed the events.
fn add_to_event_count(conn: &Connection, delta: i64) -> rusqlite::Result<()> {
    if delta != 0 {
        conn.execute(
            "UPDATE counters SET value = value + ?1 WHERE name = 'events'",
            [delta],
        )?;
    }
    Ok(())
}

/// The running event count (see [`Store::event_count`]); `conn` may be read-only.
pub fn read_event_count(conn: &Connection) -> rusqlite::Result<u64> {
    let value: i64 = conn.query_row(
        "SELECT value FROM counters WHERE name = 'events'",
        [],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// Adds to `table` (from a store made by an older collector) the `columns` (name, definition)
/// it lacks.
fn add_missing_columns(
    conn: &Connection,
    table: &str,
    columns: &[(&str, &str)],
) -> rusqlite::Result<()> {
    let present: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (column, definition) in columns {
        if !present.iter().any(|c| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// Brings a `gaps` table from before sequenced gaps up to date (reason and sequence columns),
/// and makes a sequenced gap unique per (identity, epoch, first_seq).
fn migrate_gaps(conn: &Connection) -> rusqlite::Result<()> {
    add_missing_columns(
        conn,
        "gaps",
        &[
            ("reason", "TEXT NOT NULL DEFAULT ''"),
            ("first_seq", "INTEGER NOT NULL DEFAULT 0"),
            ("last_seq", "INTEGER NOT NULL DEFAULT 0"),
        ],
    )?;
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS gaps_seq ON gaps (identity, epoch, first_seq) \
         WHERE first_seq > 0",
    )
}
