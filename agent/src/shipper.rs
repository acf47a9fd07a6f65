//! Streams events to the collector over the bidirectional gRPC stream: Hello, then numbered
//! EventBatches; the collector Acks what it has stored. Reconnects with exponential backoff and
//! jitter and resends every batch not yet acknowledged (at-least-once; the collector drops
//! duplicates by identity, epoch and sequence).

use std::{collections::VecDeque, time::Duration};

use kestrel_proto::{
    agent_message, collector_message, ingest_client::IngestClient, AgentMessage, CollectorMessage,
    Event, EventBatch, Hello, KernelCapabilities,
};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint};

/// Settings of the shipper.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Collector URL, `https://host:port`.
    pub url: String,
    /// Mutual TLS settings.
    pub tls: ClientTlsConfig,
    /// Host name reported in Hello (informational).
    pub hostname: String,
    /// What the agent attached, reported in Hello.
    pub capabilities: KernelCapabilities,
    /// Most events in one batch.
    pub batch_max: usize,
    /// Longest an event waits for its batch to fill.
    pub flush_interval: Duration,
    /// Most unacknowledged events kept in memory for resending; older ones are given up.
    pub unacked_max: usize,
}

/// A batch sent but not yet acknowledged.
struct InFlight {
    first_seq: u64,
    events: Vec<Event>,
}

impl InFlight {
    fn last_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64 - 1
    }

    fn message(&self) -> AgentMessage {
        AgentMessage {
            msg: Some(agent_message::Msg::Batch(EventBatch {
                first_seq: self.first_seq,
                events: self.events.clone(),
            })),
        }
    }
}

/// How a connected session ended without error.
enum SessionEnd {
    /// The pipeline closed: everything was sent (and acknowledged, if the collector answered in time).
    Finished,
}

/// Ships events from a channel to the collector until the channel closes.
pub struct Shipper {
    config: ShipperConfig,
    events: mpsc::Receiver<Event>,
    epoch: u64,
    next_seq: u64,
    unacked: VecDeque<InFlight>,
    /// Events given up because too many were unacknowledged.
    pub abandoned: u64,
}

impl Shipper {
    /// A shipper reading `events`. The epoch is this agent run's start time, so sequence
    /// numbers restarting at 1 never collide with an earlier run's.
    pub fn new(config: ShipperConfig, events: mpsc::Receiver<Event>) -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self {
            config,
            events,
            epoch,
            next_seq: 1,
            unacked: VecDeque::new(),
            abandoned: 0,
        }
    }

    /// Runs until the event channel closes, reconnecting as needed.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            match self.session(&mut failures).await {
                Ok(SessionEnd::Finished) => return,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures);
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "collector stream failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn session(&mut self, failures: &mut u32) -> anyhow::Result<SessionEnd> {
        let channel = Endpoint::from_shared(self.config.url.clone())?
            .tls_config(self.config.tls.clone())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await?;
        let (outbound, rx) = mpsc::channel::<AgentMessage>(64);
        outbound.send(self.hello()).await?;
        let mut inbound = IngestClient::new(channel)
            .stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        tracing::info!(url = %self.config.url, epoch = self.epoch, resend = self.unacked.len(), "connected to collector");
        *failures = 0;
        for batch in &self.unacked {
            outbound.send(batch.message()).await?;
        }
        let mut pending: Vec<Event> = Vec::new();
        let mut ticker = tokio::time::interval(self.config.flush_interval);
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => {
                        pending.push(event);
                        if pending.len() >= self.config.batch_max {
                            self.send_batch(&outbound, &mut pending).await?;
                        }
                    }
                    None => {
                        self.send_batch(&outbound, &mut pending).await?;
                        self.await_acks(&mut inbound).await;
                        return Ok(SessionEnd::Finished);
                    }
                },
                _ = ticker.tick() => self.send_batch(&outbound, &mut pending).await?,
                message = inbound.message() => match message? {
                    Some(message) => self.on_message(message),
                    None => anyhow::bail!("collector closed the stream"),
                },
            }
        }
    }

    fn hello(&self) -> AgentMessage {
        AgentMessage {
            msg: Some(agent_message::Msg::Hello(Hello {
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                hostname: self.config.hostname.clone(),
                capabilities: Some(self.config.capabilities.clone()),
                spool_epoch: self.epoch,
                first_unacked_seq: self
                    .unacked
                    .front()
                    .map(|b| b.first_seq)
                    .unwrap_or(self.next_seq),
            })),
        }
    }

    async fn send_batch(
        &mut self,
        outbound: &mpsc::Sender<AgentMessage>,
        pending: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(pending);
        let batch = InFlight {
            first_seq: self.next_seq,
            events,
        };
        self.next_seq += batch.events.len() as u64;
        let message = batch.message();
        self.unacked.push_back(batch);
        self.enforce_unacked_bound();
        outbound.send(message).await?;
        Ok(())
    }

    fn enforce_unacked_bound(&mut self) {
        let mut held: usize = self.unacked.iter().map(|b| b.events.len()).sum();
        while held > self.config.unacked_max && self.unacked.len() > 1 {
            let dropped = self.unacked.pop_front().expect("len > 1");
            held -= dropped.events.len();
            self.abandoned += dropped.events.len() as u64;
            tracing::warn!(
                events = dropped.events.len(),
                total = self.abandoned,
                "unacknowledged events given up"
            );
        }
    }

    fn on_message(&mut self, message: CollectorMessage) {
        if let Some(collector_message::Msg::Ack(ack)) = message.msg {
            while self
                .unacked
                .front()
                .is_some_and(|b| b.last_seq() <= ack.up_to_seq)
            {
                self.unacked.pop_front();
            }
        }
    }

    /// On shutdown: waits briefly for the collector to acknowledge what was sent.
    async fn await_acks(&mut self, inbound: &mut tonic::Streaming<CollectorMessage>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !self.unacked.is_empty() {
            match tokio::time::timeout_at(deadline, inbound.message()).await {
                Ok(Ok(Some(message))) => self.on_message(message),
                _ => break,
            }
        }
        if !self.unacked.is_empty() {
            let events: usize = self.unacked.iter().map(|b| b.events.len()).sum();
            tracing::warn!(events, "shutting down with unacknowledged events");
        }
    }
}

/// Exponential backoff from 200 ms up to 30 s, with up to 50 % random jitter so that many
/// agents do not reconnect in lockstep.
fn backoff(failures: u32) -> Duration {
    let base_ms = 200u64
        .saturating_mul(1 << failures.min(8).saturating_sub(1))
        .min(30_000);
    let jitter = rand::rng().random_range(0..=base_ms / 2);
    Duration::from_millis(base_ms + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(
            backoff(1) >= Duration::from_millis(200) && backoff(1) <= Duration::from_millis(300)
        );
        assert!(backoff(4) >= Duration::from_millis(1600));
        assert!(backoff(50) <= Duration::from_millis(45_000));
    }
}
