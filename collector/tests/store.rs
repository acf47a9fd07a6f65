//! The SQLite store: events round-trip, duplicates are dropped and do not re-alert.

mod common;

use std::path::Path;

use kestrel_collector::alert::Alert;
use kestrel_collector::alerting::{EventRecord, WriteBatch};
use kestrel_collector::store::{Store, DB_FILE};
use kestrel_detect::Rule;
use kestrel_proto::Gap;
use rusqlite::Connection;

fn rule() -> Rule {
    Rule::from_yaml(
        Path::new("r1.yml"),
        &common::SHADOW_RULE.replace("id: 0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10", "id: r1"),
    )
    .unwrap()
}

fn records(identity: &str, epoch: u64, first_seq: u64) -> Vec<EventRecord> {
    [common::shadow_exec_event(), common::harmless_exec_event()]
        .into_iter()
        .zip(first_seq..)
        .map(|(mut event, seq)| {
            event.host = identity.into();
            event.seq = seq;
            let alerts = if event.process.as_ref().unwrap().exe.ends_with("/cat") {
                vec![Alert::new(&rule(), &event, epoch)]
            } else {
                Vec::new()
            };
            EventRecord { event, alerts }
        })
        .collect()
}

#[test]
fn stored_events_read_back_with_their_columns_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Store::open(&data).unwrap();
    let alerts = store
        .write_batch("node-1", 5, &records("node-1", 5, 10))
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].id, Some(1));

    let db = Connection::open(data.join(DB_FILE)).unwrap();
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let row: (String, i64, i64, String, i64, String, String, String) = db
        .query_row(
            "SELECT identity, epoch, seq, kind, pid, exe, exec_id, json FROM events \
             ORDER BY seq LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        (
            &row.0[..],
            row.1,
            row.2,
            &row.3[..],
            row.4,
            &row.5[..],
            &row.6[..]
        ),
        ("node-1", 5, 10, "exec", 4242, "/usr/bin/cat", "exec-4242")
    );
    let json: serde_json::Value = serde_json::from_str(&row.7).unwrap();
    assert_eq!(json["host"], "node-1");
    assert_eq!(json["process"]["argv"][1], "/etc/shadow");

    let (rule_id, identity, alert_json): (String, String, String) = db
        .query_row("SELECT rule_id, identity, json FROM alerts", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((&rule_id[..], &identity[..]), ("r1", "node-1"));
    let alert_json: serde_json::Value = serde_json::from_str(&alert_json).unwrap();
    assert_eq!(alert_json["id"], 1);
}

#[test]
fn duplicate_events_are_dropped_and_raise_no_second_alert() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .write_batch("node-1", 1, &records("node-1", 1, 0))
            .unwrap()
            .len(),
        1
    );
    // The agent resends the same batch (lost ack): nothing new.
    assert!(store
        .write_batch("node-1", 1, &records("node-1", 1, 0))
        .unwrap()
        .is_empty());
    // Same seqs in a new epoch, or from another host, are different events.
    assert_eq!(
        store
            .write_batch("node-1", 2, &records("node-1", 2, 0))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .write_batch("node-2", 1, &records("node-2", 1, 0))
            .unwrap()
            .len(),
        1
    );

    let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM events"), 6);
    assert_eq!(count("SELECT COUNT(*) FROM alerts"), 3);
}

#[test]
fn epochs_above_i64_max_round_trip_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let epoch = u64::MAX - 1;
    store
        .write_batch("node-1", epoch, &records("node-1", epoch, 0))
        .unwrap();
    assert!(store
        .write_batch("node-1", epoch, &records("node-1", epoch, 0))
        .unwrap()
        .is_empty());
    let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let stored: i64 = db
        .query_row("SELECT DISTINCT epoch FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored as u64, epoch);
}

#[test]
fn gaps_are_recorded_per_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let gap = Gap {
        kind: "exec".into(),
        cpu: 3,
        count: 17,
        first_time_unix_ns: 1,
        last_time_unix_ns: 2,
        ..Gap::default()
    };
    store.write_gap("node-1", 4, 100, &gap).unwrap();
    let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let (identity, count, cpu): (String, i64, i64) = db
        .query_row("SELECT identity, count, cpu FROM gaps", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((&identity[..], count, cpu), ("node-1", 17, 3));
}

#[test]
fn sequenced_gap_is_stored_once_and_a_store_from_before_sequenced_gaps_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A store created before gaps had a reason and sequence numbers.
        let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
        db.execute_batch(
            "CREATE TABLE gaps (id INTEGER PRIMARY KEY, identity TEXT NOT NULL, \
             epoch INTEGER NOT NULL, received_unix_ns INTEGER NOT NULL, kind TEXT NOT NULL, \
             cpu INTEGER NOT NULL, count INTEGER NOT NULL, first_time_unix_ns INTEGER NOT NULL, \
             last_time_unix_ns INTEGER NOT NULL); \
             INSERT INTO gaps VALUES (1, 'old', 1, 1, 'exec', 0, 5, 1, 2);",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let gap = Gap {
        kind: "fork".into(),
        count: 9,
        reason: "spool_full".into(),
        first_seq: 40,
        last_seq: 40,
        ..Gap::default()
    };
    store.write_gap("node-1", 4, 100, &gap).unwrap();
    store.write_gap("node-1", 4, 200, &gap).unwrap();
    store.write_gap("node-1", 5, 200, &gap).unwrap();
    let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let rows: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM gaps WHERE reason = 'spool_full' AND first_seq = 40",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 2, "once per (identity, epoch, first_seq)");
    let old: i64 = db
        .query_row("SELECT count FROM gaps WHERE identity = 'old'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(old, 5, "rows from before the migration are kept");
}

#[test]
fn reopening_the_store_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path())
        .unwrap()
        .write_batch("node-1", 1, &records("node-1", 1, 0))
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Alert ids continue after the stored ones.
    let alerts = store
        .write_batch("node-1", 1, &records("node-1", 1, 2))
        .unwrap();
    assert_eq!(alerts[0].id, Some(2));
}

#[test]
fn the_running_event_count_follows_inserts_duplicates_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let count_all = || -> i64 {
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(store.event_count().unwrap(), 0);
    store
        .write_batch("node-1", 1, &records("node-1", 1, 10))
        .unwrap();
    store
        .write_batch("node-1", 1, &records("node-1", 1, 11))
        .unwrap();
    assert_eq!(count_all(), 3, "seq 11 was a duplicate");
    assert_eq!(store.event_count().unwrap(), 3);
    assert_eq!(store.prune_events(u64::MAX >> 1, 2).unwrap(), 2);
    assert_eq!((store.event_count().unwrap(), count_all()), (1, 1));

    // A store from before the running count: it is counted once when opened.
    drop(store);
    Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .execute_batch("DROP TABLE counters")
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.event_count().unwrap(), 1);
    store
        .write_batch("node-2", 1, &records("node-2", 1, 1))
        .unwrap();
    assert_eq!((store.event_count().unwrap(), count_all()), (3, 3));
}
