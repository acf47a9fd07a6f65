//! `kestrel-agent`: captures process events with eBPF and streams them to the collector.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kestrel_agent::{
    clock::BootClock,
    config::AgentConfig,
    endpoint,
    enrich::container::{ContainerConfig, ContainerResolver},
    enrich::kubernetes::{self, watcher::PodWatcher, KubernetesConfig, PodDirectory},
    enrich::process_table::ProcessTable,
    events::pipeline::{Outputs, Pipeline},
    health::Health,
    kernel::loader::{LoadOptions, Probes},
    kernel::loss::LossMonitor,
    kernel::reader::RingReader,
    memory,
    metrics::{figures::figures, Metrics},
    ship::enrol::Enroller,
    ship::jsonl::JsonlWriter,
    ship::shipper::{Delivery, DeliveryArgs, ShipperConfig, TlsSource},
    ship::tls::{collector_host, TlsFiles},
};
use kestrel_proto::{HookStatus, KernelCapabilities};
use kestrel_service::{
    logging::{self, LogFormat},
    service_manager,
};
use tokio::{signal::unix::SignalKind, sync::mpsc};

/// Kestrel agent: watches process activity on this host with eBPF.
///
/// A flag given twice takes its last value, so `KESTREL_AGENT_ARGS` in the package's
/// `/etc/default/kestrel-agent` can move `--cert` and `--key` to a writable directory for
/// enrolment.
#[derive(Debug, Parser)]
#[command(name = "kestrel-agent", version, args_override_self = true)]
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
    /// The collector's enrolment listener, e.g. https://collector.example:50052: the agent
    /// makes its key, gets its certificate from the collector and renews it, writing both to
    /// --key and --cert.
    #[arg(long, value_name = "URL", requires = "collector")]
    enrol_url: Option<String>,
    /// File with the proof of this node for a first enrolment (re-read at each one): a join
    /// token (`kestrel-collector agents token create`) or a projected Kubernetes service
    /// account token (audience `kestrel`).
    #[arg(long, value_name = "FILE", requires = "enrol_url")]
    enrol_token: Option<PathBuf>,
    /// The node name to enrol as (default: the host name); in Kubernetes the pod's node name.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Also write every event as a JSON line to this file.
    #[arg(long)]
    events_jsonl: Option<PathBuf>,
    /// Kernel ring buffer size (`8MiB`, `8388608`: a power-of-two multiple of the page size;
    /// default 8 MiB).
    #[arg(long, value_parser = kestrel_agent::config::parse_byte_size_u32)]
    ring_buffer_bytes: Option<u32>,
    /// Bytes waiting in the ring before the kernel wakes the agent (default 1/32 of the ring;
    /// records below it are read every 20 ms). 0 wakes it for every record, the kernel's default.
    #[arg(long, value_parser = kestrel_agent::config::parse_byte_size_u32)]
    ring_wakeup_bytes: Option<u32>,
    /// Check the configuration and exit without loading anything into the kernel: the TLS
    /// files (with --collector), --config, the spool settings and the ring sizes. Exit status 0
    /// when the agent would start with them; otherwise 1, naming every problem found.
    #[arg(long)]
    check_config: bool,
    /// Agent configuration file (TOML): event kinds, sensitive paths, muted paths and executables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve the agent's metrics (Prometheus text) on http://ADDR/metrics, and /healthz and
    /// /readyz (ready once the programs are attached and the ring buffer is being read).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log lines as `text` or `json` (one object per line); overrides `log_format` in
    /// --config. Default text, coloured only when stderr is a terminal.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Benchmarks only: read every kernel record and discard it undecoded, to measure what
    /// the attached programs cost with no user-space work at all.
    #[arg(long, hide = true)]
    discard_records: bool,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what this kernel supports (BTF, ring buffer, each hook) and exit non-zero when the
    /// agent cannot run.
    Probe {
        /// Configuration file to check the kernel against (kinds to enable).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Decoded kernel records between the ring reader and the pipeline.
const RECORD_QUEUE: usize = 4096;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts its threads.
    memory::limit_arenas();
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(start())
}

async fn start() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A configuration file that does not load is reported by the command itself, in the
    // format the flag (or the default) gives.
    let log_format = cli.log_format.unwrap_or_else(|| {
        agent_config(&cli)
            .map(|config| config.log_format)
            .unwrap_or_default()
    });
    logging::init(log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Some(Command::Probe { config }) => probe(config.as_deref()),
        None if cli.check_config => check_config(&cli),
        None => run(cli).await,
    }
}

