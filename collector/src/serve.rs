//! `kestrel-collector serve`: loads certificates, rules and store, then runs the mTLS listener
//! and the gRPC ingest service until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use kestrel_proto::ingest_server::IngestServer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::alerting::AlertPipeline;
use crate::cli::ServeArgs;
use crate::config::{self, ConfigError, Settings};
use crate::enrolment::{Enrolment, EnrolmentError};
use crate::health::Health;
use crate::ingress::ingest::IngestService;
use crate::ingress::limits::IngressLimits;
use crate::ingress::listener::TlsListener;
use crate::ingress::tls::{self, TlsError};
use crate::ingress::{Agents, AgentsError};
use crate::pipeline::Pipeline;
use crate::reload::RuleReloader;
use crate::sinks::{jsonl, SinkConfig};
use crate::store::{Store, StoreError};
use kestrel_detect::{LoadError, RuleSet};

/// How long shutdown waits for in-flight batches and connections before giving up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Authenticated connections waiting for the gRPC server to pick them up.
const CONN_QUEUE: usize = 64;

/// What `serve --check-config` found in a configuration that would start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigCheck {
    /// Rules loaded from the rules directory.
    pub rules: usize,
    /// Sinks configured (the `--alerts-jsonl` one included).
    pub sinks: usize,
}

