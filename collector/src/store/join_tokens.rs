//! The `join_tokens` table: one-time tokens that let a VM enrol as one node. Only a SHA-256
//! hash of each token is stored; a token is consumed in the same statement that checks it, so
//! two agents racing with one token cannot both enrol.

use rusqlite::{params, Connection, OptionalExtension};

use super::{sql, Store, StoreError};

/// Creates the table when it is missing.
pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS join_tokens (
            hash             TEXT    PRIMARY KEY,
            node             TEXT    NOT NULL,
            created_unix_ns  INTEGER NOT NULL,
            expires_unix_ns  INTEGER NOT NULL,
            used_unix_ns     INTEGER,
            used_by          TEXT
        ) WITHOUT ROWID",
    )
}

/// Why a join token does not admit an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token with this hash was ever created.
    Unknown,
    /// The token expired at this time (Unix ns) without being used.
    Expired {
        /// When it expired.
        expires_unix_ns: u64,
    },
    /// The token was used already, at this time (Unix ns), from this peer.
    AlreadyUsed {
        /// When it was used.
        used_unix_ns: u64,
        /// The peer address that used it.
        used_by: String,
    },
}

impl Store {
    /// Stores a new join token (by its hash) for `node`, valid until `expires_unix_ns`.
    pub fn create_join_token(
        &self,
        hash: &str,
        node: &str,
        now_unix_ns: u64,
        expires_unix_ns: u64,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO join_tokens (hash, node, created_unix_ns, expires_unix_ns) \
             VALUES (?1, ?2, ?3, ?4)",
            params![hash, node, sql(now_unix_ns), sql(expires_unix_ns)],
        )?;
        Ok(())
    }

    /// Consumes the token with `hash` for `peer` at `now_unix_ns`: the node it was made for, or
    /// why it admits nobody. Checking and marking it used are one transaction.
    pub fn consume_join_token(
        &self,
        hash: &str,
        now_unix_ns: u64,
        peer: &str,
    ) -> Result<Result<String, TokenRefusal>, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: take the write lock before reading, so a command-line tool writing the
        // same store waits (busy timeout) instead of failing the upgrade from a read.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row = tx
            .query_row(
                "SELECT node, expires_unix_ns, used_unix_ns, used_by FROM join_tokens \
                 WHERE hash = ?1",
                [hash],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?;
        let outcome = match row {
            None => Err(TokenRefusal::Unknown),
            Some((_, _, Some(used_unix_ns), used_by)) => Err(TokenRefusal::AlreadyUsed {
                used_unix_ns,
                used_by: used_by.unwrap_or_default(),
            }),
            Some((_, expires_unix_ns, None, _)) if expires_unix_ns <= now_unix_ns => {
                Err(TokenRefusal::Expired { expires_unix_ns })
            }
            Some((node, _, None, _)) => {
                tx.execute(
                    "UPDATE join_tokens SET used_unix_ns = ?2, used_by = ?3 \
                     WHERE hash = ?1 AND used_unix_ns IS NULL",
                    params![hash, sql(now_unix_ns), peer],
                )?;
                Ok(node)
            }
        };
        tx.commit()?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_admits_once_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_join_token("h1", "vm-1", 10, 100).unwrap();
        store.create_join_token("h2", "vm-2", 10, 100).unwrap();
        assert_eq!(
            store.consume_join_token("h1", 50, "1.2.3.4:5").unwrap(),
            Ok("vm-1".to_owned())
        );
        assert_eq!(
            store.consume_join_token("h1", 60, "6.7.8.9:1").unwrap(),
            Err(TokenRefusal::AlreadyUsed {
                used_unix_ns: 50,
                used_by: "1.2.3.4:5".into()
            })
        );
        assert_eq!(
            store.consume_join_token("h2", 100, "p").unwrap(),
            Err(TokenRefusal::Expired {
                expires_unix_ns: 100
            })
        );
        assert_eq!(
            store.consume_join_token("nope", 1, "p").unwrap(),
            Err(TokenRefusal::Unknown)
        );
    }
}
