//! How many connections are open, by whom, and whether each one still carries a stream.
//!
//! The accept loop takes a [`HandshakeSlot`] before a TLS handshake (bounded per source address
//! and in total, so a flood of silent or slow clients from one address cannot crowd out the
//! agents) and a [`ConnectionSlot`] once the client is authenticated (bounded per identity and
//! in total). Each authenticated connection has a [`ConnActivity`]: the ingest service holds a
//! [`StreamGuard`] for each of its streams, and the connection closes itself once it has had no
//! stream for its idle timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::ingress::identity::Identity;
use crate::ingress::limits::{self, IngressLimits, OverLimit};

/// Open handshakes and connections, with their limits; shared by the accept loop's tasks.
#[derive(Debug)]
pub struct Connections {
    limits: IngressLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    handshakes: usize,
    handshakes_by_address: HashMap<IpAddr, usize>,
    connections: usize,
    connections_by_identity: HashMap<Identity, usize>,
}

/// A TLS handshake in progress; frees its place when dropped.
#[derive(Debug)]
pub struct HandshakeSlot {
    connections: Arc<Connections>,
    address: IpAddr,
}

/// An authenticated connection; frees its place when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    connections: Arc<Connections>,
    /// Counted against this identity's limit; `None` when the connection is over it and only
    /// stays open to tell the peer so.
    identity: Option<Identity>,
}

impl Connections {
    /// Counts kept against `limits`.
    pub fn new(limits: IngressLimits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            counts: Mutex::default(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &IngressLimits {
        &self.limits
    }

    /// A place for a handshake from `address`, or the limit it is over.
    pub fn handshake(self: &Arc<Self>, address: IpAddr) -> Result<HandshakeSlot, OverLimit> {
        let mut counts = self.lock();
        if counts.handshakes >= self.limits.max_handshakes {
            return Err(OverLimit {
                limit: limits::HANDSHAKES,
                subject: "the collector".into(),
                value: counts.handshakes,
                unit: "TLS handshakes in progress",
                max: self.limits.max_handshakes,
            });
        }
        let from_address = counts.handshakes_by_address.entry(address).or_default();
        if *from_address >= self.limits.max_handshakes_per_address {
            return Err(OverLimit {
                limit: limits::HANDSHAKES_PER_ADDRESS,
                subject: format!("address {address}"),
                value: *from_address,
                unit: "TLS handshakes in progress",
                max: self.limits.max_handshakes_per_address,
            });
        }
        *from_address += 1;
        counts.handshakes += 1;
        Ok(HandshakeSlot {
            connections: self.clone(),
            address,
        })
    }

    /// A place for an authenticated connection of `identity`. `Err` with the slot still given
    /// when the identity is over its own limit (the connection is kept only to refuse its
    /// streams with a status saying so); `Err` without one when the collector is full.
    pub fn connection(
        self: &Arc<Self>,
        identity: &Identity,
    ) -> Result<ConnectionSlot, (OverLimit, Option<ConnectionSlot>)> {
        let mut counts = self.lock();
        if counts.connections >= self.limits.max_connections {
            return Err((
                OverLimit {
                    limit: limits::CONNECTIONS,
                    subject: "the collector".into(),
                    value: counts.connections,
                    unit: "connections",
                    max: self.limits.max_connections,
                },
                None,
            ));
        }
        counts.connections += 1;
        let of_identity = counts
            .connections_by_identity
            .entry(identity.clone())
            .or_default();
        if *of_identity >= self.limits.max_connections_per_agent {
            let over = OverLimit {
                limit: limits::CONNECTIONS_PER_AGENT,
                subject: format!("identity {identity}"),
                value: *of_identity,
                unit: "connections",
                max: self.limits.max_connections_per_agent,
            };
            let slot = ConnectionSlot {
                connections: self.clone(),
                identity: None,
            };
            return Err((over, Some(slot)));
        }
        *of_identity += 1;
        Ok(ConnectionSlot {
            connections: self.clone(),
            identity: Some(identity.clone()),
        })
    }

    /// Authenticated connections open now (all identities).
    pub fn open_connections(&self) -> usize {
        self.lock().connections
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = self.connections.lock();
        counts.handshakes -= 1;
        if let Some(n) = counts.handshakes_by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.handshakes_by_address.remove(&self.address);
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.connections.lock();
        counts.connections -= 1;
        if let Some(identity) = &self.identity {
            if let Some(n) = counts.connections_by_identity.get_mut(identity) {
                *n -= 1;
                if *n == 0 {
                    counts.connections_by_identity.remove(identity);
                }
            }
        }
    }
}

/// Whether a connection carries streams, and since when it has none.
#[derive(Debug)]
pub struct ConnActivity {
    streams: AtomicUsize,
    last_stream_end: Mutex<Instant>,
    /// How long the connection may stay without a stream.
    pub idle_timeout: Duration,
    /// Why every stream of this connection is refused, when it is over a limit.
    pub refusal: Option<OverLimit>,
}

/// One open stream of a connection; the connection counts as idle again once every guard is
/// dropped.
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnActivity>);

impl ConnActivity {
    /// A connection with no stream yet.
    pub fn new(idle_timeout: Duration, refusal: Option<OverLimit>) -> Arc<ConnActivity> {
        Arc::new(ConnActivity {
            streams: AtomicUsize::new(0),
            last_stream_end: Mutex::new(Instant::now()),
            idle_timeout,
            refusal,
        })
    }