/// The collector could not start, or its server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Certificate, key or client CA unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The rules directory is unreadable.
    #[error(transparent)]
    Rules(#[from] LoadError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The agent policy (deny-list, known agents) could not be loaded.
    #[error(transparent)]
    Agents(#[from] AgentsError),
    /// The configuration file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Sinks could not be set up (each one named).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Sinks(Vec<crate::sinks::SinkError>),
    /// The listen address could not be bound.
    #[error("listen address {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Enrolment (`[enrolment]`) could not start.
    #[error(transparent)]
    Enrolment(#[from] EnrolmentError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A collector that loaded its files and bound its address, ready to [`run`](Collector::run).
pub struct Collector {
    listener: TlsListener,
    local_addr: SocketAddr,
    pipeline: Arc<Pipeline>,
    alerts: AlertPipeline,
    /// Reloads the rules directory on SIGHUP and file changes.
    reloader: RuleReloader,
    /// Certificate and deny-list reloads, one stream per identity, silence alerts.
    agents: Agents,
    /// `--metrics-listen`, bound, with the data directory it reports on.
    metrics: Option<(tokio::net::TcpListener, std::path::PathBuf)>,
    /// The store and how long its events are kept (`--event-retention`).
    retention: (Store, Duration),
    /// What one agent may send and hold (`[ingress]`).
    limits: IngressLimits,
    /// The enrolment listener and service, with `[enrolment]`.
    enrolment: Option<Enrolment>,
}

impl Collector {
    /// What `serve --check-config` checks, without binding, opening the store or starting
    /// anything: the key's mode, the certificates, every rule file, the configuration file and
    /// its sinks (built as `serve` builds them: a jsonl sink creates its file). Every problem
    /// found, or what would be loaded.
    pub fn check_config(args: &ServeArgs) -> Result<ConfigCheck, Vec<String>> {
        let mut problems = Vec::new();
        let chain = |e: &dyn std::error::Error| crate::report::error_chain(e);
        if let Err(e) = crate::private_files::check_private_key(&args.key) {
            problems.push(chain(&e));
        }
        if let Err(e) = tls::ReloadingConfig::load(&args.cert, &args.key, &args.client_ca) {
            problems.push(chain(&e));
        }
        let rules = match RuleSet::load_dir(&args.rules) {
            Ok((rules, errors)) => {
                problems.extend(errors.iter().map(ToString::to_string));
                rules.len()
            }
            Err(e) => {
                problems.push(chain(&e));
                0
            }
        };
        let sinks = match settings(args) {
            Ok(settings) => {
                let errors = settings.sinks.iter().filter_map(|sink| sink.build().err());
                problems.extend(errors.map(|e| e.to_string()));
                if let Some(enrolment) = &settings.enrolment {
                    if let Err(e) = crate::enrolment::check(enrolment, &args.client_ca) {
                        problems.push(chain(&e));
                    }
                }
                settings.sinks.len()
            }
            Err(e) => {
                problems.push(chain(&e));
                0
            }
        };
        if problems.is_empty() {
            Ok(ConfigCheck { rules, sinks })
        } else {
            Err(problems)
        }
    }

    /// Loads the TLS files, the rules, the store and the alert output, then binds the listen
    /// address. Each failure names the file or address at fault.
    pub async fn start(args: &ServeArgs) -> Result<Collector, ServeError> {
        crate::private_files::check_private_key(&args.key)?;
        let tls = Arc::new(tls::ReloadingConfig::load(
            &args.cert,
            &args.key,
            &args.client_ca,
        )?);
        let rules = load_rules(&args.rules)?;
        let store = Store::open(&args.data)?;
        let settings = settings(args)?;
        let alerts = AlertPipeline::start(store.clone(), &settings).map_err(ServeError::Sinks)?;
        let agents = Agents::load(&args.agents, tls, &store, Some(alerts.clone()))?;
        let bind_err = |source| ServeError::Bind {
            addr: args.listen.clone(),
            source,
        };
        let limits = settings.ingress.clone();
        let listener = TlsListener::bind(&args.listen, agents.tls(), agents.admission())
            .await
            .map_err(bind_err)?
            .with_limits(limits.clone());
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let enrolment = match &settings.enrolment {
            Some(enrolment) => Some(
                Enrolment::start(
                    enrolment,
                    (&args.cert, &args.key, &args.client_ca),
                    store.clone(),
                    agents.revocations(),
                    (limits.clone(), args.agents.reload_interval),
                )
                .await?,
            ),
            None => None,
        };
        let metrics = match args.metrics_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind {
                        addr: format!("--metrics-listen {addr}"),
                        source,
                    })?;
                info!(%addr, "serving /metrics, /healthz and /readyz");
                Some((listener, args.data.clone()))
            }
            None => None,
        };
        info!(
            listen = %local_addr,
            data = %args.data.display(),
            rules = rules.len(),
            "collector ready"
        );
        let retention = (store.clone(), args.store.event_retention);
        let pipeline = Arc::new(
            Pipeline::new(store, Arc::new(rules), Some(alerts.clone()))
                .with_agent_in_flight_limit(limits.max_events_in_flight_per_agent),
        );
        let reloader = RuleReloader::new(&args.rules, pipeline.shared_rules().clone());
        Ok(Collector {
            listener,
            local_addr,
            pipeline,
            alerts,
            reloader,
            agents,
            metrics,
            retention,
            limits,
            enrolment,
        })
    }

    /// The enrolment listener's address, with `[enrolment]`.
    pub fn enrolment_addr(&self) -> Option<SocketAddr> {
        self.enrolment.as_ref().map(Enrolment::local_addr)
    }

    /// The alert pipeline: raise system alerts (agent silent, …) with
    /// [`AlertPipeline::raise`].
    pub fn alerts(&self) -> AlertPipeline {
        self.alerts.clone()
    }

    /// The bound address (the real port when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves agents until `shutdown` completes, then stops accepting, lets every stream
    /// finish its batch in hand (bounded by [`DRAIN_TIMEOUT`]) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let stop = CancellationToken::new();
        let streams = TaskTracker::new();
        let (conns, incoming) = mpsc::channel(CONN_QUEUE);
        tokio::spawn(self.listener.run(conns, stop.clone()));
        tokio::spawn(self.reloader.run(stop.clone()));
        if let Some((listener, data)) = self.metrics {
            let health = Health {
                store: self.retention.0.clone(),
                rules: self.pipeline.shared_rules().clone(),
                alerts: self.alerts.clone(),
            };
            tokio::spawn(async move {
                if let Err(e) = crate::endpoint::serve(listener, data, health).await {
                    warn!(error = %e, "metrics endpoint stopped");
                }
            });
        }

        let (store, window) = self.retention;
        tokio::spawn(crate::store::retention::run(store, window, stop.clone()));
        let alerts = self.alerts.clone();
        self.agents.spawn(&stop);
        if let Some(enrolment) = self.enrolment {
            enrolment.spawn(&stop);
        }
        let limits = self.limits;
        let service = self.agents.apply(
            IngestService::new(self.pipeline, stop.clone(), streams.clone())
                .with_limits(limits.clone()),
        );
        let incoming = ReceiverStream::new(incoming).map(Ok::<_, std::io::Error>);
        // The runtime answering is the liveness test: a collector that hangs stops pinging.
        tokio::spawn(kestrel_service::service_manager::watchdog(|_| true));
        kestrel_service::service_manager::ready(&format!("listening on {}", self.local_addr));
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(Some(limits.max_streams_per_connection))
            .add_service(
                IngestServer::new(service).max_decoding_message_size(limits.max_message_bytes),
            )
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
        let mut server = pin!(server);

        tokio::select! {
            result = &mut server => {
                stop.cancel();
                return result.map_err(ServeError::from);
            }
            () = shutdown => {
                kestrel_service::service_manager::stopping();
                info!("shutting down: no new connections, finishing in-flight batches");
            }
        }
        stop.cancel();
        streams.close();
        let drain = async {
            let result = server.await;
            streams.wait().await;
            result
        };
        match tokio::time::timeout(DRAIN_TIMEOUT, drain).await {
            Ok(result) => result?,
            Err(_) => warn!(
                timeout_s = DRAIN_TIMEOUT.as_secs(),
                "shutdown drain timed out; closing remaining connections"
            ),
        }
        alerts.shutdown().await;
        info!("collector stopped");
        Ok(())
    }
}

