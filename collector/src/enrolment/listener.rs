//! The enrolment listener: TLS with the collector's server certificate, a client certificate
//! optional (and, when presented, verified against the issuing CA only), serving nothing but
//! the `Enrolment` service.
//!
//! Bounded like the ingest listener: handshakes per source address and in total, a handshake
//! deadline, connections in total, and a connection closes itself after [`CONNECTION_LIFETIME`]
//! (an enrolment is one short request).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use crate::ingress::connections::Connections;
use crate::ingress::limits::IngressLimits;
use crate::ingress::tls::{refusal_reason, ReloadingConfig};

/// How long one enrolment connection may stay open.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Enrolment connections open at a time.
pub const MAX_CONNECTIONS: usize = 256;

/// One accepted enrolment connection.
pub struct EnrolmentConn {
    stream: TlsStream<TcpStream>,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Connected for EnrolmentConn {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for EnrolmentConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "enrolment connection open too long",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for EnrolmentConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A bound enrolment listener.
pub struct EnrolmentListener {
    listener: TcpListener,
    tls: Arc<ReloadingConfig>,
    handshakes: Arc<Connections>,
    open: Arc<Semaphore>,
}

impl EnrolmentListener {
    /// Binds `addr`, serving TLS with the configuration `tls` holds at each connection.
    pub async fn bind(
        addr: &str,
        tls: Arc<ReloadingConfig>,
        limits: IngressLimits,
    ) -> io::Result<EnrolmentListener> {
        Ok(EnrolmentListener {
            listener: TcpListener::bind(addr).await?,
            tls,
            handshakes: Connections::new(limits),
            open: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `shutdown`, handing each connection whose handshake completed to `conns`.
    pub async fn run(self, conns: mpsc::Sender<EnrolmentConn>, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "enrolment accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                warn!(peer = %peer, limit = MAX_CONNECTIONS, "enrolment connection refused: too many open");
                continue;
            };
            let slot = match self.handshakes.handshake(peer.ip()) {
                Ok(slot) => slot,
                Err(over) => {
                    warn!(peer = %peer, reason = %over, "enrolment connection refused before the TLS handshake");
                    continue;
                }
            };
            let acceptor = TlsAcceptor::from(self.tls.current());
            let timeout = self.handshakes.limits().handshake_timeout;
            let conns = conns.clone();
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(timeout, acceptor.accept(tcp)).await;
                drop(slot);
                match accepted {
                    Ok(Ok(stream)) => {
                        let conn = EnrolmentConn {
                            stream,
                            deadline: Box::pin(tokio::time::sleep(CONNECTION_LIFETIME)),
                            _permit: permit,
                        };
                        let _ = conns.send(conn).await;
                    }
                    Ok(Err(e)) => {
                        warn!(peer = %peer, reason = %refusal_reason(&e), "enrolment TLS handshake refused")
                    }
                    Err(_) => debug!(peer = %peer, "enrolment TLS handshake timed out"),
                }
            });
        }
    }
}
