//! Loads Kestrel's eBPF object into the kernel, hands it the kernel layout, and attaches each hook.

use std::path::Path;

use std::os::unix::fs::MetadataExt;

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use kestrel_ebpf_abi::{
    sys, FileKey, PathPrefix, ProbeConfig, CONFIG_GLOBAL, DEFAULT_RING_BYTES, DROPS_MAP,
    EVENTS_MAP, MUTED_EXES_MAP, MUTED_MAP, PREFIX_MAX, RING_WAKEUP_DIVISOR, SENSITIVE_MAP,
    SENSITIVE_NAMES_MAP,
};

use crate::{
    config::AgentConfig,
    kernel::layout::{self, LayoutError, TRACEFS, VMLINUX_BTF},
};

/// The eBPF object built by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kestrel"));

/// Where and how a program attaches.
#[derive(Debug, Clone, Copy)]
enum Attach {
    /// A classic tracepoint `category/name`.
    TracePoint(&'static str, &'static str),
    /// A raw tracepoint by name.
    RawTracePoint(&'static str),
    /// The `syscalls` tracepoint with the program's own name.
    Syscall,
}

/// The process lifecycle programs, by name in the object, and where they attach.
const PROCESS_HOOKS: &[(&str, Attach)] = &[
    (
        "sched_process_exec",
        Attach::TracePoint("sched", "sched_process_exec"),
    ),
    (
        "sched_process_fork",
        Attach::RawTracePoint("sched_process_fork"),
    ),
    (
        "sched_process_exit",
        Attach::TracePoint("sched", "sched_process_exit"),
    ),
    (
        "io_uring_submit_req",
        Attach::TracePoint("io_uring", "io_uring_submit_req"),
    ),
];

/// Every hook `config` asks for: (program name, attach point).
fn hooks(config: &AgentConfig) -> Vec<(String, Attach)> {
    let mut hooks: Vec<(String, Attach)> = PROCESS_HOOKS
        .iter()
        .map(|(name, attach)| (name.to_string(), *attach))
        .collect();
    // Syscalls are followed through `syscalls:sys_enter_<name>` and `sys_exit_<name>`; the
    // programs have the same names as their tracepoints.
    let receives = [sys::RECVFROM, sys::RECVMSG];
    for id in sys::ALL
        .into_iter()
        .filter(|id| config.dns_answers || !receives.contains(id))
    {
        for program in sys::programs(id).into_iter().flatten() {
            hooks.push((program.to_owned(), Attach::Syscall));
        }
    }
    hooks
}

/// Why the programs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel layout could not be resolved.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The kernel refused the object or a map.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// Every hook failed to attach: nothing would be observed.
    #[error("no hook could be attached: {0}")]
    NoHooks(String),
    /// A map the agent needs is missing from the object.
    #[error("eBPF object has no map {0}")]
    MissingMap(&'static str),
    /// A map has an unexpected type.
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Settings for [`Probes::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Ring buffer size in bytes (a power-of-two multiple of the page size); `None` keeps the
    /// object's default (8 MiB: no drop at 100,000 events/s here, see the agent_throughput
    /// bench; user space maps it twice, so it counts 16 MiB towards the resident size).
    pub ring_buffer_bytes: Option<u32>,
    /// Bytes waiting in the ring before the programs wake the agent; `None`: 1/32 of the ring;
    /// 0: every record that finds the agent caught up wakes it (the kernel's default).
    pub ring_wakeup_bytes: Option<u32>,
    /// Process whose events the kernel should not report (normally the agent itself).
    pub agent_tgid: u32,
    /// When set, only this process is reported (diagnostics and exact-count tests).
    pub only_tgid: u32,
    /// Kinds, sensitive and muted paths, muted executables.
    pub config: AgentConfig,
}

impl LoadOptions {
    /// What is wrong with the ring sizes, before the kernel refuses them with a bare EINVAL:
    /// the ring must be a power-of-two multiple of the page size, and a wake-up threshold past
    /// the ring's size would never wake the agent.
    pub fn ring_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
        let page = u32::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let ring = self.ring_buffer_bytes.unwrap_or(DEFAULT_RING_BYTES);
        if !ring.is_power_of_two() || ring < page {
            problems.push(format!(
                "--ring-buffer-bytes: {ring} is not a power-of-two multiple of the page size ({page})"
            ));
        }
        if self.ring_wakeup_bytes.is_some_and(|wakeup| wakeup > ring) {
            problems.push(format!(
                "--ring-wakeup-bytes: more than the ring's {ring} bytes, so the agent would never be woken"
            ));
        }
        problems
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: None,
            ring_wakeup_bytes: None,
            agent_tgid: std::process::id(),
            only_tgid: 0,
            config: AgentConfig::default(),
        }
    }
}

/// Whether one hook is attached, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    /// Program name.
    pub name: String,
    /// `Ok` when attached; the kernel's reason otherwise.
    pub result: Result<(), String>,
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    /// One entry per hook.
    pub hooks: Vec<HookReport>,
}

impl Probes {
    /// Resolves the kernel layout, loads the object and attaches every hook it can.
    /// Fails only when no hook at all could be attached.
    pub fn load(options: &LoadOptions) -> Result<Self, LoadError> {
        let mut config = layout::probe_config(Path::new(VMLINUX_BTF), Path::new(TRACEFS))?;
        let muted_exes = muted_executables(&options.config);
        apply_options(&mut config, options, muted_exes.len());
        let mut loader = EbpfLoader::new();
        loader.override_global(CONFIG_GLOBAL, &config, true);
        if let Some(bytes) = options.ring_buffer_bytes {
            loader.map_max_entries(EVENTS_MAP, bytes);
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        fill_prefixes(&mut ebpf, SENSITIVE_MAP, &options.config.sensitive_paths)?;
        fill_prefixes(
            &mut ebpf,
            SENSITIVE_NAMES_MAP,
            &options.config.sensitive_names,
        )?;
        fill_prefixes(&mut ebpf, MUTED_MAP, &options.config.muted_paths)?;
        fill_muted_exes(&mut ebpf, &muted_exes)?;
        let only: Option<Vec<String>> = std::env::var("KESTREL_ONLY_HOOKS")
            .ok()
            .map(|v| v.split(',').map(String::from).collect());
        if !options.config.dns_answers {
            tracing::info!("DNS answers are not captured (dns_answers = false)");
        }
        let hooks: Vec<HookReport> = hooks(&options.config)
            .into_iter()
            .filter(|(name, _)| only.as_ref().is_none_or(|only| only.contains(name)))
            .map(|(name, attach)| {
                let started = std::time::Instant::now();
                let result = attach_hook(&mut ebpf, &name, attach).map_err(|e| format!("{e:#}"));
                tracing::debug!(hook = %name, elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "hook");
                HookReport { result, name }
            })
            .collect();
        if hooks.iter().all(|h| h.result.is_err()) {
            let reasons: Vec<String> = hooks
                .iter()
                .map(|h| format!("{}: {}", h.name, h.result.as_ref().unwrap_err()))
                .collect();
            return Err(LoadError::NoHooks(reasons.join("; ")));
        }
        for hook in &hooks {
            if let Err(reason) = &hook.result {
                tracing::warn!(hook = %hook.name, %reason, "hook not attached");
            }
        }
        Ok(Self { ebpf, hooks })
    }

    /// Takes the ring buffer the programs write into (once).
    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(EVENTS_MAP)
            .ok_or(LoadError::MissingMap(EVENTS_MAP))?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            name: EVENTS_MAP,
            source,
        })
    }

    /// Takes the per-CPU, per-kind drop counters (once), for a
    /// [`crate::kernel::loss::LossMonitor`].
    pub fn take_drop_counters(&mut self) -> Result<PerCpuArray<MapData, u64>, LoadError> {
        let map = self
            .ebpf
            .take_map(DROPS_MAP)
            .ok_or(LoadError::MissingMap(DROPS_MAP))?;
        PerCpuArray::try_from(map).map_err(|source| LoadError::Map {
            name: DROPS_MAP,
            source,
        })
    }
}

/// Copies the filter settings into the kernel configuration.
fn apply_options(config: &mut ProbeConfig, options: &LoadOptions, muted_exes: usize) {
    config.agent_tgid = options.agent_tgid;
    config.only_tgid = options.only_tgid;
    config.kinds_enabled = options.config.kind_mask();
    config.sensitive_count = options.config.sensitive_paths.len() as u32;
    config.sensitive_name_count = options.config.sensitive_names.len() as u32;
    config.muted_count = options.config.muted_paths.len() as u32;
    config.muted_exe_count = muted_exes as u32;
    config.ring_wakeup_bytes = options
        .ring_wakeup_bytes
        .unwrap_or(options.ring_buffer_bytes.unwrap_or(DEFAULT_RING_BYTES) / RING_WAKEUP_DIVISOR);
}

/// Device and inode of each muted executable that exists (a missing one is logged).
fn muted_executables(config: &AgentConfig) -> Vec<FileKey> {
    config
        .muted_executables
        .iter()
        .filter_map(|path| match std::fs::metadata(path) {
            Ok(meta) => Some(FileKey { dev: kernel_dev(meta.dev()), ino: meta.ino() }),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "muted executable not found; not muted");
                None
            }
        })
        .collect()
}

/// The kernel's `dev_t` (MAJOR << 20 | MINOR) for a user-space `st_dev`.
fn kernel_dev(dev: u64) -> u64 {
    let major = libc::major(dev) as u64;
    let minor = libc::minor(dev) as u64;
    major << 20 | minor
}

fn fill_prefixes(
    ebpf: &mut Ebpf,
    name: &'static str,
    prefixes: &[String],
) -> Result<(), LoadError> {
    let map = ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
    let mut array =
        Array::<_, PathPrefix>::try_from(map).map_err(|source| LoadError::Map { name, source })?;
    for (index, prefix) in prefixes.iter().enumerate() {
        let mut entry = PathPrefix {
            len: prefix.len().min(PREFIX_MAX) as u32,
            bytes: [0; PREFIX_MAX],
        };
        entry.bytes[..entry.len as usize].copy_from_slice(&prefix.as_bytes()[..entry.len as usize]);
        array
            .set(index as u32, entry, 0)
            .map_err(|source| LoadError::Map { name, source })?;
    }
    Ok(())
}

fn fill_muted_exes(ebpf: &mut Ebpf, keys: &[FileKey]) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(MUTED_EXES_MAP)
        .ok_or(LoadError::MissingMap(MUTED_EXES_MAP))?;
    let mut muted = HashMap::<_, FileKey, u8>::try_from(map).map_err(|source| LoadError::Map {
        name: MUTED_EXES_MAP,
        source,
    })?;
    for key in keys {
        muted.insert(key, 1, 0).map_err(|source| LoadError::Map {
            name: MUTED_EXES_MAP,
            source,
        })?;
    }
    Ok(())
}

fn attach_hook(ebpf: &mut Ebpf, name: &str, attach: Attach) -> Result<(), anyhow::Error> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow::anyhow!("program {name} missing from the eBPF object"))?;
    match attach {
        Attach::TracePoint(category, event) => {
            let program: &mut TracePoint = program.try_into()?;
            program.load()?;
            program.attach(category, event)?;
        }
        Attach::RawTracePoint(event) => {
            let program: &mut RawTracePoint = program.try_into()?;
            program.load()?;
            program.attach(event)?;
        }
        Attach::Syscall => {
            let program: &mut TracePoint = program.try_into()?;
            program.load()?;
            program.attach("syscalls", name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers_off_leaves_the_receive_hooks_unattached() {
        let names = |config: &AgentConfig| -> Vec<String> {
            hooks(config).into_iter().map(|(name, _)| name).collect()
        };
        let all = names(&AgentConfig::default());
        for hook in ["sys_enter_recvfrom", "sys_exit_recvmsg", "sys_enter_sendto"] {
            assert!(all.iter().any(|h| h == hook), "{hook}");
        }
        let without = names(&AgentConfig {
            dns_answers: false,
            ..AgentConfig::default()
        });
        assert!(!without.iter().any(|h| h.contains("recv")), "{without:?}");
        assert_eq!(without.len(), all.len() - 4);
        assert!(without.iter().any(|h| h == "sys_enter_sendto"));
        let parsed: AgentConfig = toml::from_str("dns_answers = false").unwrap();
        assert!(!parsed.dns_answers);
    }
}
