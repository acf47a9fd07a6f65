//! The `Ingest` gRPC service: one bidirectional stream per agent.
//!
//! The first message must be a `Hello`. Each `EventBatch` goes through the [`Pipeline`] and is
//! acknowledged only after it is committed; a sequenced `Gap` (one carrying `first_seq` and
//! `last_seq`) is stored once per (identity, epoch, first_seq) and acknowledged the same way.
//! Duplicates (resends after a lost ack or a reconnect) are dropped by the store. A stream keeps
//! reading while up to [`MAX_IN_FLIGHT`] of its batches wait for their commit, so they can share
//! one (group commit); acks are cumulative, so they go out in order and none follows a batch
//! that failed. On shutdown a stream finishes the messages in hand, then ends with
//! `UNAVAILABLE` so the agent reconnects (and resends anything unacknowledged).
//!
//! One live stream per identity ([`crate::ingress::sessions`]): a newer stream supersedes an older
//! one.
//! Every message counts as a sign of life for the [`AgentMonitor`].
//!
//! Every message is checked against the [`limits`] before it is used; a stream over a limit,
//! silent past its Hello timeout, or sending nothing for [`IngressLimits::idle_after`] its
//! heartbeat interval, is ended with a status naming the limit, logged and counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use kestrel_proto::agent_message::Msg;
use kestrel_proto::ingest_server::Ingest;
use kestrel_proto::{collector_message, Ack, AgentMessage, CollectorMessage, Gap, Hello};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::ingress::connections::StreamGuard;
use crate::ingress::denylist::DenyList;
use crate::ingress::heartbeat::AgentMonitor;
use crate::ingress::identity::PeerInfo;
use crate::ingress::limits::{self, IngressLimits, OverLimit};
use crate::ingress::revocations::Revocations;
use crate::ingress::sessions::{SessionGuard, Sessions};
use crate::metrics::{figures::figures, GAP_REASONS};
use crate::pipeline::{BatchOutcome, PendingBatch, Pipeline, PipelineError};

/// Acks queued towards one agent before the stream stops reading its batches.
const OUTBOUND_QUEUE: usize = 16;

/// Batches of one stream submitted to the store writer and not yet acknowledged, before the
/// stream stops reading (the agent's own window is 16 batches of 512 events).
pub const MAX_IN_FLIGHT: usize = 16;

