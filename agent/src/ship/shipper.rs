//! Streams the spool to the collector over the bidirectional gRPC stream: Hello (epoch, first
//! unacknowledged sequence number), then numbered EventBatches and sequenced Gaps read from the
//! spool, and periodic Heartbeats; the collector Acks what it has committed and the spool drops
//! it. Reconnects with exponential backoff and jitter and resends everything not yet
//! acknowledged (at-least-once; the collector drops duplicates by identity, epoch and sequence).
//!
//! TLS files are read at each connection and watched: when the certificate, key or CA change on
//! disk (and load) — an operator's rotation or the agent's own renewal ([`super::enrol`]) — the
//! stream stops sending new batches, waits (up to [`RELOAD_DRAIN`]) for the acknowledgements of
//! those in flight, then is closed and reopened with the new files, without restarting the
//! agent; whatever was still unacknowledged is resent on the new stream.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use kestrel_proto::{
    agent_message, collector_message,
    encoded::{open_ingest_stream, BatchEncoder, EncodedAgentMessage},
    AgentMessage, CollectorMessage, Gap, Heartbeat, Hello, KernelCapabilities,
};
use rand::Rng;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint};

use crate::{
    clock,
    metrics::figures::figures,
    ship::spool::{
        run_writer, Item, Priorities, Published, Spool, SpoolConfig, SpoolReader, SpoolSender,
        SpoolSettings,
    },
    ship::tls::{TlsError, TlsFiles},
};

/// Events between the pipeline and the spool writer. Bounded in count so the agent's memory
/// stays bounded in a burst; beyond it events are shed (`queue_full`) and counted.
const SPOOL_QUEUE: usize = 8192;

/// Longest a stream waits for its in-flight acknowledgements before it reconnects with changed
/// TLS files.
pub const RELOAD_DRAIN: Duration = Duration::from_secs(5);

/// Settings of the shipper.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Collector URL, `https://host:port`.
    pub url: String,
    /// Where the TLS material comes from (re-read when it changes).
    pub tls: TlsSource,
    /// Host name reported in Hello (informational).
    pub hostname: String,
    /// What the agent attached, reported in Hello.
    pub capabilities: KernelCapabilities,
    /// Most events in one batch.
    pub batch_max: usize,
    /// Most events sent and not yet acknowledged.
    pub window: usize,
    /// Longest a record waits for its batch to fill before it is sent anyway.
    pub linger: Duration,
    /// How often a Heartbeat is sent.
    pub heartbeat_interval: Duration,
    /// How often the TLS files are checked for changes.
    pub tls_check_interval: Duration,
    /// Longest pause between reconnection attempts (before jitter).
    pub reconnect_max: Duration,
    /// Told when the collector refuses this agent's certificate (`PERMISSION_DENIED`: revoked),
    /// so enrolment ([`super::enrol`]) can get a new one.
    pub refused: Option<Arc<tokio::sync::Notify>>,
}

impl ShipperConfig {
    /// Defaults for everything but where to connect and with what.
    pub fn new(url: String, tls: TlsSource) -> ShipperConfig {
        ShipperConfig {
            url,
            tls,
            hostname: String::new(),
            capabilities: KernelCapabilities::default(),
            batch_max: 512,
            window: 16 * 512,
            linger: Duration::from_millis(50),
            heartbeat_interval: Duration::from_secs(10),
            tls_check_interval: Duration::from_secs(5),
            reconnect_max: Duration::from_secs(10),
            refused: None,
        }
    }
}

/// The agent's TLS files and the name the collector's certificate must carry.
#[derive(Debug, Clone)]
pub struct TlsSource {
    /// CA, certificate and key files.
    pub files: TlsFiles,
    /// Host name expected in the collector's certificate.
    pub domain: String,
}

/// What the files looked like when last loaded: size and modification time of each.
type Stamp = Vec<Option<(u64, SystemTime)>>;

impl TlsSource {
    /// Reads and checks the three files.
    pub fn load(&self) -> Result<ClientTlsConfig, TlsError> {
        self.files.client_config(&self.domain)
    }

    fn stamp(&self) -> Stamp {
        [&self.files.ca, &self.files.cert, &self.files.key]
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.len(), m.modified().ok()?))
            })
            .collect()
    }
}

