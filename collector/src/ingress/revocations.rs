//! Revocations kept in the store (`kestrel-collector agents revoke --identity ID | --serial
//! HEX`), held in memory for the handshake and the stream checks and refreshed from the store,
//! so a revocation made by the command line reaches a running collector within its reload
//! interval: new handshakes and streams are refused, a live stream is ended.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::store::{Revoked, Store, StoreError};

/// Identities and certificate serials that are revoked.
#[derive(Default)]
pub struct Revocations {
    store: Option<Store>,
    current: RwLock<(HashSet<String>, HashSet<String>)>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.read();
        f.debug_struct("Revocations")
            .field("identities", &current.0.len())
            .field("serials", &current.1.len())
            .finish()
    }
}

impl Revocations {
    /// Revokes nothing and reads no store.
    pub fn empty() -> Revocations {
        Revocations::default()
    }

    /// Reads the revocations of `store`.
    pub fn load(store: &Store) -> Result<Revocations, StoreError> {
        let revocations = Revocations {
            store: Some(store.clone()),
            current: RwLock::default(),
        };
        revocations.apply(store.revoked()?);
        Ok(revocations)
    }

    /// True when `identity` is revoked.
    pub fn identity_revoked(&self, identity: &str) -> bool {
        self.read().0.contains(identity)
    }

    /// True when the certificate serial `serial` (normalized hex) is revoked.
    pub fn serial_revoked(&self, serial: &str) -> bool {
        self.read().1.contains(serial)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (HashSet<String>, HashSet<String>)> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the sets with `revoked`; returns what was not revoked before.
    fn apply(&self, revoked: Revoked) -> Revoked {
        let identities: HashSet<String> = revoked.identities.into_iter().collect();
        let serials: HashSet<String> = revoked.serials.into_iter().collect();
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let added = Revoked {
            identities: identities.difference(&current.0).cloned().collect(),
            serials: serials.difference(&current.1).cloned().collect(),
        };
        *current = (identities, serials);
        added
    }

    /// Re-reads the store every `interval` until `stop`; calls `revoke` with what became
    /// revoked (to end live streams).
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
        revoke: impl Fn(&Revoked) + Send + 'static,
    ) {
        let Some(store) = self.store.clone() else {
            return;
        };
        crate::watch::every(interval, stop, || async {
            match store.run(|store| store.revoked()).await {
                Ok(revoked) => {
                    let added = self.apply(revoked);
                    if !added.identities.is_empty() || !added.serials.is_empty() {
                        warn!(
                            identities = ?added.identities,
                            serials = ?added.serials,
                            "revoked: live streams are closed and new connections refused"
                        );
                        revoke(&added);
                    }
                }
                Err(e) => {
                    error!(error = %e, "cannot read the revocations: keeping the previous ones")
                }
            }
        })
        .await
    }
}
