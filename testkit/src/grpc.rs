//! A gRPC client of the collector's ingest service over real mTLS, for tests that play an agent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kestrel_proto::agent_message::Msg;
use kestrel_proto::collector_message;
use kestrel_proto::ingest_client::IngestClient;
use kestrel_proto::{AgentMessage, CollectorMessage, Event, EventBatch, Hello};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};

use crate::pki::{Issued, TestCa};

/// How long a test waits for the collector to answer.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Connects to the collector at `url` (`https://HOST:PORT`) with this client certificate and
/// key (PEM), trusting `ca_pem` for the server name `localhost`; a failure comes back as
/// `Unavailable`.
pub async fn connect(
    url: &str,
    ca_pem: impl AsRef<[u8]>,
    cert_pem: impl AsRef<[u8]>,
    key_pem: impl AsRef<[u8]>,
) -> Result<IngestClient<Channel>, Status> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Status::unavailable(format!("address {url}: {e}")))?
        .tls_config(tls)
        .map_err(|e| Status::unavailable(format!("TLS config: {e}")))?
        .connect_timeout(DEADLINE)
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    Ok(IngestClient::new(channel))
}

/// Connects to the collector at `addr` with `client`'s certificate, trusting `ca` for the
/// server (SAN localhost); a failure comes back as `Unavailable`.
pub async fn connect_ingest(
    addr: SocketAddr,
    ca: &TestCa,
    client: &Issued,
) -> Result<IngestClient<Channel>, Status> {
    connect(
        &format!("https://{addr}"),
        &ca.cert_pem,
        &client.cert_pem,
        &client.key_pem,
    )
    .await
}

/// Connects as agent `name` of a PKI directory made by `cargo xtask certs` (`ca.pem`,
/// `NAME.pem`, `NAME-key.pem`) to the collector on `localhost:port`.
pub async fn connect_from_pki(
    pki: &Path,
    name: &str,
    port: u16,
) -> Result<IngestClient<Channel>, Status> {
    let read = |file: String| {
        std::fs::read(pki.join(&file))
            .map_err(|e| Status::unavailable(format!("{}: {e}", pki.join(file).display())))
    };
    connect(
        &format!("https://localhost:{port}"),
        read("ca.pem".into())?,
        read(format!("{name}.pem"))?,
        read(format!("{name}-key.pem"))?,
    )
    .await
}

/// One agent stream: send messages, receive collector messages.
pub struct AgentStream {
    /// Messages to the collector.
    pub tx: mpsc::Sender<AgentMessage>,
    /// Messages from the collector.
    pub rx: Streaming<CollectorMessage>,
}

/// A Hello for spool epoch `epoch`.
pub fn hello(epoch: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Hello(Hello {
            agent_version: "test".into(),
            hostname: "liar".into(),
            spool_epoch: epoch,
            ..Hello::default()
        })),
    }
}

/// A batch of `events` numbered from `first_seq`.
pub fn batch(first_seq: u64, events: Vec<Event>) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Batch(EventBatch { first_seq, events })),
    }
}

/// Opens a stream whose first message is `first`.
pub async fn open_stream(
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
    /// Sends one message.
    pub async fn send(&self, msg: impl Into<AgentMessage>) {
        self.tx.send(msg.into()).await.unwrap();
    }

    /// The next collector message (or the status that ended the stream).
    pub async fn next(&mut self) -> Result<Option<CollectorMessage>, Status> {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("no collector message within the deadline")
    }

    /// The next message, which must be an Ack; returns its `up_to_seq`.
    pub async fn ack(&mut self) -> u64 {
        match self.next().await.unwrap().and_then(|m| m.msg) {
            Some(collector_message::Msg::Ack(ack)) => ack.up_to_seq,
            other => panic!("expected an Ack, got {other:?}"),
        }
    }

    /// The status the collector ended the stream with (messages before it are skipped).
    pub async fn ended(&mut self) -> Status {
        loop {
            match self.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without a status"),
                Err(status) => return status,
            }
        }
    }
}