/// Counters other stages report, sent in Heartbeats and served as metrics.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Records the kernel could not put in the ring buffer, in total.
    pub kernel_drops: AtomicU64,
    /// Events sent to the collector (resends included), in total.
    pub events_sent: AtomicU64,
}

impl AgentStats {
    /// The agent's figures now, as a Heartbeat carries them.
    pub fn snapshot(&self, spool: &Spool) -> Heartbeat {
        let usage = ProcessUsage::now();
        Heartbeat {
            time_unix_ns: clock::now_unix_ns(),
            events_sent: self.events_sent.load(Ordering::Relaxed),
            kernel_drops: self.kernel_drops.load(Ordering::Relaxed),
            queue_depth: spool.queue_depth(),
            rss_bytes: usage.rss_bytes,
            spool_bytes: spool.used_bytes(),
            spool_max_bytes: spool.config().max_bytes,
            spool_unacked: spool.unacked(),
            events_shed: spool.shed_total(),
            cpu_ns: usage.cpu_ns,
        }
    }
}

/// How a connected session ended without error.
enum SessionEnd {
    /// The spool writer closed and everything was acknowledged.
    Finished,
    /// The TLS files changed: connect again with the new ones.
    Reload,
}

/// A batch sent and not yet acknowledged.
struct InFlight {
    last_seq: u64,
    events: usize,
    /// When it was handed to the stream (for the round-trip histogram).
    sent: std::time::Instant,
}

/// Ships the spool to the collector.
pub struct Shipper {
    config: ShipperConfig,
    spool: Arc<Spool>,
    stats: Arc<AgentStats>,
    reader: Option<SpoolReader>,
    published: watch::Receiver<Published>,
    tls: Option<(Stamp, ClientTlsConfig)>,
}

impl Shipper {
    /// A shipper sending what is written to `spool`.
    pub fn new(config: ShipperConfig, spool: Arc<Spool>, stats: Arc<AgentStats>) -> Shipper {
        Shipper {
            reader: Some(SpoolReader::new(spool.clone())),
            published: spool.subscribe(),
            config,
            spool,
            stats,
            tls: None,
        }
    }

