//! Drains the kernel ring buffer as records arrive and passes decoded records on.

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::kernel::decode::{decode, KernelRecord};

/// Reads the ring buffer until the receiving side closes.
pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
    records: mpsc::Sender<KernelRecord>,
    /// Consume records without decoding them (the benchmarks' floor: the kernel's cost alone).
    discard: bool,
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
            malformed: 0,
        })
    }

    /// Consumes every record without decoding or passing it on: what the programs cost when
    /// user space does nothing, the floor a benchmark compares against.
    pub fn discarding(mut self) -> Self {
        self.discard = true;
        self
    }

    /// Runs until the channel closes. Blocks (applying backpressure to the kernel, which then
    /// counts drops) when the next stage is slow.
    pub async fn run(mut self) -> std::io::Result<()> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let mut batch = Vec::new();
            {
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if self.discard {
                        continue;
                    }
                    match decode(&item) {
                        Ok(record) => batch.push(record),
                        Err(err) => {
                            self.malformed += 1;
                            tracing::warn!(%err, "malformed ring buffer record skipped");
                        }
                    }
                }
            }
            guard.clear_ready();
            for record in batch {
                if self.records.send(record).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
