//! The readiness probe's write: proof that the store still takes a committed transaction (disk
//! not full, file system not read-only, database not locked by another writer for long).

use super::{Store, StoreError};

impl Store {
    /// Commits one small write (the `health_probe` row of `counters`, the time now) and
    /// returns; an error says why the store cannot be written.
    pub fn probe_write(&self, now_unix_ns: u64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO counters (name, value) VALUES ('health_probe', ?1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [now_unix_ns as i64],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Access, Store};

    #[test]
    fn the_probe_writes_a_writable_store_and_fails_a_read_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.probe_write(1).unwrap();
        store.probe_write(2).unwrap();
        let read_only = Store::open_existing(dir.path(), Access::ReadOnly).unwrap();
        let refused = read_only.probe_write(3).unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
    }
}
