//! A collector's alerting path without the network: store, rules, ingest pipeline and alert
//! pipeline from a configuration text, with events fed as an agent's batches.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kestrel_collector::alerting::AlertPipeline;
use kestrel_collector::config;
use kestrel_collector::ingress::identity::Identity;
use kestrel_collector::pipeline::{BatchOutcome, Pipeline};
use kestrel_collector::store::{Store, DB_FILE};
use kestrel_detect::{Rule, RuleSet};
use kestrel_proto::{Event, EventBatch};
use tempfile::TempDir;

use crate::common;

/// Agent identity the events come from.
pub const HOST: &str = "spiffe://kestrel.local/node/web-1";

/// Fast retries so failure-injection tests take milliseconds.
pub const FAST_DELIVERY: &str = r#"
[delivery]
initial_backoff = "20ms"
max_backoff = "100ms"
poll_interval = "50ms"
timeout = "2s"
"#;

/// The alerting path of one collector.
pub struct Env {
    /// Data directory (the store is `DIR/kestrel.db`).
    pub dir: Arc<TempDir>,
    /// The alert pipeline (workers running).
    pub alerts: AlertPipeline,
    /// The ingest pipeline.
    pub pipeline: Pipeline,
    seq: AtomicU64,
}

impl Env {
    /// A fresh data directory and a collector configured with `config_text`.
    pub fn start(config_text: &str) -> Env {
        Env::start_in(Arc::new(tempfile::tempdir().unwrap()), config_text)
    }

    /// A collector on an existing data directory (a restart).
    pub fn start_in(dir: Arc<TempDir>, config_text: &str) -> Env {
        let settings = config::parse(config_text).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path()).unwrap();
        let alerts =
            AlertPipeline::start(store.clone(), &settings).unwrap_or_else(|e| panic!("{e:?}"));
        let rule = Rule::from_yaml(Path::new("shadow.yml"), common::SHADOW_RULE).unwrap();
        let (rules, errors) = RuleSet::from_rules(vec![rule]);
        assert!(errors.is_empty());
        let pipeline = Pipeline::new(store, Arc::new(rules), Some(alerts.clone()));
        let next: i64 = rusqlite::Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .query_row("SELECT COALESCE(MAX(seq), -1) + 1 FROM events", [], |r| {
                r.get(0)
            })
            .unwrap();
        Env {
            dir,
            alerts,
            pipeline,
            seq: AtomicU64::new(next as u64),
        }
    }

    /// Feeds events as the next batch from [`HOST`].
    pub async fn ingest(&self, events: Vec<Event>) -> BatchOutcome {
        let first_seq = self.seq.fetch_add(events.len() as u64, Ordering::SeqCst);
        self.pipeline
            .ingest_batch(&Identity::new(HOST), 1, EventBatch { first_seq, events })
            .await
            .unwrap()
            .unwrap()
    }

    /// A `cat /etc/shadow` exec that the shadow rule alerts on.
    pub fn shadow() -> Event {
        common::shadow_exec_event()
    }

    /// A shadow read by another command line (another fingerprint).
    pub fn shadow_variant(n: u32) -> Event {
        let mut event = common::shadow_exec_event();
        let process = event.process.as_mut().unwrap();
        process.argv = vec!["cat".into(), "/etc/shadow".into(), format!("/tmp/{n}")];
        event
    }

    /// One integer from SQL.
    pub fn count(&self, sql: &str) -> i64 {
        rusqlite::Connection::open(self.dir.path().join(DB_FILE))
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    /// Stops the delivery workers.
    pub async fn stop(&self) {
        self.alerts.shutdown().await;
    }
}
