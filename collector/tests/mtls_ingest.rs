//! In-process collector over real mTLS: agents with a valid certificate get their batches
//! stored, detected and acknowledged; anyone else is refused without disturbing them.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{write, Issued, TestCa, SHADOW_RULE};
use kestrel_collector::cli::ServeArgs;
use kestrel_collector::serve::Collector;
use kestrel_collector::store::DB_FILE;
use kestrel_proto::agent_message::Msg;
use kestrel_proto::collector_message;
use kestrel_proto::ingest_client::IngestClient;
use kestrel_proto::{AgentMessage, CollectorMessage, Event, EventBatch, Gap, Hello};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status, Streaming};

const DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    dir: tempfile::TempDir,
    ca: TestCa,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), kestrel_collector::serve::ServeError>>,
}

impl Harness {
    async fn start() -> Harness {
        // Collector logs show in a failing test's output (and with --nocapture).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("kestrel_collector=debug")
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("kestrel test CA");
        let server_cert = ca.server();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        write(&rules, "shadow.yml", SHADOW_RULE);
        let args = ServeArgs {
            listen: "127.0.0.1:0".into(),
            cert: write(dir.path(), "collector.pem", &server_cert.cert_pem),
            key: write(dir.path(), "collector-key.pem", &server_cert.key_pem),
            client_ca: write(dir.path(), "ca.pem", &ca.cert_pem),
            rules,
            data: dir.path().join("data"),
            alerts_jsonl: Some(dir.path().join("alerts.jsonl")),
            config: None,
            agents: Default::default(),
        };
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

    fn alerts_jsonl(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    /// The alert lines, once the first one arrived: alerts reach the JSON-lines sink through
    /// the outbox, just after the batch is acknowledged.
    async fn alert_lines(&self) -> Vec<serde_json::Value> {
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

    fn count(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.dir.path().join("data").join(DB_FILE)).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Connects with `client`'s certificate, trusting the test CA for the server.
    async fn connect(&self, client: &Issued) -> Result<IngestClient<Channel>, Status> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca.cert_pem))
            .identity(Identity::from_pem(&client.cert_pem, &client.key_pem))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(DEADLINE)
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
        Ok(IngestClient::new(channel))
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("collector must stop within the deadline")
            .unwrap()
            .unwrap();
    }
}

/// One agent stream: send messages, receive collector messages.
struct AgentStream {
    tx: mpsc::Sender<AgentMessage>,
    rx: Streaming<CollectorMessage>,
}

fn hello(epoch: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Hello(Hello {
            agent_version: "test".into(),
            hostname: "liar".into(),
            spool_epoch: epoch,
            ..Hello::default()
        })),
    }
}

fn batch(first_seq: u64, events: Vec<Event>) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Batch(EventBatch { first_seq, events })),
    }
}

async fn open_stream(
    client: &mut IngestClient<Channel>,
    first: AgentMessage,
) -> Result<AgentStream, Status> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(first).await.unwrap();
    let response = tokio::time::timeout(DEADLINE, client.stream(ReceiverStream::new(rx)))
        .await
        .expect("stream must open or fail within the deadline")?;
    Ok(AgentStream {
        tx,
        rx: response.into_inner(),
    })
}

impl AgentStream {
    async fn send(&self, msg: AgentMessage) {
        self.tx.send(msg).await.unwrap();
    }

    async fn next(&mut self) -> Result<Option<CollectorMessage>, Status> {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("no collector message within the deadline")
    }

