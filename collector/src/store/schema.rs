//! Every table of the store, created when the store opens, and the migrations that bring a
//! store made by an older collector up to date.

use rusqlite::{Connection, OptionalExtension};

use super::events::read_event_count;

const TABLES: &str = "
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
    digest       INTEGER,
    PRIMARY KEY (identity, epoch, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_time ON events (time_unix_ns);
CREATE INDEX IF NOT EXISTS events_exec ON events (identity, exec_id, time_unix_ns) WHERE kind = 'exec';
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
";

/// The schema version this collector writes (`PRAGMA user_version`): 2 added event digests
/// and the `sequences` table.
pub const SCHEMA_VERSION: i64 = 2;

/// Creates every table that is missing and migrates those of an older store, in the order the
/// migrations depend on.
pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TABLES)?;
    // Only exec events are looked up by execution (an alert's ancestry). The index of every
    // event by it that older collectors made cost a B-tree insert per file and network event,
    // and the planner did not even use it (it searched all of the host's events by the primary
    // key instead): `events_exec` holds exec events only, with their time for the newest.
    conn.execute_batch("DROP INDEX IF EXISTS events_exec_id")?;
    migrate_gaps(conn)?;
    add_missing_columns(conn, "agents", &[("silent_since_unix_ns", "INTEGER")])?;
    // Events stored before digests were kept have none: a resend of one is taken as the same.
    add_missing_columns(conn, "events", &[("digest", "INTEGER")])?;
    super::sequences::create(conn)?;
    count_events(conn)?;
    create_alerting(conn)?;
    migrate_rate_limits_per_host(conn)?;
    add_missing_columns(conn, "agents", AGENT_PID_COLUMN)?;
    super::join_tokens::create(conn)?;
    super::certificates::create(conn)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
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

/// Columns the alerting layer adds to the `alerts` table, with their definitions.
const ALERT_COLUMNS: &[(&str, &str)] = &[
    ("uid", "TEXT NOT NULL DEFAULT ''"),
    ("fingerprint", "TEXT NOT NULL DEFAULT ''"),
    ("count", "INTEGER NOT NULL DEFAULT 1"),
    ("first_seen_unix_ns", "INTEGER NOT NULL DEFAULT 0"),
    ("last_seen_unix_ns", "INTEGER NOT NULL DEFAULT 0"),
    ("acked_unix_ns", "INTEGER"),
    ("acked_by", "TEXT"),
];

