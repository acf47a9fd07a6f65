//! An in-process collector over real mTLS and agent streams to drive it: the collector is
//! `serve::Collector` on a loopback port with a throw-away PKI, the agents are tonic clients
//! (`kestrel_testkit::grpc`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kestrel_collector::cli::ServeArgs;
use kestrel_collector::serve::Collector;
use kestrel_collector::store::DB_FILE;
use kestrel_proto::ingest_client::IngestClient;
// Each test binary that includes this module uses some of these.
#[allow(unused_imports)]
pub use kestrel_testkit::grpc::{batch, hello, open_stream, AgentStream, DEADLINE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Status;

use crate::common::{write, Issued, TestCa, SHADOW_RULE};

/// A running collector with its data directory and CA.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), kestrel_collector::serve::ServeError>>,
}

impl Harness {
    /// A collector with the shadow rule only.
    pub async fn start() -> Harness {
        Harness::start_with_rules(&[("shadow.yml", SHADOW_RULE)]).await
    }

    /// A collector whose rules directory holds `rules` (file name, YAML text).
    pub async fn start_with_rules(rules: &[(&str, &str)]) -> Harness {
        Harness::start_with(rules, |_| {}).await
    }

    /// Like [`Harness::start_with_rules`], with `adjust` applied to the `serve` options (and
    /// free to prepare the data directory they name) before the collector starts.
    pub async fn start_with(
        rules: &[(&str, &str)],
        adjust: impl FnOnce(&mut ServeArgs),
    ) -> Harness {
        // Collector logs show in a failing test's output (and with --nocapture).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("kestrel_collector=debug")
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("kestrel test CA");
        let server_cert = ca.server();
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir(&rules_dir).unwrap();
        for (name, text) in rules {
            write(&rules_dir, name, text);
        }
        let mut args = ServeArgs {
            check_config: false,
            listen: "127.0.0.1:0".into(),
            cert: write(dir.path(), "collector.pem", &server_cert.cert_pem),
            key: write(dir.path(), "collector-key.pem", &server_cert.key_pem),
            client_ca: write(dir.path(), "ca.pem", &ca.cert_pem),
            rules: rules_dir,
            data: dir.path().join("data"),
            alerts_jsonl: Some(dir.path().join("alerts.jsonl")),
            config: None,
            metrics_listen: None,
            log_format: None,
            agents: Default::default(),
            store: Default::default(),
        };
        adjust(&mut args);
        let collector = Collector::start(&args).await.unwrap();
        let addr = collector.local_addr();
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(collector.run(async {
            let _ = stopped.await;
        }));
        Harness {
            dir,
            ca,
            addr,
            stop: Some(stop),
            server,
        }
    }

    /// The JSON-lines alert file.
    pub fn alerts_jsonl(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    /// The alert lines, once the first one arrived: alerts reach the JSON-lines sink through
    /// the outbox, just after the batch is acknowledged.
    pub async fn alert_lines(&self) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let text = std::fs::read_to_string(self.alerts_jsonl()).unwrap_or_default();
            if !text.is_empty() || tokio::time::Instant::now() >= deadline {
                return text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One integer from SQL on the collector's database.
    pub fn count(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.dir.path().join("data").join(DB_FILE)).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Connects with `client`'s certificate, trusting the test CA for the server.
    pub async fn connect(&self, client: &Issued) -> Result<IngestClient<Channel>, Status> {
        crate::common::connect_ingest(self.addr, &self.ca, client).await
    }

    /// Stops the collector and waits until it returned.
    pub async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("collector must stop within the deadline")
            .unwrap()
            .unwrap();
    }
}
