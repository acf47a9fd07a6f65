//! The kernel tests' harness: load the real programs with chosen options, read decoded
//! records, wait for one that matches with a failure message that shows what did arrive.

use std::time::Duration;

use crate::{require_root_for_ebpf, skip_or_fail};
use kestrel_agent::{
    config::AgentConfig,
    kernel::decode::{KernelRecord, Syscall},
    kernel::loader::{LoadOptions, Probes},
    kernel::reader::RingReader,
};
use tokio::sync::mpsc;

/// Loaded programs and the stream of their records.
pub struct Kernel {
    /// The loaded programs.
    pub probes: Probes,
    /// Their decoded records.
    pub records: mpsc::Receiver<KernelRecord>,
}

/// Loads the programs (every hook must attach) and starts reading; `None` when the test may
/// not run here (never in CI: there it fails).
pub fn load(options: LoadOptions) -> Option<Kernel> {
    let mut probes = load_probes(options)?;
    let ring = probes.take_ring_buffer().expect("ring buffer");
    let (tx, records) = mpsc::channel(65536);
    tokio::spawn(RingReader::new(ring, tx).expect("reader").run());
    Some(Kernel { probes, records })
}

/// Loads the programs without starting a reader.
pub fn load_probes(options: LoadOptions) -> Option<Probes> {
    if !require_root_for_ebpf() {
        return None;
    }
    let probes = match Probes::load(&options) {
        Ok(probes) => probes,
        Err(err) => {
            skip_or_fail(format!("eBPF programs did not load: {err:#}"));
            return None;
        }
    };
    // A hook may be unavailable only because this kernel lacks its tracepoint (module loading
    // compiled out, for one); the probe report says so, and the tests of that kind check it.
    let failed: Vec<String> = probes
        .hooks
        .iter()
        .filter(|h| h.result.is_err() && tracepoint_exists(&h.name))
        .map(|h| format!("{}: {}", h.name, h.result.as_ref().unwrap_err()))
        .collect();
    assert!(
        failed.is_empty(),
        "hooks not attached:\n{}",
        failed.join("\n")
    );
    Some(probes)
}

/// Options reporting only this test process (and everything it does), with `config`.
pub fn only_this_process(config: AgentConfig) -> LoadOptions {
    LoadOptions {
        agent_tgid: 0,
        only_tgid: std::process::id(),
        config,
        ..LoadOptions::default()
    }
}

/// Options reporting every process.
pub fn everything() -> LoadOptions {
    LoadOptions {
        agent_tgid: 0,
        ..LoadOptions::default()
    }
}

impl Kernel {
    /// Waits up to 5 s for a record matching `want`; panics listing the records seen.
    pub async fn expect(
        &mut self,
        what: &str,
        want: impl Fn(&KernelRecord) -> bool,
    ) -> KernelRecord {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.records.recv()).await {
                Ok(Some(record)) if want(&record) => return record,
                Ok(Some(record)) => seen.push(record),
                _ => {
                    let tail: Vec<String> = seen
                        .iter()
                        .rev()
                        .take(12)
                        .map(|r| format!("{r:?}"))
                        .collect();
                    panic!(
                        "no {what} within 5 s; {} other records, the last:\n{}",
                        seen.len(),
                        tail.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for a syscall record of `syscall` (an id from `kestrel_ebpf_abi::sys`) matching `want`.
    pub async fn expect_syscall(
        &mut self,
        what: &str,
        syscall: u32,
        want: impl Fn(&Syscall) -> bool,
    ) -> Syscall {
        let record = self
            .expect(
                what,
                |r| matches!(r, KernelRecord::Syscall(s) if s.syscall == syscall && want(s)),
            )
            .await;
        match record {
            KernelRecord::Syscall(s) => *s,
            _ => unreachable!(),
        }
    }

    /// Waits for a file record from any of `syscalls` whose first path ends with `suffix`
    /// (libc may use either member of a syscall family).
    pub async fn expect_family(&mut self, what: &str, syscalls: &[u32], suffix: &str) -> Syscall {
        let record = self
            .expect(what, |r| {
                matches!(r, KernelRecord::Syscall(s) if syscalls.contains(&s.syscall) && s.path.ends_with(suffix))
            })
            .await;
        match record {
            KernelRecord::Syscall(s) => *s,
            _ => unreachable!(),
        }
    }

    /// Every record that arrives until one matches `marker` (exclusive), within 5 s.
    pub async fn until(
        &mut self,
        what: &str,
        marker: impl Fn(&KernelRecord) -> bool,
    ) -> Vec<KernelRecord> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.records.recv()).await {
                Ok(Some(record)) if marker(&record) => return seen,
                Ok(Some(record)) => seen.push(record),
                _ => panic!("marker {what} never arrived; {} records seen", seen.len()),
            }
        }
    }
}

/// Whether the kernel has the tracepoint a hook of this name attaches to.
pub fn tracepoint_exists(hook: &str) -> bool {
    let events = std::path::Path::new("/sys/kernel/tracing/events");
    if hook.starts_with("sys_") {
        return events.join("syscalls").join(hook).exists();
    }
    ["sched", "io_uring"]
        .iter()
        .any(|category| events.join(category).join(hook).exists())
}