/// Name of the JSON-lines sink that `--alerts-jsonl` adds.
pub const ALERTS_JSONL_SINK: &str = "alerts-jsonl";

/// The configuration file's settings (defaults without `--config`), plus the JSON-lines sink
/// of `--alerts-jsonl`.
fn settings(args: &ServeArgs) -> Result<Settings, ServeError> {
    let mut config = match &args.config {
        Some(path) => config::load(path)?,
        None => Settings::default(),
    };
    if let Some(path) = &args.alerts_jsonl {
        let implicit = config::CollectorConfig {
            sinks: vec![SinkConfig {
                kind: "jsonl".into(),
                name: Some(ALERTS_JSONL_SINK.into()),
                options: jsonl::Options::to_path(path.clone()),
                ..SinkConfig::default()
            }],
            ..config::CollectorConfig::default()
        };
        let sink = implicit
            .validate()
            .map_err(|problems| ConfigError::Invalid {
                path: path.clone(),
                problems,
            })?
            .sinks
            .remove(0);
        if config.sinks.iter().any(|s| s.name == sink.name) {
            return Err(ConfigError::Invalid {
                path: args.config.clone().unwrap_or_default(),
                problems: vec![format!(
                    "sink name {ALERTS_JSONL_SINK:?} is reserved for --alerts-jsonl"
                )],
            }
            .into());
        }
        config.sinks.push(sink);
    }
    Ok(config)
}

/// Loads the rules directory: an invalid rule file is a warning, an unreadable directory an error.
fn load_rules(dir: &Path) -> Result<RuleSet, ServeError> {
    let (rules, errors) = RuleSet::load_dir(dir)?;
    for error in &errors {
        warn!("{error}");
    }
    if rules.is_empty() {
        warn!(dir = %dir.display(), invalid = errors.len(), "no rules loaded: nothing will alert");
    } else {
        info!(dir = %dir.display(), rules = rules.len(), invalid = errors.len(), "rules loaded");
    }
    Ok(rules)
}
