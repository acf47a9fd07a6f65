//! The handle admission works through: the alert tables (alerts, suppressions, rate limits,
//! outbox) inside one open transaction, read and written with typed calls. The decisions
//! (suppress, fold, limit, route) are the caller's: see `alerting::admit`.

use rusqlite::Connection;

use super::{Store, StoreError};

/// The alert tables inside an open transaction: nothing written through it is durable until
/// that transaction commits, and a failed transaction keeps none of it. Obtained from
/// [`GroupWriter::admission`](super::GroupWriter::admission) (ingest) or
/// [`Store::in_admission_transaction`] (an alert on its own).
pub struct AdmissionTx<'c> {
    pub(super) conn: &'c Connection,
}

impl<'c> AdmissionTx<'c> {
    pub(super) fn new(conn: &'c Connection) -> AdmissionTx<'c> {
        AdmissionTx { conn }
    }
}

impl Store {
    /// Runs `f` on the alert tables in one transaction of its own and commits it when `f`
    /// succeeds (nothing is kept when it fails). Holds the single writer throughout.
    pub fn in_admission_transaction<T>(
        &self,
        f: impl FnOnce(&AdmissionTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let result = f(&AdmissionTx::new(&tx))?;
        tx.commit()?;
        Ok(result)
    }
}
