//! `kestrel-agent`: captures process events with eBPF and streams them to the collector.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kestrel_agent::{
    jsonl::JsonlWriter,
    loader::{LoadOptions, Probes},
    pipeline::{Outputs, Pipeline},
    process_table::ProcessTable,
    reader::RingReader,
    shipper::{Shipper, ShipperConfig},
    tls::TlsFiles,
};
use kestrel_proto::{HookStatus, KernelCapabilities};
use tokio::{signal::unix::SignalKind, sync::mpsc};

/// Kestrel agent: watches process activity on this host with eBPF.
#[derive(Debug, Parser)]
#[command(name = "kestrel-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Collector URL, e.g. https://collector.example:50051. Needs --ca, --cert and --key.
    #[arg(long, requires_all = ["ca", "cert", "key"])]
    collector: Option<String>,
    /// CA certificate (PEM) that signed the collector's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This agent's certificate (PEM); its SAN is the agent's identity.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// This agent's private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Also write every event as a JSON line to this file.
    #[arg(long)]
    events_jsonl: Option<PathBuf>,
    /// Kernel ring buffer size in bytes (a power-of-two multiple of the page size).
    #[arg(long)]
    ring_buffer_bytes: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what this kernel supports (BTF, ring buffer, each hook) and exit non-zero when the
    /// agent cannot run.
    Probe,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Probe) => probe(),
        None => run(cli).await,
    }
}

fn probe() -> anyhow::Result<()> {
    let release = kernel_release();
    println!("kernel:      {release}");
    let btf = std::path::Path::new(kestrel_agent::kernel_layout::VMLINUX_BTF).exists();
    println!("btf:         {}", if btf { "yes" } else { "missing" });
    let options = LoadOptions::default();
    match Probes::load(&options) {
        Ok(probes) => {
            println!("ring buffer: yes");
            for hook in &probes.hooks {
                match &hook.result {
                    Ok(()) => println!("hook {:<24} attached", hook.name),
                    Err(reason) => println!("hook {:<24} unavailable: {reason}", hook.name),
                }
            }
            Ok(())
        }
        Err(err) => {
            println!("load:        failed: {err}");
            anyhow::bail!("the agent cannot run on this kernel: {err}")
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let tls = match (&cli.collector, &cli.ca, &cli.cert, &cli.key) {
        (Some(url), Some(ca), Some(cert), Some(key)) => {
            let files = TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            };
            let domain = host_of(url).with_context(|| format!("collector URL {url}: no host"))?;
            Some((url.clone(), files.client_config(&domain)?))
        }
        _ => None,
    };
    let jsonl = cli
        .events_jsonl
        .as_deref()
        .map(JsonlWriter::create)
        .transpose()?;
    if tls.is_none() && jsonl.is_none() {
        tracing::warn!(
            "neither --collector nor --events-jsonl given: events are observed but not kept"
        );
    }

    let options = LoadOptions {
        ring_buffer_bytes: cli.ring_buffer_bytes,
        ..LoadOptions::default()
    };
    let mut probes = Probes::load(&options)
        .context("loading eBPF programs (run as root; see `kestrel-agent probe`)")?;
    let ring = probes.take_ring_buffer()?;
    // Seed after attaching, so a process started in between is seen by one or the other.
    let table = ProcessTable::from_proc();
    tracing::info!(processes = table.len(), "process table seeded from /proc");

    let (record_tx, record_rx) = mpsc::channel(16 * 1024);
    let mut outputs = Outputs {
        jsonl,
        shipper: None,
    };
    let shipper = tls.map(|(url, tls)| {
        let (tx, rx) = mpsc::channel(64 * 1024);
        outputs.shipper = Some(tx);
        let config = ShipperConfig {
            url,
            tls,
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            capabilities: capabilities(&probes),
            batch_max: 512,
            flush_interval: Duration::from_millis(100),
            unacked_max: 200_000,
        };
        tokio::spawn(Shipper::new(config, rx).run())
    });
    let reader = tokio::spawn(RingReader::new(ring, record_tx)?.run());
    let pipeline = tokio::spawn(Pipeline::new(table, outputs).run(record_rx));
    tracing::info!(
        hooks = probes.hooks.iter().filter(|h| h.result.is_ok()).count(),
        "agent running"
    );

    let mut terminate = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut drops_seen = 0u64;
    let mut drop_check = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = drop_check.tick() => {
                let drops: u64 = probes.drops().map(|d| d.iter().sum()).unwrap_or(0);
                if drops > drops_seen {
                    tracing::warn!(lost = drops - drops_seen, total = drops, "kernel ring buffer full: events lost");
                    drops_seen = drops;
                }
            }
        }
    }
    tracing::info!("shutting down");
    reader.abort();
    pipeline.await.context("pipeline task")??;
    if let Some(shipper) = shipper {
        let _ = tokio::time::timeout(Duration::from_secs(5), shipper).await;
    }
    drop(probes);
    Ok(())
}

/// The kernel capabilities reported to the collector in Hello.
fn capabilities(probes: &Probes) -> KernelCapabilities {
    KernelCapabilities {
        kernel_release: kernel_release(),
        btf: true,
        ring_buffer: true,
        hooks: probes
            .hooks
            .iter()
            .map(|h| HookStatus {
                name: h.name.clone(),
                attached: h.result.is_ok(),
                error: h.result.clone().err().unwrap_or_default(),
            })
            .collect(),
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The host part of `https://host:port/...`.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
    };
    (!host.is_empty()).then(|| host.to_owned())
}
