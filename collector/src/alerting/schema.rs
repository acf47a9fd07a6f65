//! The alerting tables, created (and the `alerts` table extended) when the store opens.

use rusqlite::Connection;

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

const TABLES: &str = "
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
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('alerts')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (column, definition) in ALERT_COLUMNS {
        if !existing.iter().any(|c| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE alerts ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    conn.execute_batch(TABLES)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
