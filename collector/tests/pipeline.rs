//! The ingest pipeline without the network: sequence numbers and empty batches.

mod common;

use std::sync::Arc;

use kestrel_collector::ingress::identity::Identity;
use kestrel_collector::pipeline::{Pipeline, PipelineError};
use kestrel_collector::store::{Store, DB_FILE};
use kestrel_detect::RuleSet;
use kestrel_proto::EventBatch;

fn pipeline(dir: &std::path::Path) -> Pipeline {
    let (rules, errors) = RuleSet::from_rules(Vec::new());
    assert!(errors.is_empty());
    Pipeline::new(Store::open(dir).unwrap(), Arc::new(rules), None)
}

fn count_events(dir: &std::path::Path) -> i64 {
    rusqlite::Connection::open(dir.join(DB_FILE))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn batch_whose_seqs_overflow_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let batch = EventBatch {
        first_seq: u64::MAX,
        events: vec![common::harmless_exec_event(), common::harmless_exec_event()],
    };
    let err = pipeline(dir.path())
        .ingest_batch(&Identity::new("node-1"), 1, batch)
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::SeqOverflow { .. }), "{err}");
    assert_eq!(count_events(dir.path()), 0);
}

#[tokio::test]
async fn empty_batch_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let batch = EventBatch {
        first_seq: 5,
        events: Vec::new(),
    };
    let outcome = pipeline(dir.path())
        .ingest_batch(&Identity::new("node-1"), 1, batch)
        .await
        .unwrap();
    assert_eq!(outcome, None);
}

#[tokio::test]
async fn events_get_the_identity_and_consecutive_seqs_whatever_the_agent_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let batch = EventBatch {
        first_seq: 40,
        events: vec![common::harmless_exec_event(), common::harmless_exec_event()],
    };
    let outcome = pipeline(dir.path())
        .ingest_batch(&Identity::new("node-1"), 1, batch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.up_to_seq, 41);
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT seq, json_extract(json, '$.host') FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, vec![(40, "node-1".into()), (41, "node-1".into())]);
}
