//! Ingress: everything between an agent's connection and the [`crate::pipeline`] — the accept
//! loop and TLS, the agent's identity, the deny-list, one live stream per identity, heartbeats
//! and the `Ingest` gRPC service.
//!
//! This module wires what the collector enforces about agents beyond the TLS handshake
//! together for `serve`: reloadable server certificate and client CA, the trust domain, the
//! reloadable deny-list, the revocations in the store (identities and certificate serials), one
//! live stream per identity, and silence detection from heartbeats.

pub mod connections;
pub mod denylist;
pub mod heartbeat;
pub mod identity;
pub mod ingest;
pub mod limits;
pub mod listener;
pub mod revocations;
pub mod sessions;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::alerting::AlertPipeline;
use crate::ingress::denylist::{DenyList, DenyListError};
use crate::ingress::heartbeat::AgentMonitor;
use crate::ingress::identity::Identity;
use crate::ingress::ingest::IngestService;
use crate::ingress::listener::Admission;
use crate::ingress::revocations::Revocations;
use crate::ingress::sessions::Sessions;
use crate::ingress::tls::{ReloadingConfig, TlsError};
use crate::store::{Store, StoreError};

/// Agent admission and liveness options of `kestrel-collector serve`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// File of revoked agent identities, one per line (`#` comments); re-read when it changes.
    /// A listed identity is refused and its live stream closed.
    #[arg(long, value_name = "F")]
    pub deny_list: Option<PathBuf>,
    /// Accept only agents whose identity is `spiffe://<TRUST_DOMAIN>/node/<name>`.
    #[arg(long, value_name = "TRUST_DOMAIN")]
    pub trust_domain: Option<String>,
    /// Raise `agent silent` when an agent sends nothing for this long (e.g. 60s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub agent_silent_after: Duration,
    /// How often certificate, key, client CA and deny-list files are checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
}

impl Default for AgentArgs {
    fn default() -> AgentArgs {
        AgentArgs {
            deny_list: None,
            trust_domain: None,
            agent_silent_after: Duration::from_secs(60),
            reload_interval: Duration::from_secs(2),
        }
    }
}

/// A file the agent policy needs is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// Certificate, key or client CA.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The deny-list.
    #[error(transparent)]
    DenyList(#[from] DenyListError),
    /// Known agents could not be read from the store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The agent policy of a running collector.
pub struct Agents {
    args: AgentArgs,
    tls: Arc<ReloadingConfig>,
    deny: Arc<DenyList>,
    revoked: Arc<Revocations>,
    sessions: Arc<Sessions>,
    monitor: Arc<AgentMonitor>,
}

impl Agents {
    /// Loads the deny-list and starts watching the agents known to `store` for silence (alerts
    /// go to `alerts`); `tls` is the server configuration to keep reloading.
    pub fn load(
        args: &AgentArgs,
        tls: Arc<ReloadingConfig>,
        store: &Store,
        alerts: Option<AlertPipeline>,
    ) -> Result<Agents, AgentsError> {
        let deny = Arc::new(match &args.deny_list {
            Some(path) => DenyList::load(path)?,
            None => DenyList::empty(),
        });
        let monitor = Arc::new(AgentMonitor::new(
            args.agent_silent_after,
            alerts,
            Some(store.clone()),
        ));
        monitor.watch_known(store.agent_liveness()?);
        Ok(Agents {
            args: args.clone(),
            tls,
            deny,
            revoked: Arc::new(Revocations::load(store)?),
            sessions: Arc::new(Sessions::default()),
            monitor,
        })
    }

    /// The server TLS configuration (reloaded when its files change).
    pub fn tls(&self) -> Arc<ReloadingConfig> {
        self.tls.clone()
    }

    /// Who may connect.
    pub fn admission(&self) -> Admission {
        Admission {
            trust_domain: self.args.trust_domain.clone(),
            deny: self.deny.clone(),
            revoked: self.revoked.clone(),
        }
    }

    /// What is revoked in the store and the deny-list (shared with enrolment, which issues
    /// nothing to them).
    pub fn revocations(&self) -> (Arc<Revocations>, Arc<DenyList>) {
        (self.revoked.clone(), self.deny.clone())
    }

    /// `service` with this policy's stream registry, deny-list and silence monitor.
    pub fn apply(&self, service: IngestService) -> IngestService {
        service
            .with_sessions(self.sessions.clone())
            .with_deny_list(self.deny.clone())
            .with_revocations(self.revoked.clone())
            .with_monitor(self.monitor.clone())
    }

    /// Starts the file watchers and the silence monitor; they stop with `stop`.
    pub fn spawn(&self, stop: &CancellationToken) {
        let interval = self.args.reload_interval;
        tokio::spawn(self.tls.clone().watch(interval, stop.clone()));
        let sessions = self.sessions.clone();
        tokio::spawn(
            self.deny
                .clone()
                .watch(interval, stop.clone(), move |identity| {
                    sessions.end(identity, Status::permission_denied("identity revoked"));
                }),
        );
        let sessions = self.sessions.clone();
        tokio::spawn(
            self.revoked
                .clone()
                .watch(interval, stop.clone(), move |revoked| {
                    for identity in &revoked.identities {
                        sessions.end(
                            &Identity::new(identity.clone()),
                            Status::permission_denied("identity revoked"),
                        );
                    }
                    for serial in &revoked.serials {
                        let status = Status::permission_denied(format!(
                            "certificate serial {serial} revoked"
                        ));
                        sessions.end_serial(serial, &status);
                    }
                }),
        );
        tokio::spawn(self.monitor.clone().run(stop.clone()));
    }
}