const ALERTING_TABLES: &str = "
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts (fingerprint, first_seen_unix_ns);
-- Deliveries still to make: one row per (alert, sink) until delivered or dead-lettered.
CREATE TABLE IF NOT EXISTS alert_outbox (
    id                   INTEGER PRIMARY KEY,
    sink                 TEXT    NOT NULL,
    alert_id             INTEGER NOT NULL,
    enqueued_unix_ns     INTEGER NOT NULL,
    next_attempt_unix_ns INTEGER NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (sink, next_attempt_unix_ns);
-- Deliveries given up on (too old, or refused for good); `alerts replay` moves them back.
CREATE TABLE IF NOT EXISTS alert_dead_letters (
    id                   INTEGER PRIMARY KEY,
    sink                 TEXT    NOT NULL,
    alert_id             INTEGER NOT NULL,
    enqueued_unix_ns     INTEGER NOT NULL,
    failed_unix_ns       INTEGER NOT NULL,
    attempts             INTEGER NOT NULL,
    last_error           TEXT    NOT NULL
);
-- Deliveries made.
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id                   INTEGER PRIMARY KEY,
    sink                 TEXT    NOT NULL,
    alert_id             INTEGER NOT NULL,
    delivered_unix_ns    INTEGER NOT NULL,
    attempts             INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_deliveries_alert ON alert_deliveries (alert_id);
-- Suppressions: rule id (or *) plus field matchers, until an optional expiry.
CREATE TABLE IF NOT EXISTS alert_suppressions (
    id                   INTEGER PRIMARY KEY,
    rule_id              TEXT    NOT NULL,
    matchers             TEXT    NOT NULL,
    reason               TEXT    NOT NULL,
    created_unix_ns      INTEGER NOT NULL,
    expires_unix_ns      INTEGER,
    hits                 INTEGER NOT NULL DEFAULT 0,
    last_hit_unix_ns     INTEGER
);
-- Per-rule rate limit: the current window and what it let through or held back.
CREATE TABLE IF NOT EXISTS alert_rate_limits (
    rule_id              TEXT    PRIMARY KEY,
    window_start_unix_ns INTEGER NOT NULL,
    admitted             INTEGER NOT NULL,
    suppressed           INTEGER NOT NULL,
    suppressed_total     INTEGER NOT NULL
);
";

/// Creates the alerting tables and adds the alerting columns to `alerts` where missing
/// (a store created by an older collector).
fn create_alerting(conn: &Connection) -> rusqlite::Result<()> {
    add_missing_columns(conn, "alerts", ALERT_COLUMNS)?;
    conn.execute_batch(ALERTING_TABLES)
}

// Issue 12 (alert rate limits per host): `alert_rate_limits` was keyed by rule alone, so one
// host's flood of a rule silenced that rule on every host. It is now keyed by (rule, host);
// a store from before gets the new table, the old rows becoming host '' (their held-back
// totals kept, their windows closed).
// Issue 12 (tampering alerts): the agent's pid from its Hello, per identity, so that a signal
// or ptrace aimed at it raises `kestrel.system.agent-tampering`.
/// The `agents` column holding the agent's pid (0: unknown).
const AGENT_PID_COLUMN: &[(&str, &str)] = &[("agent_pid", "INTEGER NOT NULL DEFAULT 0")];

/// Re-keys `alert_rate_limits` by (rule_id, host) where it is keyed by rule alone.
fn migrate_rate_limits_per_host(conn: &Connection) -> rusqlite::Result<()> {
    let has_host: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('alert_rate_limits') WHERE name = 'host'",
        [],
        |r| r.get(0),
    )?;
    if has_host {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN;
         ALTER TABLE alert_rate_limits RENAME TO alert_rate_limits_per_rule;
         CREATE TABLE alert_rate_limits (
             rule_id              TEXT    NOT NULL,
             host                 TEXT    NOT NULL,
             window_start_unix_ns INTEGER NOT NULL,
             admitted             INTEGER NOT NULL,
             suppressed           INTEGER NOT NULL,
             suppressed_total     INTEGER NOT NULL,
             PRIMARY KEY (rule_id, host)
         );
         INSERT INTO alert_rate_limits SELECT rule_id, '', 0, 0, 0, suppressed_total
             FROM alert_rate_limits_per_rule;
         DROP TABLE alert_rate_limits_per_rule;
         COMMIT;",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events table as schema version 1 made it.
    const EVENTS_V1: &str = "CREATE TABLE events (identity TEXT NOT NULL, \
         epoch INTEGER NOT NULL, seq INTEGER NOT NULL, time_unix_ns INTEGER NOT NULL, \
         kind TEXT NOT NULL, pid INTEGER NOT NULL, exe TEXT NOT NULL, exec_id TEXT NOT NULL, \
         json TEXT NOT NULL, PRIMARY KEY (identity, epoch, seq)) WITHOUT ROWID";

    #[test]
    fn an_older_store_gains_digests_and_the_high_water_marks_of_its_events() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(EVENTS_V1).unwrap();
        conn.execute_batch(
            "INSERT INTO events VALUES ('a', 1, 5, 0, 'exec', 1, '', '', '{}'), \
             ('a', 1, 9, 0, 'exec', 1, '', '', '{}'), ('a', 2, 3, 0, 'exec', 1, '', '', '{}'); \
             PRAGMA user_version = 1;",
        )
        .unwrap();
        create(&conn).unwrap();
        create(&conn).unwrap();
        let marks: Vec<(i64, i64)> = conn
            .prepare("SELECT epoch, high_water FROM sequences ORDER BY epoch")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(marks, [(1, 9), (2, 3)]);
        let digests: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE digest IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(digests, 3, "old events have no digest");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_store_migrated_by_a_newer_collector_is_left_alone_with_both_versions_named() {
        let dir = tempfile::tempdir().unwrap();
        drop(crate::store::Store::open(dir.path()).unwrap());
        let path = dir.path().join(crate::store::DB_FILE);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = crate::store::Store::open(dir.path())
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
                && text.contains(&format!("knows up to {SCHEMA_VERSION}")),
            "{text}"
        );
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION + 1, "not migrated back");
    }

    #[test]
    fn executions_are_found_through_the_index_of_exec_events_only() {
        let conn = Connection::open_in_memory().unwrap();
        // An older store's index of every event by execution.
        conn.execute_batch(EVENTS_V1).unwrap();
        conn.execute_batch("CREATE INDEX events_exec_id ON events (identity, exec_id)")
            .unwrap();
        create(&conn).unwrap();
        create(&conn).unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(indexes.contains(&"events_exec".to_owned()), "{indexes:?}");
        assert!(
            !indexes.contains(&"events_exec_id".to_owned()),
            "{indexes:?}"
        );
        let plan: String = conn
            .query_row(
                &format!(
                    "EXPLAIN QUERY PLAN {}",
                    super::super::events::EXEC_EVENT_JSON
                ),
                ["h", "e"],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("USING INDEX events_exec ("), "{plan}");
    }

    #[test]
    fn alerts_table_of_an_older_store_gains_the_alerting_columns() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE alerts (id INTEGER PRIMARY KEY, time_unix_ns INTEGER NOT NULL, \
             rule_id TEXT NOT NULL, rule_title TEXT NOT NULL, level TEXT NOT NULL, \
             identity TEXT NOT NULL, exec_id TEXT NOT NULL, json TEXT NOT NULL); \
             INSERT INTO alerts VALUES (1, 5, 'r', 't', 'high', 'h', 'e', '{}');",
        )
        .unwrap();
        create(&conn).unwrap();
        // Twice: opening an up-to-date store changes nothing.
        create(&conn).unwrap();
        let (count, fingerprint): (i64, String) = conn
            .query_row(
                "SELECT count, fingerprint FROM alerts WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((count, fingerprint.as_str()), (1, ""));
        let pending: i64 = conn
            .query_row("SELECT COUNT(*) FROM alert_outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, 0);
    }

    #[test]
    fn per_rule_rate_limits_of_an_older_store_become_per_host_keeping_the_totals() {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        // The table as an older collector made it: keyed by rule alone.
        conn.execute_batch(
            "DROP TABLE alert_rate_limits; CREATE TABLE alert_rate_limits (rule_id TEXT PRIMARY \
             KEY, window_start_unix_ns INTEGER NOT NULL, admitted INTEGER NOT NULL, suppressed \
             INTEGER NOT NULL, suppressed_total INTEGER NOT NULL); \
             INSERT INTO alert_rate_limits VALUES ('r', 5, 100, 7, 42);",
        )
        .unwrap();
        create(&conn).unwrap();
        create(&conn).unwrap();
        let row: (String, String, i64) = conn
            .query_row(
                "SELECT rule_id, host, suppressed_total FROM alert_rate_limits",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, ("r".into(), String::new(), 42));
    }
}
