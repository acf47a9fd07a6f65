//! One live stream per agent identity.
//!
//! When an identity opens a stream while it already has one, the **newer stream wins**: the
//! older one is ended (after the batch it is storing, if any) with `ABORTED` and the reason
//! "superseded". An agent that restarted, or reconnected after a network failure its old TCP
//! connection has not noticed yet, is never locked out by its own stale stream; nothing is lost,
//! because the new stream resends everything not acknowledged and the store drops duplicates.
//! Two live agents sharing one certificate keep superseding each other, which the log shows.
//!
//! The registry also ends a stream on revocation (deny-list, or an identity or certificate
//! serial revoked in the store), with `PERMISSION_DENIED`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tonic::Status;

use crate::ingress::identity::Identity;

/// The live streams, by identity.
#[derive(Debug, Default)]
pub struct Sessions {
    next_id: AtomicU64,
    live: Mutex<HashMap<Identity, Live>>,
}

/// A live stream: its registration number, its certificate's serial, and how to end it.
#[derive(Debug)]
struct Live {
    id: u64,
    serial: String,
    end: oneshot::Sender<Status>,
}

/// A registered stream; dropping it unregisters the stream (if it is still the live one).
#[derive(Debug)]
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    identity: Identity,
    id: u64,
    /// Resolves with the status to end the stream with, when it is superseded or revoked.
    pub ended: oneshot::Receiver<Status>,
}

impl Sessions {
    /// Registers a new stream for `identity` (its certificate's serial `serial`), ending the
    /// previous one. Returns the guard and whether an older stream was superseded.
    pub fn open(self: &Arc<Self>, identity: &Identity, serial: &str) -> (SessionGuard, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let live = Live {
            id,
            serial: serial.to_owned(),
            end: tx,
        };
        let previous = self.lock().insert(identity.clone(), live);
        let superseded = previous.is_some_and(|old| {
            old.end
                .send(Status::aborted(
                    "superseded: a newer stream from the same identity took over",
                ))
                .is_ok()
        });
        let guard = SessionGuard {
            sessions: self.clone(),
            identity: identity.clone(),
            id,
            ended: rx,
        };
        self.count_connected();
        (guard, superseded)
    }

    /// Ends the live stream of `identity` with `status`; false when it has none.
    pub fn end(&self, identity: &Identity, status: Status) -> bool {
        self.lock()
            .remove(identity)
            .is_some_and(|live| live.end.send(status).is_ok())
    }

    /// Ends every live stream whose certificate has serial `serial` with `status`; how many.
    pub fn end_serial(&self, serial: &str, status: &Status) -> usize {
        let mut live = self.lock();
        let identities: Vec<Identity> = live
            .iter()
            .filter(|(_, l)| l.serial == serial)
            .map(|(identity, _)| identity.clone())
            .collect();
        identities
            .iter()
            .filter_map(|identity| live.remove(identity))
            .map(|l| l.end.send(status.clone()))
            .filter(Result::is_ok)
            .count()
    }

    /// Number of live streams.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no stream is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shows the number of live streams on `kestrel_collector_agents_connected`.
    fn count_connected(&self) {
        let live = self.len();
        crate::metrics::figures::figures()
            .agents_connected
            .set(live as i64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut live = self.sessions.lock();
        if live
            .get(&self.identity)
            .is_some_and(|live| live.id == self.id)
        {
            live.remove(&self.identity);
        }
        drop(live);
        self.sessions.count_connected();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_stream_supersedes_the_first() {
        let sessions = Arc::new(Sessions::default());
        let id = Identity::new("spiffe://kestrel.local/node/a");
        let (mut first, superseded) = sessions.open(&id, "01");
        assert!(!superseded);
        let (second, superseded) = sessions.open(&id, "01");
        assert!(superseded);
        let status = first.ended.try_recv().unwrap();
        assert_eq!(status.code(), tonic::Code::Aborted);
        assert!(status.message().contains("superseded"));
        // The old guard going away does not unregister the new stream.
        drop(first);
        assert_eq!(sessions.len(), 1);
        drop(second);
        assert!(sessions.is_empty());
    }

    #[test]
    fn ending_an_identity_reaches_its_stream() {
        let sessions = Arc::new(Sessions::default());
        let id = Identity::new("a");
        let (mut guard, _) = sessions.open(&id, "01");
        assert!(sessions.end(&id, Status::permission_denied("revoked")));
        assert_eq!(
            guard.ended.try_recv().unwrap().code(),
            tonic::Code::PermissionDenied
        );
        assert!(!sessions.end(&Identity::new("b"), Status::permission_denied("revoked")));
    }

    #[test]
    fn ending_a_serial_reaches_only_the_streams_of_that_certificate() {
        let sessions = Arc::new(Sessions::default());
        let (mut a, _) = sessions.open(&Identity::new("a"), "aa");
        let (mut b, _) = sessions.open(&Identity::new("b"), "bb");
        let revoked = Status::permission_denied("certificate revoked");
        assert_eq!(sessions.end_serial("aa", &revoked), 1);
        assert_eq!(
            a.ended.try_recv().unwrap().code(),
            tonic::Code::PermissionDenied
        );
        assert!(b.ended.try_recv().is_err());
        assert_eq!(sessions.end_serial("aa", &revoked), 0);
    }
}
