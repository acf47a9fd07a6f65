//! The `sequences` table: per (identity, epoch) the highest sequence number stored (the
//! high-water mark), kept in the transaction that stores the events, so a Hello that claims to
//! start below it is known to be a resend or a rewind.

use rusqlite::{params, Connection, OptionalExtension};

use super::{sql, GroupWriter, Store, StoreError};

impl GroupWriter<'_> {
    /// Raises the high-water mark of (`identity`, `epoch`) to `seq` (never lowers it).
    pub fn raise_high_water(
        &mut self,
        identity: &str,
        epoch: u64,
        seq: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO sequences (identity, epoch, high_water) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (identity, epoch) DO UPDATE \
                 SET high_water = max(high_water, excluded.high_water)",
            )?
            .execute(params![identity, sql(epoch), sql(seq)])?;
        Ok(())
    }
}

impl Store {
    /// The highest sequence number stored for (`identity`, `epoch`), if any.
    pub fn high_water(&self, identity: &str, epoch: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT high_water FROM sequences WHERE identity = ?1 AND epoch = ?2",
                params![identity, sql(epoch)],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|v| v as u64))
    }
}

/// Creates the table; a store from before it gets the marks of the events it holds.
pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sequences')",
        [],
        |r| r.get(0),
    )?;
    if exists {
        return Ok(());
    }
    conn.execute_batch(
        "CREATE TABLE sequences (
            identity   TEXT    NOT NULL,
            epoch      INTEGER NOT NULL,
            high_water INTEGER NOT NULL,
            PRIMARY KEY (identity, epoch)
        ) WITHOUT ROWID;
        INSERT INTO sequences (identity, epoch, high_water)
            SELECT identity, epoch, MAX(seq) FROM events GROUP BY identity, epoch;",
    )
}
