//! Group commit in the ingest pipeline: batches submitted by many streams at once are all
//! stored, each resolves only with its transaction, and a failed transaction reports every
//! batch in it as not stored.

mod common;

use std::sync::Arc;

use kestrel_collector::ingress::identity::Identity;
use kestrel_collector::pipeline::{Pipeline, PipelineError};
use kestrel_collector::store::{Store, DB_FILE};
use kestrel_detect::RuleSet;
use kestrel_proto::{Event, EventBatch};

fn pipeline(dir: &std::path::Path) -> Pipeline {
    let (rules, errors) = RuleSet::from_rules(Vec::new());
    assert!(errors.is_empty());
    Pipeline::new(Store::open(dir).unwrap(), Arc::new(rules), None)
}

fn db(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(DB_FILE)).unwrap()
}

fn count_events(dir: &std::path::Path) -> i64 {
    db(dir)
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

fn events(n: usize) -> Vec<Event> {
    (0..n).map(|_| common::harmless_exec_event()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_submitted_at_once_by_many_streams_are_all_stored_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let mut pending = Vec::new();
    for b in 0..20u64 {
        for node in ["node-1", "node-2", "node-3"] {
            let batch = EventBatch {
                first_seq: b * 8,
                events: events(8),
            };
            let submitted = pipeline
                .submit_batch(&Identity::new(node), 1, batch)
                .await
                .unwrap()
                .unwrap();
            pending.push(submitted);
        }
    }
    for (i, submitted) in pending.into_iter().enumerate() {
        let want = (i as u64 / 3) * 8 + 7;
        assert_eq!(submitted.up_to_seq(), want);
        assert_eq!(submitted.await.unwrap().up_to_seq, want);
    }
    assert_eq!(count_events(dir.path()), 3 * 20 * 8);
}

#[tokio::test]
async fn batch_in_a_failed_transaction_is_reported_not_stored_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    // A real SQLite failure on seq 13, from outside the collector.
    db(dir.path())
        .execute_batch(
            "CREATE TRIGGER fail_seq_13 BEFORE INSERT ON events WHEN NEW.seq = 13 \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let batch = EventBatch {
        first_seq: 10,
        events: events(5),
    };
    let err = pipeline
        .ingest_batch(&Identity::new("node-1"), 1, batch.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::Commit(_)), "{err}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(
        count_events(dir.path()),
        0,
        "the events before the failing one are rolled back too"
    );

    // Once the store accepts it again, the resend is stored whole.
    db(dir.path())
        .execute_batch("DROP TRIGGER fail_seq_13")
        .unwrap();
    let outcome = pipeline
        .ingest_batch(&Identity::new("node-1"), 1, batch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.up_to_seq, 14);
    assert_eq!(count_events(dir.path()), 5);
}
