//! The accept loop: TCP accept, TLS handshake with a deadline, client identity check.
//!
//! Each handshake runs in its own task, so a slow, silent or hostile client cannot hold up the
//! loop. Only connections that completed mutual TLS *and* carry a usable identity (in the trust
//! domain, when one is set, and not on the deny-list) reach gRPC. Every refusal is logged with
//! the peer address and the reason (expired, not yet valid, unknown issuer, no usable SAN, …).
//! Each new connection uses the TLS configuration current at that moment, so reloaded
//! certificates apply without a restart.
//!
//! Handshakes are bounded per source address and in total, authenticated connections per
//! identity and in total ([`Connections`]); a connection without a stream closes itself after
//! its idle timeout. A connection over its identity's limit is still handed on, marked, so its
//! streams are refused with a status naming the limit; its idle timeout is short.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::{debug, info, warn};

use crate::ingress::connections::{ConnActivity, ConnectionSlot, Connections, HandshakeSlot};
use crate::ingress::denylist::DenyList;
use crate::ingress::identity::{check_trust_domain, identity_from_cert, IdentityError, PeerInfo};
use crate::ingress::limits::{self, IngressLimits};
use crate::ingress::revocations::Revocations;
use crate::ingress::tls::{refusal_label, refusal_reason, ReloadingConfig};
use crate::metrics::figures::figures;

/// The idle timeout of a connection over its identity's limit: long enough to tell the peer.
const REFUSED_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A TLS connection whose client certificate was verified and named an identity.
pub struct AuthenticatedConn {
    stream: TlsStream<TcpStream>,
    peer: PeerInfo,
    /// Fires when the connection may have been idle for too long (checked, then re-armed).
    idle: Pin<Box<Sleep>>,
    /// Its place in the connection counts.
    _slot: ConnectionSlot,
}

impl AuthenticatedConn {
    /// Who is on the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

impl Connected for AuthenticatedConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AuthenticatedConn {
    /// `Err` once the connection has had no stream for its idle timeout; otherwise re-arms the
    /// timer for the next moment that could be true.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.idle.as_mut().poll(cx).is_ready() {
            let activity = &self.peer.activity;
            let now = tokio::time::Instant::now();
            match activity.idle_deadline() {
                Some(deadline) if deadline <= now => {
                    limits::refused(limits::IDLE_CONNECTION);
                    warn!(
                        identity = %self.peer.identity,
                        peer = %self.peer.remote_addr,
                        idle_s = activity.idle_timeout.as_secs_f64(),
                        "closing a connection without a stream"
                    );
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle without a stream",
                    ));
                }
                Some(deadline) => self.idle.as_mut().reset(deadline),
                None => self.idle.as_mut().reset(now + activity.idle_timeout),
            }
        }
        Ok(())
    }
}

