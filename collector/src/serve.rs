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

use crate::alert::{AlertLog, AlertLogError};
use crate::cli::ServeArgs;
use crate::detect::{LoadError, RuleSet};
use crate::ingest::IngestService;
use crate::listener::TlsListener;
use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};

/// How long shutdown waits for in-flight batches and connections before giving up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest `AgentMessage` accepted (a batch of events).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Authenticated connections waiting for the gRPC server to pick them up.
const CONN_QUEUE: usize = 64;

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
    /// The alerts JSONL file could not be opened.
    #[error(transparent)]
    AlertLog(#[from] AlertLogError),
    /// The listen address could not be bound.
    #[error("listen address {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A collector that loaded its files and bound its address, ready to [`run`](Collector::run).
pub struct Collector {
    listener: TlsListener,
    local_addr: SocketAddr,
    pipeline: Arc<Pipeline>,
}

impl Collector {
    /// Loads the TLS files, the rules, the store and the alert output, then binds the listen
    /// address. Each failure names the file or address at fault.
    pub async fn start(args: &ServeArgs) -> Result<Collector, ServeError> {
        let tls = tls::server_config(&args.cert, &args.key, &args.client_ca)?;
        let rules = load_rules(&args.rules)?;
        let store = Store::open(&args.data)?;
        let alert_log = match &args.alerts_jsonl {
            Some(path) => Some(Arc::new(AlertLog::open(path)?)),
            None => None,
        };
        let bind_err = |source| ServeError::Bind {
            addr: args.listen.clone(),
            source,
        };
        let listener = TlsListener::bind(&args.listen, tls)
            .await
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        info!(
            listen = %local_addr,
            data = %args.data.display(),
            rules = rules.len(),
            "collector ready"
        );
        Ok(Collector {
            listener,
            local_addr,
            pipeline: Arc::new(Pipeline::new(store, Arc::new(rules), alert_log)),
        })
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

        let service = IngestService::new(self.pipeline, stop.clone(), streams.clone());
        let incoming = ReceiverStream::new(incoming).map(Ok::<_, std::io::Error>);
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(IngestServer::new(service).max_decoding_message_size(MAX_MESSAGE_BYTES))
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
        let mut server = pin!(server);

        tokio::select! {
            result = &mut server => {
                stop.cancel();
                return result.map_err(ServeError::from);
            }
            () = shutdown => {
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
        info!("collector stopped");
        Ok(())
    }
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
