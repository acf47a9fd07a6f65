//! The `Ingest` gRPC service: one bidirectional stream per agent.
//!
//! The first message must be a `Hello`. Each `EventBatch` goes through the [`Pipeline`] and is
//! acknowledged only after it is committed. On shutdown a stream finishes the batch in hand,
//! then ends with `UNAVAILABLE` so the agent reconnects (and resends anything unacknowledged).

use std::sync::Arc;
use std::time::Duration;

use kestrel_proto::agent_message::Msg;
use kestrel_proto::ingest_server::Ingest;
use kestrel_proto::{collector_message, Ack, AgentMessage, CollectorMessage, Hello};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::identity::PeerInfo;
use crate::pipeline::Pipeline;

/// How long an agent may take to send its Hello after opening the stream.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Acks queued towards one agent before the stream stops reading its batches.
const OUTBOUND_QUEUE: usize = 16;

/// The gRPC `Ingest` service.
pub struct IngestService {
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    streams: TaskTracker,
}

impl IngestService {
    /// A service feeding `pipeline`. Each agent stream runs as a task on `streams`, and ends
    /// after its current batch once `shutdown` is cancelled.
    pub fn new(
        pipeline: Arc<Pipeline>,
        shutdown: CancellationToken,
        streams: TaskTracker,
    ) -> IngestService {
        IngestService {
            pipeline,
            shutdown,
            streams,
        }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request
            .extensions()
            .get::<PeerInfo>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no authenticated client certificate"))?;
        let mut inbound = request.into_inner();
        let hello = match read_hello(&mut inbound).await {
            Ok(hello) => hello,
            Err(status) => {
                warn!(
                    identity = %peer.identity,
                    peer = %peer.remote_addr,
                    reason = status.message(),
                    "agent stream refused"
                );
                return Err(status);
            }
        };

        let span = info_span!("agent", identity = %peer.identity, epoch = hello.spool_epoch);
        span.in_scope(|| {
            info!(
                peer = %peer.remote_addr,
                agent_version = %hello.agent_version,
                hostname = %hello.hostname,
                first_unacked_seq = hello.first_unacked_seq,
                "agent stream opened"
            );
        });
        let epoch = hello.spool_epoch;
        if let Err(e) = self.pipeline.record_hello(&peer.identity, hello).await {
            span.in_scope(|| error!(error = %e, "cannot record the agent"));
            return Err(Status::unavailable("collector store unavailable"));
        }

        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let session = Session {
            peer,
            epoch,
            pipeline: self.pipeline.clone(),
            inbound,
            outbound,
            shutdown: self.shutdown.clone(),
        };
        self.streams.spawn(session.run().instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Waits for the first message, which must be a Hello.
async fn read_hello(inbound: &mut Streaming<AgentMessage>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!("no Hello within {}s", HELLO_TIMEOUT.as_secs()))
        })??;
    match first.and_then(|m| m.msg) {
        Some(Msg::Hello(hello)) => Ok(hello),
        Some(_) => Err(Status::invalid_argument("the first message must be Hello")),
        None => Err(Status::invalid_argument(
            "the stream ended or sent an empty message before Hello",
        )),
    }
}

/// One agent's stream after its Hello.
struct Session {
    peer: PeerInfo,
    epoch: u64,
    pipeline: Arc<Pipeline>,
    inbound: Streaming<AgentMessage>,
    outbound: mpsc::Sender<Result<CollectorMessage, Status>>,
    shutdown: CancellationToken,
}

impl Session {
    async fn run(mut self) {
        let end = loop {
            let received = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    break Some(Status::unavailable("collector is shutting down"));
                }
                received = self.inbound.message() => received,
            };
            let msg = match received {
                Ok(Some(AgentMessage { msg: Some(msg) })) => msg,
                Ok(Some(AgentMessage { msg: None })) => {
                    break Some(Status::invalid_argument("empty AgentMessage"));
                }
                Ok(None) => {
                    info!("agent closed the stream");
                    break None;
                }
                Err(status) => {
                    info!(reason = %status, "agent stream broke");
                    break None;
                }
            };
            match self.handle(msg).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(status) => break Some(status),
            }
        };
        if let Some(status) = end {
            if status.code() != tonic::Code::Unavailable {
                warn!(reason = status.message(), "closing agent stream");
            } else {
                info!(reason = status.message(), "closing agent stream");
            }
            let _ = self.outbound.send(Err(status)).await;
        }
    }

    /// Handles one message; `Ok(false)` when the agent is gone, `Err` to end the stream with it.
    async fn handle(&mut self, msg: Msg) -> Result<bool, Status> {
        let identity = &self.peer.identity;
        match msg {
            Msg::Hello(_) => Err(Status::invalid_argument("Hello sent twice on one stream")),
            Msg::Batch(batch) => {
                let first_seq = batch.first_seq;
                let len = batch.events.len();
                match self
                    .pipeline
                    .ingest_batch(identity, self.epoch, batch)
                    .await
                {
                    Ok(Some(outcome)) => {
                        debug!(first_seq, len, alerts = outcome.alerts, "batch stored");
                        let ack = CollectorMessage {
                            msg: Some(collector_message::Msg::Ack(Ack {
                                up_to_seq: outcome.up_to_seq,
                            })),
                        };
                        Ok(self.outbound.send(Ok(ack)).await.is_ok())
                    }
                    Ok(None) => {
                        debug!(first_seq, "empty batch ignored");
                        Ok(true)
                    }
                    Err(e) => {
                        error!(first_seq, len, error = %e, "batch not stored");
                        Err(Status::unavailable(format!("batch not stored: {e}")))
                    }
                }
            }
            Msg::Heartbeat(heartbeat) => {
                debug!(
                    events_sent = heartbeat.events_sent,
                    kernel_drops = heartbeat.kernel_drops,
                    queue_depth = heartbeat.queue_depth,
                    rss_bytes = heartbeat.rss_bytes,
                    "heartbeat"
                );
                if let Err(e) = self.pipeline.record_heartbeat(identity, heartbeat).await {
                    error!(error = %e, "cannot record heartbeat");
                }
                Ok(true)
            }
            Msg::Gap(gap) => {
                warn!(
                    kind = %gap.kind,
                    cpu = gap.cpu,
                    count = gap.count,
                    first_time_unix_ns = gap.first_time_unix_ns,
                    last_time_unix_ns = gap.last_time_unix_ns,
                    "agent lost events"
                );
                if let Err(e) = self.pipeline.record_gap(identity, self.epoch, gap).await {
                    error!(error = %e, "cannot record gap");
                }
                Ok(true)
            }
        }
    }
}