    /// Runs until the spool writer has closed and everything was acknowledged, reconnecting as
    /// needed. (On shutdown the caller bounds how long it waits for that.)
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let session = self.session(&mut failures).await;
            figures().collector_connected.set(0);
            match session {
                Ok(SessionEnd::Finished) => break,
                Ok(SessionEnd::Reload) => continue,
                Err(err) => {
                    let denied = err
                        .downcast_ref::<tonic::Status>()
                        .is_some_and(|s| s.code() == tonic::Code::PermissionDenied);
                    if let (true, Some(refused)) = (denied, &self.config.refused) {
                        refused.notify_one();
                    }
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures, self.config.reconnect_max);
                    tracing::warn!(
                        error = %report(&err),
                        retry_in_ms = delay.as_millis() as u64,
                        unacked = self.spool.unacked(),
                        "collector stream failed"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
        if let Err(e) = self.spool.persist() {
            tracing::error!(error = %e, "cannot record the acknowledged position");
        }
    }

    /// The client TLS configuration: the files as they are now, or the last good ones when they
    /// do not load (logged with the file at fault).
    fn tls_config(&mut self) -> anyhow::Result<ClientTlsConfig> {
        let stamp = self.config.tls.stamp();
        if let Some((seen, config)) = &self.tls {
            if *seen == stamp {
                return Ok(config.clone());
            }
        }
        match self.config.tls.load() {
            Ok(config) => {
                if self.tls.is_some() {
                    tracing::info!("TLS files changed: using the new certificate and key");
                }
                self.tls = Some((stamp, config.clone()));
                Ok(config)
            }
            Err(e) => match &mut self.tls {
                Some((seen, config)) => {
                    tracing::error!(error = %e, "TLS files changed but do not load: keeping the previous ones");
                    *seen = stamp;
                    Ok(config.clone())
                }
                None => Err(e.into()),
            },
        }
    }

    /// True when the TLS files on disk changed since they were loaded and the new ones load
    /// (new ones that do not load are logged, with the file at fault, and left alone).
    fn tls_changed(&mut self) -> bool {
        let stamp = self.config.tls.stamp();
        if self.tls.as_ref().is_some_and(|(seen, _)| *seen == stamp) {
            return false;
        }
        match self.config.tls.load() {
            Ok(config) => {
                self.tls = Some((stamp, config));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS files changed but do not load: keeping the previous ones");
                if let Some((seen, _)) = &mut self.tls {
                    *seen = stamp;
                }
                false
            }
        }
    }

    async fn session(&mut self, failures: &mut u32) -> anyhow::Result<SessionEnd> {
        let tls = self.tls_config()?;
        let channel = Endpoint::from_shared(self.config.url.clone())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .connect()
            .await?;
        let (outbound, rx) = mpsc::channel::<EncodedAgentMessage>(32);
        outbound.send((&self.hello()).into()).await?;
        let mut inbound = open_ingest_stream(channel, ReceiverStream::new(rx), 1024 * 1024).await?;
        self.reader_mut().rewind();
        tracing::info!(
            url = %self.config.url,
            epoch = self.spool.epoch(),
            first_unacked_seq = self.spool.first_unacked_seq(),
            unacked = self.spool.unacked(),
            "connected to collector"
        );
        *failures = 0;
        figures().collector_connected.set(1);

        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        let mut tls_check = tokio::time::interval(self.config.tls_check_interval);
        tls_check.reset();
        // Unsent records wait up to `linger` for a full batch: fewer, larger messages.
        let mut pending_since: Option<tokio::time::Instant> = None;
        // Set once the TLS files changed: no new batches, reconnect when the acks are in.
        let mut draining: Option<tokio::time::Instant> = None;
        loop {
            let published = *self.published.borrow();
            let pending = (published.written_seq + 1).saturating_sub(self.reader_next_seq());
            let now = tokio::time::Instant::now();
            let since = *pending_since.get_or_insert(now);
            let due = pending >= self.config.batch_max as u64
                || published.closed
                || now >= since + self.config.linger;
            if pending == 0 {
                pending_since = None;
            } else if due && draining.is_none() {
                self.pump(&outbound, &mut in_flight).await?;
                pending_since = None;
            }
            if published.closed && in_flight.is_empty() && self.caught_up() {
                return Ok(SessionEnd::Finished);
            }
            if let Some(deadline) = draining {
                if in_flight.is_empty() || now >= deadline {
                    tracing::info!(
                        unacked_batches = in_flight.len(),
                        "TLS files changed: reconnecting with the new certificate"
                    );
                    return Ok(SessionEnd::Reload);
                }
            }
            let linger = pending_since
                .filter(|_| !due)
                .map(|since| since + self.config.linger);
            tokio::select! {
                _ = tokio::time::sleep_until(linger.unwrap_or(now)), if linger.is_some() => {}
                message = inbound.message() => match message? {
                    Some(message) => self.on_message(message, &mut in_flight).await?,
                    None => anyhow::bail!("collector closed the stream"),
                },
                changed = self.published.changed() => {
                    if changed.is_err() {
                        anyhow::bail!("spool closed");
                    }
                }
                _ = heartbeat.tick() => outbound.send((&self.heartbeat()).into()).await?,
                _ = tokio::time::sleep_until(draining.unwrap_or(now)), if draining.is_some() => {}
                _ = tls_check.tick(), if draining.is_none() => {
                    if self.tls_changed() {
                        tracing::info!(
                            in_flight = in_flight.len(),
                            "TLS files changed: finishing the acknowledgements in flight first"
                        );
                        draining = Some(tokio::time::Instant::now() + RELOAD_DRAIN);
                    }
                }
            }
        }
    }

    fn reader_mut(&mut self) -> &mut SpoolReader {
        self.reader
            .as_mut()
            .expect("the reader is back after each read")
    }

    fn reader_next_seq(&self) -> u64 {
        self.reader.as_ref().expect("reader present").next_seq()
    }

    fn caught_up(&self) -> bool {
        self.reader_next_seq() > self.published.borrow().written_seq
    }

    /// Sends what the spool holds, as far as the window allows.
    async fn pump(
        &mut self,
        outbound: &mpsc::Sender<EncodedAgentMessage>,
        in_flight: &mut VecDeque<InFlight>,
    ) -> anyhow::Result<()> {
        self.published.borrow_and_update();
        loop {
            let held: usize = in_flight.iter().map(|b| b.events.max(1)).sum();
            if held >= self.config.window || self.caught_up() {
                return Ok(());
            }
            let mut reader = self.reader.take().expect("reader present");
            let max = self.config.batch_max;
            let (reader, items) = tokio::task::spawn_blocking(move || {
                let items = reader.read(max);
                (reader, items)
            })
            .await?;
            self.reader = Some(reader);
            let items = items?;
            if items.is_empty() {
                return Ok(());
            }
            for message in messages(items) {
                in_flight.push_back(InFlight {
                    last_seq: message.last_seq,
                    events: message.events,
                    sent: std::time::Instant::now(),
                });
                self.stats
                    .events_sent
                    .fetch_add(message.events as u64, Ordering::Relaxed);
                outbound.send(message.encoded).await?;
            }
        }
    }

    async fn on_message(
        &mut self,
        message: CollectorMessage,
        in_flight: &mut VecDeque<InFlight>,
    ) -> anyhow::Result<()> {
        let Some(collector_message::Msg::Ack(ack)) = message.msg else {
            return Ok(());
        };
        while in_flight
            .front()
            .is_some_and(|b| b.last_seq <= ack.up_to_seq)
        {
            if let Some(batch) = in_flight.pop_front() {
                figures()
                    .batch_round_trip
                    .observe(batch.sent.elapsed().as_secs_f64());
            }
        }
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.ack(ack.up_to_seq)).await??;
        Ok(())
    }

