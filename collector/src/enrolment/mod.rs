//! Enrolment: one identity per node, issued by the collector.
//!
//! An agent makes its key on its node and sends a certificate signing request with a proof of
//! which node it is — a one-time join token ([`join_token`], for VMs), a projected Kubernetes
//! service account token ([`kubernetes`]), or, to renew, its current certificate — to the
//! enrolment listener ([`listener`]). The collector checks the proof ([`service`]) and signs a
//! short-lived certificate whose only SAN is `spiffe://<trust domain>/node/<node>` with the
//! issuing CA the operator gave it ([`issuer`]). Attempts are bounded per source address
//! ([`attempts`]); `[enrolment]` in the configuration file ([`config`]) turns it on.

pub mod attempts;
pub mod config;
pub mod issuer;
pub mod join_token;
pub mod kubernetes;
pub mod listener;
pub mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kestrel_proto::enrolment_server::EnrolmentServer;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::enrolment::config::EnrolmentSettings;
use crate::enrolment::issuer::{CertificateIssuer, IssuerError};
use crate::enrolment::kubernetes::{ServiceAccountVerifier, TokenError};
use crate::enrolment::listener::EnrolmentListener;
use crate::enrolment::service::EnrolmentService;
use crate::ingress::denylist::DenyList;
use crate::ingress::limits::IngressLimits;
use crate::ingress::revocations::Revocations;
use crate::ingress::tls::{self, ClientAuth, ReloadingConfig, TlsError};
use crate::store::Store;

/// Largest enrolment request decoded (a CSR and a token are a few KiB).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Enrolment cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    /// The issuing CA is unusable.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The cluster's signing keys are unusable.
    #[error(transparent)]
    Kubernetes(#[from] TokenError),
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Certificates the issuing CA signs would be refused by the ingest listener.
    #[error(
        "enrolment CA {} is not among the client CAs of --client-ca {}: the certificates it \
         issues would be refused; add it to that file",
        ca.display(), client_ca.display()
    )]
    CaNotTrusted {
        /// The issuing CA certificate.
        ca: PathBuf,
        /// The client CA file.
        client_ca: PathBuf,
    },
    /// The listen address could not be bound.
    #[error("enrolment listen address {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Enrolment, loaded and bound, ready to [`spawn`](Enrolment::spawn).
pub struct Enrolment {
    listener: EnrolmentListener,
    service: EnrolmentService,
    local_addr: SocketAddr,
    /// The listener's TLS files (server certificate and key, issuing CA), re-read when they
    /// change, every `reload_interval`.
    tls: Arc<ReloadingConfig>,
    reload_interval: Duration,
}

/// Checks what enrolment would load (for `serve --check-config`): the issuing CA and key, the
/// cluster's keys, and that `client_ca` trusts the issuing CA.
pub fn check(settings: &EnrolmentSettings, client_ca: &Path) -> Result<(), EnrolmentError> {
    let issuer = CertificateIssuer::load(
        &settings.ca_cert,
        &settings.ca_key,
        settings.lifetime,
        &settings.trust_domain,
    )?;
    check_trusted(&issuer, &settings.ca_cert, client_ca)?;
    if let Some(kubernetes) = &settings.kubernetes {
        ServiceAccountVerifier::load(kubernetes.clone())?;
    }
    Ok(())
}

fn check_trusted(
    issuer: &CertificateIssuer,
    ca: &Path,
    client_ca: &Path,
) -> Result<(), EnrolmentError> {
    let trusted = tls::load_certs(client_ca)?;
    if trusted.iter().any(|c| c.as_ref() == issuer.ca_der()) {
        Ok(())
    } else {
        Err(EnrolmentError::CaNotTrusted {
            ca: ca.to_owned(),
            client_ca: client_ca.to_owned(),
        })
    }
}

impl Enrolment {
    /// Loads the issuing CA (and the cluster's keys), checks that `client_ca` trusts it, and
    /// binds the enrolment listener with the server certificate `cert`/`key`; identities
    /// `revoked` in the store or on the deny-list get nothing.
    pub async fn start(
        settings: &EnrolmentSettings,
        (cert, key, client_ca): (&Path, &Path, &Path),
        store: Store,
        revoked: (Arc<Revocations>, Arc<DenyList>),
        (limits, reload_interval): (IngressLimits, Duration),
    ) -> Result<Enrolment, EnrolmentError> {
        let issuer = CertificateIssuer::load(
            &settings.ca_cert,
            &settings.ca_key,
            settings.lifetime,
            &settings.trust_domain,
        )?;
        check_trusted(&issuer, &settings.ca_cert, client_ca)?;
        let kubernetes = match &settings.kubernetes {
            Some(k) => Some(Arc::new(ServiceAccountVerifier::load(k.clone())?)),
            None => None,
        };
        // A renewal's certificate must come from the issuing CA, not any client CA.
        let tls = Arc::new(ReloadingConfig::load_with(
            cert,
            key,
            &settings.ca_cert,
            ClientAuth::Optional,
        )?);
        let bind_err = |source| EnrolmentError::Bind {
            addr: settings.listen.clone(),
            source,
        };
        let listener = EnrolmentListener::bind(&settings.listen, tls.clone(), limits)
            .await
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        info!(
            listen = %local_addr,
            trust_domain = %settings.trust_domain,
            lifetime = %humantime::format_duration(settings.lifetime),
            kubernetes = settings.kubernetes.is_some(),
            "enrolment listening"
        );
        let service = EnrolmentService::new(
            Arc::new(issuer),
            kubernetes,
            store,
            revoked,
            settings.max_attempts_per_minute,
        );
        Ok(Enrolment {
            listener,
            service,
            local_addr,
            tls,
            reload_interval,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves enrolment until `stop` is cancelled, reloading the listener's TLS files when
    /// they change (new connections use them).
    pub fn spawn(self, stop: &CancellationToken) {
        tokio::spawn(self.tls.clone().watch(self.reload_interval, stop.clone()));
        let (conns, incoming) = tokio::sync::mpsc::channel(64);
        tokio::spawn(self.listener.run(conns, stop.clone()));
        let incoming = ReceiverStream::new(incoming).map(Ok::<_, std::io::Error>);
        let server = Server::builder()
            .timeout(Duration::from_secs(10))
            .concurrency_limit_per_connection(2)
            .add_service(
                EnrolmentServer::new(self.service).max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(e) = server.await {
                warn!(error = %e, "enrolment server stopped");
            }
        });
    }
}
