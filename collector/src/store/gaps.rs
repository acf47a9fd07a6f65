//! The `gaps` table: events agents reported lost.

use kestrel_proto::Gap;
use rusqlite::params;

use super::{sql, Store, StoreError};

/// A stored gap, as `kestrel-collector events gaps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapRow {
    /// The agent that reported it.
    pub identity: String,
    /// The agent's spool epoch.
    pub epoch: u64,
    /// Why the events were lost.
    pub reason: String,
    /// Event kind lost, when known.
    pub kind: String,
    /// CPU of the kernel ring buffer, for kernel drops.
    pub cpu: i64,
    /// How many events.
    pub count: u64,
    /// First sequence number lost (0: not sequenced).
    pub first_seq: u64,
    /// Last sequence number lost.
    pub last_seq: u64,
    /// Time of the first lost event, Unix ns.
    pub first_time_unix_ns: u64,
    /// Time of the last lost event, Unix ns.
    pub last_time_unix_ns: u64,
}

impl Store {
    /// Records a gap (events the agent lost) reported by `identity`. A sequenced gap
    /// (`first_seq` > 0) is stored once per (identity, epoch, first_seq): a resend is ignored.
    /// Returns false for such a resend.
    pub fn write_gap(
        &self,
        identity: &str,
        epoch: u64,
        received_unix_ns: u64,
        gap: &Gap,
    ) -> Result<bool, StoreError> {
        let inserted = self.lock().execute(
            "INSERT OR IGNORE INTO gaps (identity, epoch, received_unix_ns, kind, cpu, count, \
             first_time_unix_ns, last_time_unix_ns, reason, first_seq, last_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                identity,
                sql(epoch),
                sql(received_unix_ns),
                gap.kind,
                gap.cpu,
                sql(gap.count),
                sql(gap.first_time_unix_ns),
                sql(gap.last_time_unix_ns),
                gap.reason,
                sql(gap.first_seq),
                sql(gap.last_seq),
            ],
        )?;
        Ok(inserted > 0)
    }

    /// The gaps of agents whose identity matches `identity_glob`, in the order they were
    /// received.
    pub fn gaps(&self, identity_glob: &str) -> Result<Vec<GapRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT identity, epoch, reason, kind, cpu, count, first_seq, last_seq, \
             first_time_unix_ns, last_time_unix_ns FROM gaps WHERE identity GLOB ?1 \
             ORDER BY received_unix_ns, id",
        )?;
        let rows = statement.query_map([identity_glob], |r| {
            Ok(GapRow {
                identity: r.get(0)?,
                epoch: r.get::<_, i64>(1)? as u64,
                reason: r.get(2)?,
                kind: r.get(3)?,
                cpu: r.get(4)?,
                count: r.get::<_, i64>(5)? as u64,
                first_seq: r.get::<_, i64>(6)? as u64,
                last_seq: r.get::<_, i64>(7)? as u64,
                first_time_unix_ns: r.get::<_, i64>(8)? as u64,
                last_time_unix_ns: r.get::<_, i64>(9)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
