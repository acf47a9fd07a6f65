//! Drains the kernel ring buffer and passes decoded records on. The programs wake the reader
//! only once a batch is waiting (`ring_wakeup_bytes`); the rest it reads on a short poll
//! interval, so a busy host pays one wake-up per batch rather than an interrupt per record.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::health::ReadProgress;
use crate::kernel::decode::{decode, KernelRecord};
use crate::metrics::figures::figures;

/// The longest a record waits in the ring when no batch's worth follows it: 20 ms (not 5)
/// took an eighth off the agent's CPU over a trickle of execs, well inside the second an alert
/// may take.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Records decoded at a time before they are passed on, so that a full ring is not decoded
/// into memory at once.
const CHUNK: usize = 1024;

/// Reads the ring buffer until the receiving side closes.
pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
    records: mpsc::Sender<KernelRecord>,
    /// Consume records without decoding them (the benchmarks' floor: the kernel's cost alone).
    discard: bool,
    /// Marked after every pass over the ring (readiness).
    progress: Option<ReadProgress>,
    /// Records that could not be decoded (logged, then skipped).
    pub malformed: u64,
}

impl RingReader {
    /// A reader that sends decoded records to `records`.
    pub fn new(
        ring: RingBuf<MapData>,
        records: mpsc::Sender<KernelRecord>,
    ) -> std::io::Result<Self> {
        // SAFETY: the ring buffer owns its file descriptor and keeps it open for as long as
        // the AsyncFd that owns the ring buffer exists.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
        Ok(Self {
            ring,
            records,
            discard: false,
            progress: None,
            malformed: 0,
        })
    }

    /// Consumes every record without decoding or passing it on: what the programs cost when
    /// user space does nothing, the floor a benchmark compares against.
    pub fn discarding(mut self) -> Self {
        self.discard = true;
        self
    }

    /// Marks `progress` after every pass over the ring, so readiness can tell a reader that
    /// keeps up from one that is stuck.
    pub fn with_progress(mut self, progress: ReadProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Runs until the channel closes. Blocks (applying backpressure to the kernel, which then
    /// counts drops) when the next stage is slow.
    pub async fn run(mut self) -> std::io::Result<()> {
        loop {
            // A wake-up or the poll interval, whichever comes first. Readiness is cleared
            // before draining, so a wake-up for records written meanwhile is not lost.
            if let Ok(guard) = tokio::time::timeout(POLL_INTERVAL, self.ring.readable_mut()).await {
                guard?.clear_ready();
            }
            loop {
                let (batch, read) = self.take(CHUNK);
                for record in batch {
                    if self.records.send(record).await.is_err() {
                        return Ok(());
                    }
                }
                if read < CHUNK {
                    break;
                }
            }
            if let Some(progress) = &self.progress {
                progress.mark();
            }
        }
    }

    /// Up to `most` records from the ring, decoded (none when discarding), and how many were
    /// read.
    fn take(&mut self, most: usize) -> (Vec<KernelRecord>, usize) {
        let mut batch = Vec::new();
        let ring = self.ring.get_mut();
        let mut seen = 0;
        while seen < most {
            let Some(item) = ring.next() else { break };
            seen += 1;
            if self.discard {
                continue;
            }
            match decode(&item) {
                Ok(record) => batch.push(record),
                Err(err) => {
                    self.malformed += 1;
                    figures().malformed_records.inc();
                    tracing::warn!(%err, "malformed ring buffer record skipped");
                }
            }
        }
        figures().ring_records.inc_by(seen as u64);
        (batch, seen)
    }
}