    async fn ack(&mut self) -> u64 {
        match self.next().await.unwrap().and_then(|m| m.msg) {
            Some(collector_message::Msg::Ack(ack)) => ack.up_to_seq,
            other => panic!("expected an Ack, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn valid_agent_batch_is_stored_detected_and_acked() {
    let h = Harness::start().await;
    let agent = h.ca.agent("web-1");
    let mut client = h.connect(&agent).await.unwrap();
    let mut stream = open_stream(&mut client, hello(7)).await.unwrap();

    let events = vec![common::harmless_exec_event(), common::shadow_exec_event()];
    stream.send(batch(100, events.clone())).await;
    assert_eq!(stream.ack().await, 101);

    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 2);
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM events WHERE identity = 'spiffe://kestrel.local/node/web-1' \
             AND epoch = 7 AND seq IN (100, 101) \
             AND json_extract(json, '$.host') = 'spiffe://kestrel.local/node/web-1'"
        ),
        2,
        "events carry the certificate identity and collector-assigned seqs"
    );
    let lines = h.alert_lines().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let alert = &lines[0];
    assert_eq!(alert["host"], "spiffe://kestrel.local/node/web-1");
    assert_eq!(alert["rule"]["title"], "Shadow file read with cat");
    assert_eq!(alert["process"]["command_line"], "cat /etc/shadow");
    assert_eq!(alert["ancestors"][0]["exe"], "/usr/bin/bash");
    assert_eq!(alert["event"]["seq"], 101);
    assert_eq!(h.count("SELECT COUNT(*) FROM alerts"), 1);

    // A resend of the same batch (lost ack) is acked again but stored and alerted once.
    stream.send(batch(100, events)).await;
    assert_eq!(stream.ack().await, 101);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 2);
    assert_eq!(h.alert_lines().await.len(), 1);

    // Gaps are stored and do not disturb the stream.
    stream
        .send(AgentMessage {
            msg: Some(Msg::Gap(Gap {
                kind: "exec".into(),
                cpu: 1,
                count: 5,
                ..Gap::default()
            })),
        })
        .await;
    stream
        .send(batch(102, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, 102);
    assert_eq!(h.count("SELECT COUNT(*) FROM gaps"), 1);

    h.shutdown().await;
}

#[tokio::test]
async fn client_with_certificate_from_another_ca_is_refused_while_valid_agent_continues() {
    let h = Harness::start().await;
    let mut good = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut good_stream = open_stream(&mut good, hello(1)).await.unwrap();
    good_stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(good_stream.ack().await, 0);

    let rogue_ca = TestCa::new("rogue CA");
    let rogue = rogue_ca.agent("web-1");
    let refused = match h.connect(&rogue).await {
        Err(status) => Err(status),
        Ok(mut client) => open_stream(&mut client, hello(1)).await.map(|_| ()),
    };
    assert!(
        refused.is_err(),
        "a certificate from another CA must be refused"
    );

    good_stream
        .send(batch(1, vec![common::shadow_exec_event()]))
        .await;
    assert_eq!(good_stream.ack().await, 1);
    // The valid agent can still open new connections too.
    let mut again = h.connect(&h.ca.agent("web-2")).await.unwrap();
    let mut again_stream = open_stream(&mut again, hello(1)).await.unwrap();
    again_stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(again_stream.ack().await, 0);

    h.shutdown().await;
}

#[tokio::test]
async fn silent_and_plaintext_clients_do_not_block_the_accept_loop() {
    let h = Harness::start().await;
    // A client that connects and never speaks, and one that speaks plaintext HTTP.
    let _silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut plaintext = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plaintext, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();

    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, 0);
    h.shutdown().await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let h = Harness::start().await;
    let expired =
        h.ca.issue_with(vec![common::uri(&common::spiffe("old"))], true, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
    let refused = match h.connect(&expired).await {
        Err(status) => Err(status),
        Ok(mut client) => open_stream(&mut client, hello(1)).await.map(|_| ()),
    };
    assert!(refused.is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn client_certificate_without_identity_is_refused() {
    let h = Harness::start().await;
    let anonymous = h.ca.issue(Vec::new(), true);
    let refused = match h.connect(&anonymous).await {
        Err(status) => Err(status),
        Ok(mut client) => open_stream(&mut client, hello(1)).await.map(|_| ()),
    };
    assert!(refused.is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn stream_not_starting_with_hello_is_invalid_argument() {
    let h = Harness::start().await;
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let status = match open_stream(&mut client, batch(0, vec![common::harmless_exec_event()])).await
    {
        Err(status) => status,
        Ok(mut stream) => stream.next().await.expect_err("stream must fail"),
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_as_unavailable_and_returns() {
    let h = Harness::start().await;
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, 0);

    let addr = h.addr;
    h.shutdown().await;
    let status = stream
        .next()
        .await
        .expect_err("stream must end with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The listening socket is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