    fn hello(&self) -> AgentMessage {
        AgentMessage {
            msg: Some(agent_message::Msg::Hello(Hello {
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                hostname: self.config.hostname.clone(),
                capabilities: Some(self.config.capabilities.clone()),
                spool_epoch: self.spool.epoch(),
                first_unacked_seq: self.spool.first_unacked_seq(),
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
                agent_pid: std::process::id(),
            })),
        }
    }

    fn heartbeat(&self) -> AgentMessage {
        AgentMessage {
            msg: Some(agent_message::Msg::Heartbeat(
                self.stats.snapshot(&self.spool),
            )),
        }
    }
}

/// Spool and delivery options of `kestrel-agent` (used with `--collector`). The spool options
/// may also be set in the configuration file's `[spool]` table; a flag given here wins.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// Spool directory: events wait here, on disk, until the collector acknowledges them
    /// (kept across restarts). Without it, a temporary directory removed at exit is used.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Most bytes the spool may hold (`256MiB`, `268435456`); beyond, events are shed by
    /// priority (and counted in Gaps). Default 256 MiB.
    #[arg(long, value_name = "BYTES", value_parser = crate::config::parse_byte_size)]
    pub spool_max_bytes: Option<u64>,
    /// Size of one spool segment file (`8MiB`, `8388608`). Default 8 MiB.
    #[arg(long, value_name = "BYTES", value_parser = crate::config::parse_byte_size)]
    pub spool_segment_bytes: Option<u64>,
    /// Shedding priority of an event kind when the spool fills, KIND=low|normal|high
    /// (repeatable). Defaults: exec, credential, module high; file, network, ptrace, bpf, memfd,
    /// namespace normal; the rest low.
    #[arg(long, value_name = "KIND=TIER")]
    pub spool_priority: Vec<String>,
    /// How often a heartbeat is sent to the collector (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
}

impl DeliveryArgs {
    /// These options completed from the configuration file's `[spool]` table: a flag wins over
    /// the file; priorities from both apply, the flags' last.
    pub fn with_file(&self, file: &SpoolSettings) -> DeliveryArgs {
        let mut priority: Vec<String> = file
            .priority
            .iter()
            .map(|(kind, tier)| format!("{kind}={tier}"))
            .collect();
        priority.extend(self.spool_priority.iter().cloned());
        DeliveryArgs {
            spool: self.spool.clone().or_else(|| file.dir.clone()),
            spool_max_bytes: self
                .spool_max_bytes
                .or(file.max_bytes.map(|size| size.as_u64())),
            spool_segment_bytes: self
                .spool_segment_bytes
                .or(file.segment_bytes.map(|size| size.as_u64())),
            spool_priority: priority,
            heartbeat_interval: self.heartbeat_interval,
        }
    }

