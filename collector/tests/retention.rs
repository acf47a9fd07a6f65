//! The retention window of events: a collector deletes events older than `--event-retention`
//! (by event time), oldest first and in bounded steps, and keeps newer events and every alert.

mod common;
mod mtls_env;

use std::path::Path;
use std::time::Duration;

use kestrel_collector::alert::Alert;
use kestrel_collector::alerting::{EventRecord, WriteBatch};
use kestrel_collector::clock::now_unix_ns;
use kestrel_collector::store::{Store, DB_FILE};
use kestrel_detect::Rule;
use rusqlite::Connection;

use mtls_env::{Harness, DEADLINE};

const HOUR_NS: u64 = 3_600_000_000_000;

/// Events of `identity` at the given times (seq 1, 2, …); the shadow read among them alerts.
fn records(identity: &str, times: &[u64]) -> Vec<EventRecord> {
    let rule = Rule::from_yaml(Path::new("shadow.yml"), common::SHADOW_RULE).unwrap();
    times
        .iter()
        .zip(1..)
        .map(|(&time, seq)| {
            let mut event = if seq == 1 {
                common::shadow_exec_event()
            } else {
                common::harmless_exec_event()
            };
            event.host = identity.into();
            event.seq = seq;
            event.time_unix_ns = time;
            let alerts = if seq == 1 {
                vec![Alert::new(&rule, &event, 1)]
            } else {
                Vec::new()
            };
            EventRecord { event, alerts }
        })
        .collect()
}

/// The sequence numbers of the stored events, and the number of alerts.
fn stored(data: &Path) -> (Vec<i64>, i64) {
    let db = Connection::open(data.join(DB_FILE)).unwrap();
    let mut statement = db.prepare("SELECT seq FROM events ORDER BY seq").unwrap();
    let seqs = statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<i64>, _>>()
        .unwrap();
    let alerts = db
        .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .unwrap();
    (seqs, alerts)
}

#[test]
fn prune_deletes_the_oldest_events_before_the_cutoff_a_step_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .write_batch("node-1", 1, &records("node-1", &[100, 400, 200, 300]))
        .unwrap();

    assert_eq!(
        store.prune_events(250, 1).unwrap(),
        1,
        "one step of one row"
    );
    assert_eq!(
        stored(dir.path()),
        (vec![2, 3, 4], 1),
        "the oldest (seq 1) went first"
    );
    assert_eq!(store.prune_events(250, 10).unwrap(), 1);
    assert_eq!(
        store.prune_events(250, 10).unwrap(),
        0,
        "nothing older is left"
    );
    assert_eq!(
        stored(dir.path()),
        (vec![2, 4], 1),
        "events at or after the cutoff stay; the alert on a deleted event stays"
    );
}

#[tokio::test]
async fn a_collector_deletes_events_older_than_its_retention_window_and_keeps_alerts() {
    let now = now_unix_ns();
    let mut data = None;
    let harness = Harness::start_with(&[("shadow.yml", common::SHADOW_RULE)], |args| {
        args.store.event_retention = Duration::from_secs(3600);
        let store = Store::open(&args.data).unwrap();
        let times = [now - 3 * HOUR_NS, now - 2 * HOUR_NS, now - HOUR_NS / 2, now];
        store
            .write_batch("node-1", 1, &records("node-1", &times))
            .unwrap();
        data = Some(args.data.clone());
    })
    .await;
    let data = data.unwrap();

    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut seen = stored(&data);
    while seen.0.len() > 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = stored(&data);
    }
    assert_eq!(
        seen,
        (vec![3, 4], 1),
        "the two events older than 1 h are deleted at start; the newer ones and the alert stay"
    );
    harness.shutdown().await;
}
