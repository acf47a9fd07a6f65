//! Loads Kestrel's eBPF object into the kernel, hands it the kernel layout, and attaches each hook.

use std::path::Path;

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use kestrel_ebpf_abi::{CONFIG_GLOBAL, DROPS_MAP, EVENTS_MAP, KIND_SLOTS};

use crate::kernel_layout::{self, LayoutError, TRACEFS, VMLINUX_BTF};

/// The eBPF object built by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kestrel"));

/// Where and how a program attaches.
#[derive(Debug, Clone, Copy)]
enum Attach {
    /// A classic tracepoint `category/name`.
    TracePoint(&'static str, &'static str),
    /// A raw tracepoint by name.
    RawTracePoint(&'static str),
}

/// The programs, by name in the object, and where they attach.
const HOOKS: &[(&str, Attach)] = &[
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
];

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
    /// object's default (16 MiB).
    pub ring_buffer_bytes: Option<u32>,
    /// Process whose events the kernel should not report (normally the agent itself).
    pub agent_tgid: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: None,
            agent_tgid: std::process::id(),
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
        let mut config = kernel_layout::probe_config(Path::new(VMLINUX_BTF), Path::new(TRACEFS))?;
        config.agent_tgid = options.agent_tgid;
        let mut loader = EbpfLoader::new();
        loader.override_global(CONFIG_GLOBAL, &config, true);
        if let Some(bytes) = options.ring_buffer_bytes {
            loader.map_max_entries(EVENTS_MAP, bytes);
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        let hooks: Vec<HookReport> = HOOKS
            .iter()
            .map(|&(name, attach)| HookReport {
                name: name.to_owned(),
                result: attach_hook(&mut ebpf, name, attach).map_err(|e| e.to_string()),
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

    /// Records lost in the kernel because the ring buffer was full, summed over CPUs, by kind
    /// (index = `KIND_*`).
    pub fn drops(&self) -> Result<Vec<u64>, LoadError> {
        let map = self
            .ebpf
            .map(DROPS_MAP)
            .ok_or(LoadError::MissingMap(DROPS_MAP))?;
        let drops = PerCpuArray::<_, u64>::try_from(map).map_err(|source| LoadError::Map {
            name: DROPS_MAP,
            source,
        })?;
        (0..KIND_SLOTS)
            .map(|kind| {
                drops
                    .get(&kind, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(|source| LoadError::Map {
                        name: DROPS_MAP,
                        source,
                    })
            })
            .collect()
    }
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
    }
    Ok(())
}