    /// The spool configuration these options describe.
    pub fn spool_config(&self) -> anyhow::Result<SpoolConfig> {
        let mut priorities = Priorities::default();
        for assignment in &self.spool_priority {
            priorities
                .set(assignment)
                .map_err(|e| anyhow::anyhow!("spool priority {e}"))?;
        }
        let defaults = SpoolConfig::default();
        let config = SpoolConfig {
            max_bytes: self.spool_max_bytes.unwrap_or(defaults.max_bytes),
            segment_bytes: self.spool_segment_bytes.unwrap_or(defaults.segment_bytes),
            priorities,
            ..defaults
        };
        anyhow::ensure!(
            config.max_bytes > 0 && config.segment_bytes > 0,
            "spool sizes must be positive (max {} bytes, segment {} bytes)",
            config.max_bytes,
            config.segment_bytes
        );
        Ok(config)
    }
}

/// The path from the pipeline to the collector, running: the spool, its writer and the shipper.
pub struct Delivery {
    spool: Arc<Spool>,
    stats: Arc<AgentStats>,
    temporary: Option<PathBuf>,
    writer: JoinHandle<()>,
    shipper: JoinHandle<()>,
    gaps: JoinHandle<()>,
}

impl Delivery {
    /// Opens the spool and starts its writer and the shipper. Returns the queue the pipeline
    /// hands events to, and one for Gaps produced elsewhere (kernel drops), which are written to
    /// the spool as sequenced Gap records.
    pub fn start(
        args: &DeliveryArgs,
        config: ShipperConfig,
    ) -> anyhow::Result<(Delivery, SpoolSender, mpsc::Sender<Gap>)> {
        let (dir, temporary) = match &args.spool {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = std::env::temp_dir()
                    .join(format!("kestrel-agent-spool-{}", std::process::id()));
                tracing::warn!(
                    spool = %dir.display(),
                    "no --spool: events not yet acknowledged are lost if the agent restarts"
                );
                (dir.clone(), Some(dir))
            }
        };
        let (spool, writer) = Spool::open(&dir, args.spool_config()?)?;
        let (sender, events) = SpoolSender::channel(spool.clone(), SPOOL_QUEUE);
        let stats = Arc::new(AgentStats::default());
        let (gap_tx, mut gap_rx) = mpsc::channel::<Gap>(1024);
        let gaps = {
            let stats = stats.clone();
            // Holding a sender keeps the writer open until the last Gap is handed over.
            let keep_open = sender.clone();
            tokio::spawn(async move {
                while let Some(gap) = gap_rx.recv().await {
                    if gap.reason.is_empty() || gap.reason == "kernel" {
                        stats.kernel_drops.fetch_add(gap.count, Ordering::Relaxed);
                    }
                    keep_open.spool().report_gap(gap);
                }
            })
        };
        let config = ShipperConfig {
            heartbeat_interval: args.heartbeat_interval,
            ..config
        };
        let delivery = Delivery {
            writer: tokio::spawn(run_writer(writer, events)),
            shipper: tokio::spawn(Shipper::new(config, spool.clone(), stats.clone()).run()),
            stats,
            gaps,
            spool,
            temporary,
        };
        Ok((delivery, sender, gap_tx))
    }

    /// The spool.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// The counters the heartbeats report.
    pub fn stats(&self) -> &Arc<AgentStats> {
        &self.stats
    }

    /// Call once the pipeline has stopped (its queues are dropped): lets the writer finish,
    /// gives the collector up to `timeout` to acknowledge what is left, and records the
    /// acknowledged position. What is not acknowledged stays in the spool for the next run.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.gaps.await;
        let _ = self.writer.await;
        if tokio::time::timeout(timeout, self.shipper).await.is_err() {
            tracing::warn!(
                unacked = self.spool.unacked(),
                "collector did not acknowledge everything before shutdown; the spool keeps it"
            );
        }
        if let Err(e) = self.spool.persist() {
            tracing::error!(error = %e, "cannot record the acknowledged position");
        }
        if let Some(dir) = self.temporary {
            drop(self.spool);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A message built from spool items: one batch of consecutive events, or one Gap.
struct Message {
    encoded: EncodedAgentMessage,
    /// The last sequence number it covers.
    last_seq: u64,
    /// Events it holds (0 for a Gap).
    events: usize,
}

impl Message {
    fn batch(batch: BatchEncoder) -> Message {
        Message {
            last_seq: batch.next_seq() - 1,
            events: batch.len(),
            encoded: batch.finish(),
        }
    }
}

/// Groups consecutive events into batches; a Gap item ends the batch before it.
fn messages(items: Vec<Item>) -> Vec<Message> {
    let mut out = Vec::new();
    let mut batch: Option<BatchEncoder> = None;
    for item in items {
        match item {
            Item::Event { seq, body } => {
                if batch.as_ref().is_none_or(|b| b.next_seq() != seq) {
                    out.extend(batch.take().map(Message::batch));
                    batch = Some(BatchEncoder::new(seq));
                }
                batch.as_mut().expect("set above").push(&body);
            }
            Item::Gap(gap) => {
                out.extend(batch.take().map(Message::batch));
                out.push(Message {
                    last_seq: gap.last_seq,
                    events: 0,
                    encoded: (&AgentMessage::from(agent_message::Msg::Gap(gap))).into(),
                });
            }
        }
    }
    out.extend(batch.map(Message::batch));
    out
}

/// This process's CPU time and resident memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    /// User plus system CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

impl ProcessUsage {
    /// Measures now (zeros where the kernel does not say).
    pub fn now() -> ProcessUsage {
        // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
        let usage = unsafe {
            let mut usage = std::mem::zeroed::<libc::rusage>();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
        let rss_pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        ProcessUsage {
            cpu_ns: ns(usage.ru_utime) + ns(usage.ru_stime),
            rss_bytes: rss_pages * procfs::page_size(),
        }
    }
}

/// The error and its causes on one line, skipping causes the line already quotes.
fn report(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line
}

/// Exponential backoff from 200 ms doubling up to `max`, with "equal jitter": a random delay
/// between half and all of that, so that many agents do not reconnect in lockstep.
fn backoff(failures: u32, max: Duration) -> Duration {
    let max_ms = max.as_millis().max(200) as u64;
    let base_ms = 200u64
        .saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1))
        .min(max_ms);
    Duration::from_millis(rand::rng().random_range(base_ms / 2..=base_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let max = Duration::from_secs(10);
        assert!(backoff(1, max) >= Duration::from_millis(100));
        assert!(backoff(1, max) <= Duration::from_millis(200));
        assert!(backoff(4, max) >= Duration::from_millis(800));
        assert!(backoff(50, max) <= max);
        assert!(backoff(50, max) >= max / 2);
    }

    fn event(seq: u64) -> Item {
        Item::Event {
            seq,
            body: Vec::new(),
        }
    }

    #[test]
    fn consecutive_events_form_one_batch_and_gaps_split_them() {
        let gap = Gap {
            first_seq: 3,
            last_seq: 3,
            ..Gap::default()
        };
        let out = messages(vec![event(1), event(2), Item::Gap(gap), event(4), event(6)]);
        let shape: Vec<(char, u64, usize)> = out
            .iter()
            .map(|m| {
                let decoded = AgentMessage::decode(m.encoded.as_bytes()).unwrap();
                match decoded.msg.unwrap() {
                    agent_message::Msg::Batch(b) => {
                        assert_eq!(b.events.len(), m.events);
                        let seqs: Vec<u64> = b.events.iter().map(|e| e.seq).collect();
                        let expected: Vec<u64> = (b.first_seq..=m.last_seq).collect();
                        assert_eq!(seqs, expected);
                        ('b', b.first_seq, b.events.len())
                    }
                    agent_message::Msg::Gap(g) => ('g', g.first_seq, 0),
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect();
        assert_eq!(shape, [('b', 1, 2), ('g', 3, 0), ('b', 4, 1), ('b', 6, 1)]);
    }

    #[test]
    fn usage_of_this_process_is_measured() {
        let usage = ProcessUsage::now();
        assert!(usage.rss_bytes > 0);
    }
}