    /// Registers a stream for as long as the guard lives.
    pub fn stream(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard(self.clone())
    }

    /// When the connection becomes idle for too long: `None` while it has a stream.
    pub fn idle_deadline(&self) -> Option<Instant> {
        if self.streams.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = *self
            .last_stream_end
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Some(last + self.idle_timeout)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        *self
            .0
            .last_stream_end
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> IngressLimits {
        IngressLimits {
            max_handshakes: 3,
            max_handshakes_per_address: 2,
            max_connections: 3,
            max_connections_per_agent: 2,
            ..IngressLimits::default()
        }
    }

    #[test]
    fn handshakes_are_bounded_per_address_and_in_total() {
        let c = Connections::new(limits());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let first = c.handshake(a).unwrap();
        let _second = c.handshake(a).unwrap();
        let err = c.handshake(a).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 127.0.0.2 has 2 TLS handshakes in progress; the limit is 2"
        );
        let _third = c.handshake(b).unwrap();
        assert_eq!(c.handshake(b).unwrap_err().limit, limits::HANDSHAKES);
        drop(first);
        assert!(c.handshake(a).is_ok());
    }

    #[test]
    fn connections_are_bounded_per_identity_and_in_total() {
        let c = Connections::new(limits());
        let id = Identity::new("spiffe://kestrel.local/node/a");
        let _one = c.connection(&id).unwrap();
        let two = c.connection(&id).unwrap();
        let Err((over, Some(kept))) = c.connection(&id) else {
            panic!("third connection of one identity must be over its limit");
        };
        assert_eq!(
            over.to_string(),
            "identity spiffe://kestrel.local/node/a has 2 connections; the limit is 2"
        );
        let Err((full, None)) = c.connection(&Identity::new("b")) else {
            panic!("the collector is full");
        };
        assert_eq!(full.limit, limits::CONNECTIONS);
        drop(kept);
        drop(two);
        let _three = c.connection(&id).unwrap();
        assert_eq!(c.open_connections(), 2);
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_without_streams() {
        let activity = ConnActivity::new(Duration::from_secs(5), None);
        assert!(activity.idle_deadline().is_some());
        let guard = activity.stream();
        assert_eq!(activity.idle_deadline(), None);
        drop(guard);
        let deadline = activity.idle_deadline().unwrap();
        assert!(deadline > Instant::now() + Duration::from_secs(4));
    }
}
