//! Loss accounting: the kernel counts, per CPU and per kind, every record it lost (the ring
//! buffer was full, or a read the record needed failed); this turns increases of those
//! counters into Gap records (kind, CPU, count, time range), so every lost event is accounted
//! for.

use aya::maps::{MapData, PerCpuArray};
use kestrel_ebpf_abi::{kind_name, KIND_SLOTS};
use kestrel_proto::Gap;

/// Watches the kernel's drop counters.
pub struct LossMonitor {
    counters: PerCpuArray<MapData, u64>,
    /// Last value seen, by kind then CPU.
    seen: Vec<Vec<u64>>,
    /// When the counters were last read, nanoseconds since the Unix epoch.
    last_poll_unix_ns: u64,
}

/// The kernel counters could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the kernel drop counters: {0}")]
pub struct LossError(#[from] aya::maps::MapError);

impl LossMonitor {
    /// Starts watching from the counters' current values, at `now_unix_ns`.
    pub fn new(counters: PerCpuArray<MapData, u64>, now_unix_ns: u64) -> Result<Self, LossError> {
        let mut monitor = Self {
            counters,
            seen: Vec::new(),
            last_poll_unix_ns: now_unix_ns,
        };
        monitor.seen = monitor.read()?;
        Ok(monitor)
    }

    fn read(&self) -> Result<Vec<Vec<u64>>, LossError> {
        (0..KIND_SLOTS)
            .map(|kind| Ok(self.counters.get(&kind, 0)?.iter().copied().collect()))
            .collect()
    }

    /// One Gap per (kind, CPU) whose counter rose since the last poll, covering the time since.
    pub fn poll(&mut self, now_unix_ns: u64) -> Result<Vec<Gap>, LossError> {
        let current = self.read()?;
        let mut gaps = Vec::new();
        for (kind, per_cpu) in current.iter().enumerate() {
            for (cpu, &count) in per_cpu.iter().enumerate() {
                let before = self
                    .seen
                    .get(kind)
                    .and_then(|c| c.get(cpu))
                    .copied()
                    .unwrap_or(0);
                if count > before {
                    gaps.push(Gap {
                        kind: kind_name(kind as u32).to_owned(),
                        cpu: cpu as u32,
                        count: count - before,
                        first_time_unix_ns: self.last_poll_unix_ns,
                        last_time_unix_ns: now_unix_ns,
                        reason: "kernel".into(),
                        ..Gap::default()
                    });
                }
            }
        }
        self.seen = current;
        self.last_poll_unix_ns = now_unix_ns;
        Ok(gaps)
    }

    /// Records lost so far for `kind`, summed over CPUs (as of the last poll).
    pub fn total(&self, kind: u32) -> u64 {
        self.seen
            .get(kind as usize)
            .map(|c| c.iter().sum())
            .unwrap_or(0)
    }
}