fn probe(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = config
        .map(AgentConfig::load)
        .transpose()?
        .unwrap_or_default();
    let release = kernel_release();
    println!("kernel:      {release}");
    let btf = std::path::Path::new(kestrel_agent::kernel::layout::VMLINUX_BTF).exists();
    println!("btf:         {}", if btf { "yes" } else { "missing" });
    let options = LoadOptions {
        config,
        ..LoadOptions::default()
    };
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

/// `--check-config`: what `run` reads before it touches the kernel, every problem reported.
fn check_config(cli: &Cli) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if let Err(e) = collector_tls(cli) {
        problems.push(format!("{e:#}"));
    }
    let config = agent_config(cli).unwrap_or_else(|e| {
        problems.push(format!("{e:#}"));
        AgentConfig::default()
    });
    if let Err(e) = cli.delivery.with_file(&config.spool).spool_config() {
        problems.push(format!("{e:#}"));
    }
    let ring = LoadOptions {
        ring_buffer_bytes: cli.ring_buffer_bytes,
        ring_wakeup_bytes: cli.ring_wakeup_bytes,
        ..LoadOptions::default()
    };
    problems.extend(ring.ring_problems());
    if problems.is_empty() {
        println!("kestrel-agent: configuration OK");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("kestrel-agent: {problem}");
    }
    anyhow::bail!("{} problem(s) in the configuration", problems.len())
}