/// How long an ack may wait for room in a stream whose agent does not read.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// The gRPC `Ingest` service.
pub struct IngestService {
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    streams: TaskTracker,
    sessions: Arc<Sessions>,
    monitor: Option<Arc<AgentMonitor>>,
    deny: Arc<DenyList>,
    revoked: Arc<Revocations>,
    limits: IngressLimits,
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
            sessions: Arc::new(Sessions::default()),
            monitor: None,
            deny: Arc::new(DenyList::empty()),
            revoked: Arc::new(Revocations::empty()),
            limits: IngressLimits::default(),
        }
    }

    /// Checks messages, the Hello timeout and idle streams against `limits`.
    pub fn with_limits(mut self, limits: IngressLimits) -> IngestService {
        self.limits = limits;
        self
    }

    /// Uses `sessions` as the registry of live streams (shared with whoever revokes).
    pub fn with_sessions(mut self, sessions: Arc<Sessions>) -> IngestService {
        self.sessions = sessions;
        self
    }

    /// Tells `monitor` about every message, for silence detection.
    pub fn with_monitor(mut self, monitor: Arc<AgentMonitor>) -> IngestService {
        self.monitor = Some(monitor);
        self
    }

    /// Refuses streams from identities on `deny`.
    pub fn with_deny_list(mut self, deny: Arc<DenyList>) -> IngestService {
        self.deny = deny;
        self
    }

    /// Refuses streams from identities and certificate serials `revoked` lists.
    pub fn with_revocations(mut self, revoked: Arc<Revocations>) -> IngestService {
        self.revoked = revoked;
        self
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
        let stream_guard = peer.activity.stream();
        if self.deny.contains(&peer.identity)
            || self.revoked.identity_revoked(peer.identity.as_str())
        {
            warn!(identity = %peer.identity, peer = %peer.remote_addr, "agent stream refused: identity revoked");
            return Err(Status::permission_denied("identity revoked"));
        }
        if self.revoked.serial_revoked(&peer.serial) {
            warn!(identity = %peer.identity, peer = %peer.remote_addr, serial = %peer.serial, "agent stream refused: certificate revoked");
            return Err(Status::permission_denied(format!(
                "certificate serial {} revoked",
                peer.serial
            )));
        }
        if let Some(over) = &peer.activity.refusal {
            warn!(identity = %peer.identity, peer = %peer.remote_addr, reason = %over, "agent stream refused");
            return Err(over.status());
        }
        let mut inbound = request.into_inner();
        let hello = match read_hello(&mut inbound, &self.limits).await {
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
        let idle_after = self.limits.idle_after(hello.heartbeat_interval_ms);
        let first_unacked_seq = hello.first_unacked_seq;
        match self.pipeline.high_water(&peer.identity, epoch).await {
            Ok(Some(high_water)) if first_unacked_seq <= high_water => span.in_scope(|| {
                // Normal after a lost ack; each resent event is checked against the stored one
                // and a different one raises a sequence-conflict alert.
                info!(
                    first_unacked_seq,
                    high_water,
                    "agent resumes below the stored high-water mark: resent events are compared"
                )
            }),
            Ok(_) => {}
            Err(e) => span.in_scope(|| warn!(error = %e, "cannot read the high-water mark")),
        }
        if let Err(e) = self.pipeline.record_hello(&peer.identity, hello).await {
            span.in_scope(|| error!(error = %e, "cannot record the agent"));
            return Err(Status::unavailable("collector store unavailable"));
        }
        let (guard, superseded) = self.sessions.open(&peer.identity, &peer.serial);
        if superseded {
            span.in_scope(|| {
                warn!(
                    peer = %peer.remote_addr,
                    "a newer stream from this identity supersedes the live one"
                )
            });
        }
        if let Some(monitor) = &self.monitor {
            monitor.heard(&peer.identity);
        }

        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let session = Session {
            peer,
            epoch,
            pipeline: self.pipeline.clone(),
            inbound,
            outbound,
            shutdown: self.shutdown.clone(),
            guard,
            monitor: self.monitor.clone(),
            in_flight: VecDeque::new(),
            limits: self.limits.clone(),
            idle_after,
            stall: Stall::default(),
            _stream: stream_guard,
        };
        self.streams.spawn(session.run().instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Waits for the first message, which must be a Hello within the limits.
async fn read_hello(
    inbound: &mut Streaming<AgentMessage>,
    limits: &IngressLimits,
) -> Result<Hello, Status> {
    let timeout = limits.hello_timeout;
    let first = match tokio::time::timeout(timeout, inbound.message()).await {
        Ok(first) => first.map_err(over_message_size)?,
        Err(_) => {
            limits::refused(limits::HELLO_TIMEOUT);
            return Err(Status::deadline_exceeded(format!(
                "no Hello within {timeout:?}; the limit is the Hello timeout"
            )));
        }
    };
    match first.and_then(|m| m.msg) {
        Some(Msg::Hello(hello)) => {
            limits::check_hello(&hello).map_err(|over| refuse(&over))?;
            Ok(hello)
        }
        Some(_) => Err(Status::invalid_argument("the first message must be Hello")),
        None => Err(Status::invalid_argument(
            "the stream ended or sent an empty message before Hello",
        )),
    }
}

/// Counts a refusal at `over` and the status it is answered with (the caller logs it).
fn refuse(over: &OverLimit) -> Status {
    limits::refused(over.limit);
    over.status()
}

/// A decoding failure as received; one for a message over the size limit is counted and
/// becomes `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`), keeping tonic's text with the size
/// and the limit; a refusal by the wire count of repeated fields is counted by its field.
fn over_message_size(status: Status) -> Status {
    limits::count_wire_refusal(&status);
    if status.code() == tonic::Code::OutOfRange && status.message().contains("too large") {
        limits::refused(limits::MESSAGE_BYTES);
        return Status::resource_exhausted(status.message().to_owned());
    }
    status
}

/// A Gap's kind as a label: an event kind name of the ABI, `""` for none, else `other`.
fn known_kind(kind: &str) -> &'static str {
    kestrel_ebpf_abi::KIND_NAMES
        .iter()
        .find(|name| **name == kind)
        .copied()
        .unwrap_or(if kind.is_empty() { "" } else { "other" })
}

/// A Gap's reason as a label: one of [`GAP_REASONS`], else `other`.
fn known_reason(reason: &str) -> &'static str {
    GAP_REASONS
        .iter()
        .find(|known| **known == reason)
        .copied()
        .unwrap_or("other")
}

/// The last seq a gap covers, when it is sequenced (and so acknowledged).
fn sequenced(gap: &Gap) -> Option<u64> {
    (gap.first_seq > 0 && gap.last_seq >= gap.first_seq).then_some(gap.last_seq)
}

/// One agent's stream after its Hello.
struct Session {
    peer: PeerInfo,
    epoch: u64,
    pipeline: Arc<Pipeline>,
    inbound: Streaming<AgentMessage>,
    outbound: mpsc::Sender<Result<CollectorMessage, Status>>,
    shutdown: CancellationToken,
    guard: SessionGuard,
    monitor: Option<Arc<AgentMonitor>>,
    /// Submitted batches in the order they were received, oldest first.
    in_flight: VecDeque<InFlight>,
    limits: IngressLimits,
    /// The stream is closed after this long without a message.
    idle_after: Duration,
    /// Heartbeats that reported unacknowledged events since the last batch.
    stall: Stall,
    /// Keeps the connection counted as carrying a stream.
    _stream: StreamGuard,
}

/// Whether a stream holds events back: heartbeats say the agent's spool has unacknowledged
/// events, yet no batch arrives (the wedge of a spool the agent cannot read).
#[derive(Debug, Default)]
struct Stall {
    heartbeats: u32,
    reported: bool,
}

/// A batch waiting for its commit.
struct InFlight {
    first_seq: u64,
    len: usize,
    pending: PendingBatch,
    /// When the batch arrived (for the commit-time histogram).
    received: std::time::Instant,
}

impl Session {
    async fn run(mut self) {
        let idle = tokio::time::sleep(self.idle_after);
        tokio::pin!(idle);
        let end = loop {
            let room = self.in_flight.len() < MAX_IN_FLIGHT;
            let waiting = !self.in_flight.is_empty();
            let in_flight = &mut self.in_flight;
            let oldest = async {
                match in_flight.front_mut() {
                    Some(batch) => (&mut batch.pending).await,
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    break Some(Status::unavailable("collector is shutting down"));
                }
                ended = &mut self.guard.ended => match ended {
                    Ok(status) => break Some(status),
                    Err(_) => break Some(Status::aborted("stream no longer registered")),
                },
                committed = oldest => {
                    idle.as_mut().reset(tokio::time::Instant::now() + self.idle_after);
                    match self.acknowledge_oldest(committed).await {
                        Ok(true) => continue,
                        Ok(false) => break None,
                        Err(status) => break Some(status),
                    }
                }
                received = self.inbound.message(), if room => received,
                () = &mut idle, if !waiting => {
                    limits::refused(limits::IDLE_STREAM);
                    break Some(Status::deadline_exceeded(format!(
                        "no message for {:?}; the limit is {} heartbeat intervals",
                        self.idle_after, self.limits.idle_heartbeats
                    )));
                }
            };
            idle.as_mut()
                .reset(tokio::time::Instant::now() + self.idle_after);
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
                    // Tell the agent why (oversized or undecodable message), if it still listens.
                    let status = over_message_size(status);
                    if status.code() == tonic::Code::ResourceExhausted {
                        warn!(peer = %self.peer.remote_addr, reason = status.message(), "agent message refused");
                    } else {
                        info!(reason = %status, "agent stream broke");
                    }
                    break Some(status);
                }
            };
            let checked = AgentMessage { msg: Some(msg) };
            if let Err(over) = limits::check_message(&checked, &self.limits) {
                warn!(peer = %self.peer.remote_addr, reason = %over, "agent message refused");
                break Some(refuse(&over));
            }
            let Some(msg) = checked.msg else { break None };
            match self.handle(msg).await {
                Ok(true) => {}
                Ok(false) => break None,
                Err(status) => break Some(status),
            }
        };
        // Batches already submitted are committed whatever happens to the stream: acknowledge
        // them if the agent still listens.
        let end = match self.drain().await {
            Err(status) => Some(status),
            Ok(_) => end,
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

    /// Acknowledges the oldest batch in flight, now that its commit finished with `committed`;
    /// `Ok(false)` when the agent is gone, `Err` (the batch was not stored) ends the stream.
    async fn acknowledge_oldest(
        &mut self,
        committed: Result<BatchOutcome, PipelineError>,
    ) -> Result<bool, Status> {
        let Some(batch) = self.in_flight.pop_front() else {
            return Ok(true);
        };
        let (first_seq, len) = (batch.first_seq, batch.len);
        match committed {
            Ok(outcome) => {
                figures()
                    .batch_commit
                    .observe(batch.received.elapsed().as_secs_f64());
                debug!(first_seq, len, alerts = outcome.alerts, "batch stored");
                let acked = self.ack(outcome.up_to_seq).await;
                if !acked {
                    // The agent is gone: the batches behind stay committed, unacknowledged.
                    self.in_flight.clear();
                }
                Ok(acked)
            }
            Err(e) => {
                error!(first_seq, len, error = %e, "batch not stored");
                // Acks are cumulative: nothing after this batch may be acknowledged.
                self.in_flight.clear();
                Err(Status::unavailable(format!("batch not stored: {e}")))
            }
        }
    }

    /// Waits for every batch in flight, oldest first, acknowledging each; `Ok(false)` when the
    /// agent is gone (the rest is committed but not acknowledged).
    async fn drain(&mut self) -> Result<bool, Status> {
        while let Some(batch) = self.in_flight.front_mut() {
            let committed = (&mut batch.pending).await;
            if !self.acknowledge_oldest(committed).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Handles one message; `Ok(false)` when the agent is gone, `Err` to end the stream with it.
    async fn handle(&mut self, msg: Msg) -> Result<bool, Status> {
        // A sequenced gap's ack covers every seq before it: the batches before it come first.
        if matches!(&msg, Msg::Gap(gap) if sequenced(gap).is_some()) && !self.drain().await? {
            return Ok(false);
        }
        let identity = &self.peer.identity;
        if let Some(monitor) = &self.monitor {
            monitor.heard(identity);
        }
        match msg {
            Msg::Hello(_) => Err(Status::invalid_argument("Hello sent twice on one stream")),
            Msg::Batch(batch) => {
                self.stall.heartbeats = 0;
                let first_seq = batch.first_seq;
                let len = batch.events.len();
                let received = std::time::Instant::now();
                for event in &batch.events {
                    figures()
                        .events_received
                        .get_or_create(&[("kind", event.kind_name())])
                        .inc();
                }
                match self
                    .pipeline
                    .submit_batch(identity, self.epoch, batch)
                    .await
                {
                    Ok(Some(pending)) => {
                        self.in_flight.push_back(InFlight {
                            first_seq,
                            len,
                            pending,
                            received,
                        });
                        Ok(true)
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
                if heartbeat.spool_unacked > 0 && self.in_flight.is_empty() {
                    self.stall.heartbeats = self.stall.heartbeats.saturating_add(1);
                } else {
                    self.stall.heartbeats = 0;
                }
                let stalled = self
                    .pipeline
                    .stall_heartbeats()
                    .is_some_and(|n| self.stall.heartbeats >= n);
                if stalled && !self.stall.reported {
                    self.stall.reported = true;
                    let heartbeats = self.stall.heartbeats;
                    self.pipeline
                        .record_stall(identity, heartbeats, &heartbeat)
                        .await;
                }
                if let Err(e) = self.pipeline.record_heartbeat(identity, heartbeat).await {
                    error!(error = %e, "cannot record heartbeat");
                }
                Ok(true)
            }
            Msg::Gap(gap) => {
                warn!(
                    kind = %gap.kind,
                    reason = %gap.reason,
                    cpu = gap.cpu,
                    count = gap.count,
                    first_seq = gap.first_seq,
                    last_seq = gap.last_seq,
                    first_time_unix_ns = gap.first_time_unix_ns,
                    last_time_unix_ns = gap.last_time_unix_ns,
                    "agent lost events"
                );
                figures()
                    .events_lost_reported
                    .get_or_create(&[
                        ("kind", known_kind(&gap.kind)),
                        ("reason", known_reason(&gap.reason)),
                    ])
                    .inc_by(gap.count);
                let sequenced = sequenced(&gap);
                match self.pipeline.record_gap(identity, self.epoch, gap).await {
                    Ok(()) => match sequenced {
                        Some(last_seq) => Ok(self.ack(last_seq).await),
                        None => Ok(true),
                    },
                    Err(e) if sequenced.is_some() => {
                        error!(error = %e, "gap not stored");
                        Err(Status::unavailable(format!("gap not stored: {e}")))
                    }
                    Err(e) => {
                        error!(error = %e, "cannot record gap");
                        Ok(true)
                    }
                }
            }
        }
    }

    /// Acknowledges everything up to `up_to_seq`; false when the agent is gone or has not read
    /// its acknowledgements for [`ACK_TIMEOUT`] (the stream is then given up).
    async fn ack(&self, up_to_seq: u64) -> bool {
        let ack = CollectorMessage {
            msg: Some(collector_message::Msg::Ack(Ack { up_to_seq })),
        };
        match tokio::time::timeout(ACK_TIMEOUT, self.outbound.send(Ok(ack))).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                warn!(
                    timeout_s = ACK_TIMEOUT.as_secs(),
                    "agent does not read its acknowledgements: closing the stream"
                );
                false
            }
        }
    }
}