impl AsyncRead for AuthenticatedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.poll_idle(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Who may connect, beyond holding a certificate from the client CA.
#[derive(Debug, Default, Clone)]
pub struct Admission {
    /// Only identities `spiffe://<trust_domain>/node/<name>` are accepted, when set.
    pub trust_domain: Option<String>,
    /// Revoked identities.
    pub deny: Arc<DenyList>,
    /// Identities and certificate serials revoked in the store.
    pub revoked: Arc<Revocations>,
}

impl Admission {
    /// The identity a verified leaf certificate may connect as, or why it may not.
    pub fn identity(
        &self,
        leaf: &[u8],
    ) -> Result<crate::ingress::identity::Identity, IdentityError> {
        let identity = identity_from_cert(leaf)?;
        check_trust_domain(&identity, self.trust_domain.as_deref())?;
        if self.deny.contains(&identity) {
            return Err(IdentityError::Revoked {
                identity: identity.to_string(),
                list: self.deny.path().map(ToOwned::to_owned).unwrap_or_default(),
            });
        }
        if self.revoked.identity_revoked(identity.as_str()) {
            return Err(IdentityError::IdentityRevoked {
                identity: identity.to_string(),
            });
        }
        let serial = crate::enrolment::issuer::serial_of(leaf).unwrap_or_default();
        if self.revoked.serial_revoked(&serial) {
            return Err(IdentityError::SerialRevoked {
                serial,
                identity: identity.to_string(),
            });
        }
        Ok(identity)
    }
}

/// A bound TCP listener that yields only authenticated mTLS connections.
pub struct TlsListener {
    listener: TcpListener,
    tls: Arc<ReloadingConfig>,
    admission: Admission,
    connections: Arc<Connections>,
}

impl TlsListener {
    /// Binds `addr` and serves TLS with the configuration `tls` holds at each connection,
    /// admitting clients by `admission`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        tls: Arc<ReloadingConfig>,
        admission: Admission,
    ) -> io::Result<TlsListener> {
        Ok(TlsListener {
            listener: TcpListener::bind(addr).await?,
            tls,
            admission,
            connections: Connections::new(IngressLimits::default()),
        })
    }

    /// Bounds handshakes, connections and idle time by `limits` (default: the defaults).
    pub fn with_limits(mut self, limits: IngressLimits) -> TlsListener {
        self.connections = Connections::new(limits);
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `shutdown` is cancelled or `conns` is closed, handing each authenticated
    /// connection to `conns`. Closes the listening socket when it returns.
    pub async fn run(self, conns: mpsc::Sender<AuthenticatedConn>, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = conns.closed() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            let slot = match self.connections.handshake(remote_addr.ip()) {
                Ok(slot) => slot,
                Err(over) => {
                    limits::refused(over.limit);
                    warn!(peer = %remote_addr, reason = %over, "connection refused before the TLS handshake");
                    continue;
                }
            };
            let acceptor = TlsAcceptor::from(self.tls.current());
            let admission = self.admission.clone();
            let conns = conns.clone();
            let connections = self.connections.clone();
            tokio::spawn(async move {
                let handshaken =
                    handshake(acceptor, &admission, &connections, tcp, remote_addr, slot);
                if let Some(conn) = handshaken.await {
                    // Closed only when the server is shutting down: drop the connection then.
                    let _ = conns.send(conn).await;
                }
            });
        }
        debug!("accept loop stopped");
    }
}

/// Runs the TLS handshake and identity check for one connection, logging why it was refused.
async fn handshake(
    acceptor: TlsAcceptor,
    admission: &Admission,
    connections: &Arc<Connections>,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    slot: HandshakeSlot,
) -> Option<AuthenticatedConn> {
    let _ = tcp.set_nodelay(true);
    let limits = connections.limits().clone();
    let timeout = limits.handshake_timeout;
    let accepted = tokio::time::timeout(timeout, acceptor.accept(tcp)).await;
    drop(slot);
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            debug!(peer = %remote_addr, "connection closed before the TLS handshake completed");
            return None;
        }
        Ok(Err(e)) => {
            figures()
                .tls_refusals
                .get_or_create(&[("reason", refusal_label(&e))])
                .inc();
            warn!(peer = %remote_addr, reason = %refusal_reason(&e), "TLS handshake refused");
            return None;
        }
        Err(_) => {
            figures()
                .tls_refusals
                .get_or_create(&[("reason", "handshake_timeout")])
                .inc();
            warn!(
                peer = %remote_addr,
                reason = %format_args!("no handshake within {timeout:?}"),
                "TLS handshake refused"
            );
            return None;
        }
    };
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first());
    let identity = match leaf.ok_or(IdentityError::NoCertificate) {
        Ok(leaf) => admission.identity(leaf),
        Err(e) => Err(e),
    };
    let serial = leaf
        .and_then(|leaf| crate::enrolment::issuer::serial_of(leaf.as_ref()))
        .unwrap_or_default();
    match identity {
        Ok(identity) => {
            let (slot, refusal) = match connections.connection(&identity) {
                Ok(slot) => (slot, None),
                Err((over, slot)) => {
                    limits::refused(over.limit);
                    warn!(peer = %remote_addr, identity = %identity, reason = %over, "connection over a limit");
                    (slot?, Some(over))
                }
            };
            info!(peer = %remote_addr, identity = %identity, "client authenticated");
            let idle_timeout = match refusal {
                Some(_) => REFUSED_IDLE_TIMEOUT.min(limits.idle_connection_timeout),
                None => limits.idle_connection_timeout,
            };
            let activity = ConnActivity::new(idle_timeout, refusal);
            Some(AuthenticatedConn {
                stream,
                idle: Box::pin(tokio::time::sleep(idle_timeout)),
                _slot: slot,
                peer: PeerInfo {
                    identity,
                    serial,
                    remote_addr,
                    activity,
                },
            })
        }
        Err(e) => {
            figures()
                .tls_refusals
                .get_or_create(&[("reason", e.refusal_label())])
                .inc();
            warn!(peer = %remote_addr, reason = %e, "client certificate refused");
            None
        }
    }
}