/// The collector URL and its TLS files, loaded once to check them; `None` without --collector.
fn collector_tls(cli: &Cli) -> anyhow::Result<Option<(String, TlsSource)>> {
    let (Some(url), Some(ca), Some(cert), Some(key)) =
        (&cli.collector, &cli.ca, &cli.cert, &cli.key)
    else {
        return Ok(None);
    };
    let files = TlsFiles {
        ca: ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let tls = TlsSource {
        files,
        domain: collector_host(url)?,
    };
    match &cli.enrol_url {
        // Enrolment writes the certificate and key: only the CA must be there now.
        Some(enrol_url) => {
            collector_host(enrol_url)?;
            std::fs::metadata(ca).with_context(|| format!("CA certificate {}", ca.display()))?;
            if let Some(token) = &cli.enrol_token {
                std::fs::metadata(token)
                    .with_context(|| format!("enrolment token {}", token.display()))?;
            }
        }
        None => {
            tls.load()?;
        }
    }
    Ok(Some((url.clone(), tls)))
}

/// The enrolment of `--enrol-url`, if given.
fn enroller(cli: &Cli, tls: &TlsSource) -> anyhow::Result<Option<Enroller>> {
    let Some(url) = &cli.enrol_url else {
        return Ok(None);
    };
    let node = match &cli.node {
        Some(node) => node.clone(),
        None => nix::unistd::gethostname()
            .context("host name (give --node)")?
            .to_string_lossy()
            .to_lowercase(),
    };
    Ok(Some(Enroller {
        url: url.clone(),
        domain: collector_host(url)?,
        ca: tls.files.ca.clone(),
        cert: tls.files.cert.clone(),
        key: tls.files.key.clone(),
        token: cli.enrol_token.clone(),
        node,
        refused: Arc::default(),
    }))
}

/// The `--config` file, or the defaults without one.
fn agent_config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    Ok(cli
        .config
        .as_deref()
        .map(AgentConfig::load)
        .transpose()?
        .unwrap_or_default())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let tls = collector_tls(&cli)?;
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

    let config = agent_config(&cli)?;
    let container_config = config.containers.clone();
    let kubernetes_config = config.kubernetes.clone();
    let delivery_args = cli.delivery.with_file(&config.spool);
    let options = LoadOptions {
        ring_buffer_bytes: cli.ring_buffer_bytes,
        ring_wakeup_bytes: cli.ring_wakeup_bytes,
        config,
        ..LoadOptions::default()
    };
    if let Some(problem) = options.ring_problems().first() {
        anyhow::bail!("{problem}");
    }
    // Bound before the programs load, so probes see "alive, not ready" while they do.
    let health = Health::new();
    let endpoint_listener = match cli.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?,
        ),
        None => None,
    };
    let mut probes = Probes::load(&options)
        .context("loading eBPF programs (run as root; see `kestrel-agent probe`)")?;
    // Parsing the object and the kernel's BTF took tens of MiB that the agent does not keep.
    memory::release_free_memory();
    let attached = probes.hooks.iter().filter(|h| h.result.is_ok()).count();
    let unavailable = probes.hooks.len() - attached;
    figures().hooks_attached.set(attached as i64);
    figures().hooks_unavailable.set(unavailable as i64);
    health.programs_loaded(attached, unavailable);
    let ring = probes.take_ring_buffer()?;
    let loss = LossMonitor::new(
        probes.take_drop_counters()?,
        BootClock::now().unix_ns(BootClock::boot_ns_now()),
    )?;
    // Seed after attaching, so a process started in between is seen by one or the other.
    let table = ProcessTable::from_proc();
    tracing::info!(processes = table.len(), "process table seeded from /proc");
    memory::release_free_memory();
    tokio::spawn(memory::release_periodically());

    // Records wait in the kernel ring rather than here when the pipeline falls behind: the
    // ring's memory is fixed, this queue's would grow with the records' argv and paths.
    let (record_tx, record_rx) = mpsc::channel(RECORD_QUEUE);
    let mut outputs = Outputs {
        jsonl,
        ..Outputs::default()
    };
    let delivery = match tls {
        Some((url, tls)) => {
            let enroller = enroller(&cli, &tls)?;
            let refused = enroller.as_ref().map(|e| e.refused.clone());
            if let Some(enroller) = enroller {
                tokio::spawn(enroller.run());
            }
            let config = ShipperConfig {
                refused,
                hostname: nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                capabilities: capabilities(&probes),
                ..ShipperConfig::new(url, tls)
            };
            let (delivery, events, gaps) = Delivery::start(&delivery_args, config)?;
            outputs.shipper = Some(events);
            outputs.gaps = Some(gaps);
            Some(delivery)
        }
        None => None,
    };
    if let Some(listener) = endpoint_listener {
        let metrics = Arc::new(Metrics::new(
            delivery
                .as_ref()
                .map(|d| (d.stats().clone(), d.spool().clone())),
        ));
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        let health = health.clone();
        tokio::spawn(async move {
            if let Err(e) = endpoint::serve(listener, metrics, health).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    let mut reader = RingReader::new(ring, record_tx)?.with_progress(health.read_progress());
    if cli.discard_records {
        tracing::warn!("--discard-records: every kernel record is discarded undecoded");
        reader = reader.discarding();
    }
    let reader = tokio::spawn(reader.run());
    let pods = watch_pods(&kubernetes_config).await;
    let pipeline = tokio::spawn(
        with_containers(
            Pipeline::new(table, outputs).with_loss_monitor(loss),
            &container_config,
            pods,
        )
        .run(record_rx),
    );
    tracing::info!(hooks = attached, "agent running");
    service_manager::ready(&format!("{attached} hooks attached"));
    let (reader_alive, pipeline_alive) = (reader.abort_handle(), pipeline.abort_handle());
    let progress = health.read_progress();
    tokio::spawn(service_manager::watchdog(move |period| {
        !reader_alive.is_finished()
            && !pipeline_alive.is_finished()
            && progress.since_last_pass().is_none_or(|idle| idle < period)
    }));

    let mut terminate = tokio::signal::unix::signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    service_manager::stopping();
    reader.abort();
    pipeline.await.context("pipeline task")??;
    if let Some(delivery) = delivery {
        delivery.shutdown(Duration::from_secs(5)).await;
    }
    drop(probes);
    Ok(())
}

/// Adds container context when this host supports it; otherwise says why and goes on
/// without (events then carry enrichment NONE).
fn with_containers(
    pipeline: Pipeline,
    config: &ContainerConfig,
    pods: Option<Arc<PodDirectory>>,
) -> Pipeline {
    match ContainerResolver::new(config.clone()) {
        Ok(resolver) => pipeline.with_containers(match pods {
            Some(pods) => resolver.with_pods(pods),
            None => resolver,
        }),
        Err(err) => {
            tracing::warn!(%err, "container context unavailable");
            pipeline
        }
    }
}

/// Starts the watch of this node's pods when `[kubernetes]` and the environment call for it;
/// otherwise, or when it cannot start, says why and goes on without Kubernetes metadata.
async fn watch_pods(config: &KubernetesConfig) -> Option<Arc<PodDirectory>> {
    let plan = match config.plan(|name| std::env::var(name).ok()) {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            tracing::debug!("not in a Kubernetes cluster: no pod metadata");
            return None;
        }
        Err(reason) => {
            tracing::warn!(%reason, "Kubernetes pod metadata unavailable");
            return None;
        }
    };
    let client = match kubernetes::client::connect(&plan.source).await {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(%err, "Kubernetes pod metadata unavailable");
            return None;
        }
    };
    let pods = Arc::new(PodDirectory::new(plan.max_pods));
    let watcher = PodWatcher::new(client, plan.node_name, Arc::clone(&pods), plan.labels);
    tokio::spawn(watcher.run());
    Some(pods)
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
