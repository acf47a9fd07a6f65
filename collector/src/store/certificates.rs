//! The `issued_certificates` and `revocations` tables: every certificate the collector's
//! enrolment signed (serial, identity, validity, how the node proved itself, which certificate
//! it renewed), and what an operator revoked — an identity, or a certificate serial together
//! with every certificate renewed from it.

use rusqlite::{params, Connection};

use super::{sql, Store, StoreError};

/// Creates the tables when they are missing.
pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS issued_certificates (
            serial           TEXT    PRIMARY KEY,
            identity         TEXT    NOT NULL,
            not_before_unix  INTEGER NOT NULL,
            not_after_unix   INTEGER NOT NULL,
            proof            TEXT    NOT NULL,
            renewed_from     TEXT,
            issued_unix_ns   INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS issued_certificates_renewed_from
            ON issued_certificates (renewed_from);
        CREATE TABLE IF NOT EXISTS revocations (
            kind             TEXT    NOT NULL,
            value            TEXT    NOT NULL,
            reason           TEXT    NOT NULL,
            revoked_unix_ns  INTEGER NOT NULL,
            PRIMARY KEY (kind, value)
        ) WITHOUT ROWID;",
    )
}

/// A certificate the enrolment issued, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
    /// The identity it names.
    pub identity: String,
    /// Validity start, Unix seconds.
    pub not_before_unix: i64,
    /// Validity end, Unix seconds.
    pub not_after_unix: i64,
    /// How the node proved itself: `join_token`, `kubernetes` or `renewal`.
    pub proof: String,
    /// The serial of the certificate this one renewed.
    pub renewed_from: Option<String>,
}

/// What is revoked: identities and certificate serials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Revoked identities.
    pub identities: Vec<String>,
    /// Revoked serials (lower-case hex without leading zeros).
    pub serials: Vec<String>,
}

/// Kind of a revocation row naming an identity.
const IDENTITY: &str = "identity";
/// Kind of a revocation row naming a certificate serial.
const SERIAL: &str = "serial";

impl Store {
    /// Records a certificate the enrolment issued.
    pub fn record_issued(
        &self,
        cert: &IssuedCertificate,
        now_unix_ns: u64,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO issued_certificates (serial, identity, not_before_unix, not_after_unix, \
             proof, renewed_from, issued_unix_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                cert.serial,
                cert.identity,
                cert.not_before_unix,
                cert.not_after_unix,
                cert.proof,
                cert.renewed_from,
                sql(now_unix_ns)
            ],
        )?;
        Ok(())
    }

    /// The certificates issued for `identity` (every one when `None`), newest first.
    pub fn issued_certificates(
        &self,
        identity: Option<&str>,
    ) -> Result<Vec<IssuedCertificate>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT serial, identity, not_before_unix, not_after_unix, proof, renewed_from \
             FROM issued_certificates WHERE ?1 IS NULL OR identity = ?1 \
             ORDER BY issued_unix_ns DESC",
        )?;
        let rows = stmt.query_map([identity], |r| {
            Ok(IssuedCertificate {
                serial: r.get(0)?,
                identity: r.get(1)?,
                not_before_unix: r.get(2)?,
                not_after_unix: r.get(3)?,
                proof: r.get(4)?,
                renewed_from: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes `identity`; false when it already was.
    pub fn revoke_identity(
        &self,
        identity: &str,
        reason: &str,
        now_unix_ns: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.lock().execute(
            "INSERT OR IGNORE INTO revocations (kind, value, reason, revoked_unix_ns) \
             VALUES (?1, ?2, ?3, ?4)",
            params![IDENTITY, identity, reason, sql(now_unix_ns)],
        )? > 0)
    }

    /// Revokes the certificate `serial` and every certificate renewed from it, directly or
    /// not (a stolen key renewed before the revocation is revoked with it). Returns the serials
    /// newly revoked.
    pub fn revoke_serial(
        &self,
        serial: &str,
        reason: &str,
        now_unix_ns: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: take the write lock before reading, so a command-line tool writing the
        // same store waits (busy timeout) instead of failing the upgrade from a read.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let lineage: Vec<String> = {
            let mut stmt = tx.prepare(
                "WITH RECURSIVE lineage(serial) AS (SELECT ?1 \
                 UNION SELECT c.serial FROM issued_certificates c \
                 JOIN lineage l ON c.renewed_from = l.serial) SELECT serial FROM lineage",
            )?;
            let rows = stmt.query_map([serial], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut revoked = Vec::new();
        for serial in lineage {
            let added = tx.execute(
                "INSERT OR IGNORE INTO revocations (kind, value, reason, revoked_unix_ns) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![SERIAL, serial, reason, sql(now_unix_ns)],
            )?;
            if added > 0 {
                revoked.push(serial);
            }
        }
        tx.commit()?;
        Ok(revoked)
    }

    /// Everything revoked.
    pub fn revoked(&self) -> Result<Revoked, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT kind, value FROM revocations")?;
        let mut revoked = Revoked::default();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (kind, value) = row?;
            match kind.as_str() {
                IDENTITY => revoked.identities.push(value),
                _ => revoked.serials.push(value),
            }
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(serial: &str, renewed_from: Option<&str>) -> IssuedCertificate {
        IssuedCertificate {
            serial: serial.into(),
            identity: "spiffe://kestrel.local/node/a".into(),
            not_before_unix: 1,
            not_after_unix: 2,
            proof: "renewal".into(),
            renewed_from: renewed_from.map(Into::into),
        }
    }

    #[test]
    fn revoking_a_serial_revokes_the_certificates_renewed_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.record_issued(&issued("aa", None), 1).unwrap();
        store.record_issued(&issued("bb", Some("aa")), 2).unwrap();
        store.record_issued(&issued("cc", Some("bb")), 3).unwrap();
        store.record_issued(&issued("dd", None), 4).unwrap();
        let mut revoked = store.revoke_serial("bb", "stolen", 5).unwrap();
        revoked.sort();
        assert_eq!(revoked, ["bb", "cc"]);
        assert!(store.revoke_serial("bb", "again", 6).unwrap().is_empty());
        assert!(store
            .revoke_identity("spiffe://x/node/y", "gone", 7)
            .unwrap());
        let all = store.revoked().unwrap();
        assert_eq!(all.identities, ["spiffe://x/node/y"]);
        let mut serials = all.serials;
        serials.sort();
        assert_eq!(serials, ["bb", "cc"]);
    }
}
