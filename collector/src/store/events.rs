//! The `events` table: the group-commit writer that inserts (deduplicated) events, the running
//! event count, and the searches of `kestrel-collector events search`.

use kestrel_proto::Event;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, CachedStatement, Connection, OptionalExtension};

use super::admission::AdmissionTx;
use super::{sql, Store, StoreError};
use crate::event;

const INSERT_EVENT: &str = "INSERT OR IGNORE INTO events \
     (identity, epoch, seq, time_unix_ns, kind, pid, exe, exec_id, json, digest) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// The newest exec event of an execution (where an alert finds its ancestry), by `events_exec`.
pub(super) const EXEC_EVENT_JSON: &str = "SELECT json FROM events \
     WHERE identity = ?1 AND exec_id = ?2 AND kind = 'exec' ORDER BY time_unix_ns DESC LIMIT 1";

const STORED_DIGEST: &str =
    "SELECT digest FROM events WHERE identity = ?1 AND epoch = ?2 AND seq = ?3";

/// What [`GroupWriter::insert_event`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// It was new and is stored.
    New,
    /// The same content is already stored at its (identity, epoch, seq): a resend.
    Duplicate,
    /// Different content is stored at its (identity, epoch, seq); the stored event is kept.
    Conflict {
        /// Digest of the stored event.
        stored: u64,
    },
}

/// Writes inside one open transaction of [`Store::write_group`]: events (deduplicated) and,
/// through [`admission`](Self::admission), alerts. Nothing is durable until the group commits.
pub struct GroupWriter<'c> {
    pub(super) conn: &'c Connection,
    insert_event: CachedStatement<'c>,
    stored_digest: CachedStatement<'c>,
    /// Events this group added (the running count in `counters` is raised by it at commit).
    inserted: i64,
}

impl GroupWriter<'_> {
    /// Inserts `event` (stamped with its sequence number) unless (identity, epoch, seq) is
    /// already stored; `json` is the event serialized ([`event_json`]). True when it was new.
    /// See [`insert_checked`](Self::insert_checked) for what a stored one is compared by.
    pub fn insert_event(
        &mut self,
        identity: &str,
        epoch: u64,
        event: &Event,
        json: &str,
    ) -> Result<bool, StoreError> {
        let digest = event_digest(&mut event.clone());
        Ok(self.insert_checked(identity, epoch, event, json, digest)? == Inserted::New)
    }

    /// Inserts `event` (stamped with its sequence number) unless (identity, epoch, seq) is
    /// already stored; `json` is the event serialized ([`event_json`]), `digest` its content
    /// as received ([`event_digest`]). An event already stored is compared by digest: the
    /// same content is a duplicate, other content a conflict (a stored event from before
    /// digests were kept counts as the same).
    pub fn insert_checked(
        &mut self,
        identity: &str,
        epoch: u64,
        event: &Event,
        json: &str,
        digest: u64,
    ) -> Result<Inserted, StoreError> {
        let process = event.process.as_ref();
        let inserted = self.insert_event.execute(params![
            identity,
            sql(epoch),
            sql(event.seq),
            sql(event.time_unix_ns),
            event::kind(event),
            process.map_or(0, |p| p.pid),
            process.map_or("", |p| p.exe.as_str()),
            process.map_or("", |p| p.exec_id.as_str()),
            json,
            sql(digest),
        ])?;
        if inserted > 0 {
            self.inserted += 1;
            return Ok(Inserted::New);
        }
        let stored: Option<i64> = self
            .stored_digest
            .query_row(params![identity, sql(epoch), sql(event.seq)], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(match stored {
            Some(stored) if stored as u64 != digest => Inserted::Conflict {
                stored: stored as u64,
            },
            _ => Inserted::Duplicate,
        })
    }

    /// The alert tables inside this group's transaction, for admitting the alerts of the events
    /// it inserted.
    pub fn admission(&self) -> AdmissionTx<'_> {
        AdmissionTx::new(self.conn)
    }
}

/// Clears the fields the collector sets (`host`, `seq`; the caller stamps them next) and
/// returns the digest of the rest, the event's content as the agent sent it: the first 64 bits
/// of the SHA-256 of its protobuf encoding.
pub fn event_digest(event: &mut Event) -> u64 {
    use prost::Message as _;
    use sha2::{Digest as _, Sha256};
    event.host.clear();
    event.seq = 0;
    let hash = Sha256::digest(event.encode_to_vec());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

/// An event as the `json` column stores it.
pub fn event_json(event: &Event) -> Result<String, StoreError> {
    Ok(serde_json::to_string(event)?)
}

/// Appends `event` as the `json` column stores it ([`event_json`]) to `buf`, so a whole batch
/// can share one buffer instead of an allocation (grown several times) per event.
pub fn append_event_json(buf: &mut Vec<u8>, event: &Event) -> Result<(), StoreError> {
    Ok(serde_json::to_writer(buf, event)?)
}

/// Which stored events a search takes; every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Glob over the agent identity.
    pub host: Option<String>,
    /// Glob over the executable path.
    pub image: Option<String>,
    /// Glob over the command line (argv joined by spaces).
    pub command_line: Option<String>,
    /// Event kind.
    pub kind: Option<String>,
    /// Only events at or after this time (Unix ns).
    pub since_unix_ns: Option<u64>,
    /// Only events before this time (Unix ns).
    pub until_unix_ns: Option<u64>,
}

impl EventFilter {
    /// The SQL condition (empty, or ` WHERE …`) and its parameters.
    fn condition(&self) -> (String, Vec<SqlValue>) {
        let mut clauses: Vec<String> = Vec::new();
        let mut params = Vec::new();
        let text_filters = [
            ("identity GLOB ?", &self.host),
            ("exe GLOB ?", &self.image),
            ("kind = ?", &self.kind),
            (
                "(SELECT group_concat(value, ' ') FROM json_each(events.json, '$.process.argv')) GLOB ?",
                &self.command_line,
            ),
        ];
        for (clause, value) in text_filters {
            if let Some(value) = value {
                clauses.push(clause.to_owned());
                params.push(SqlValue::Text(value.clone()));
            }
        }
        if let Some(since) = self.since_unix_ns {
            clauses.push("time_unix_ns >= ?".into());
            params.push(SqlValue::Integer(sql(since)));
        }
        if let Some(until) = self.until_unix_ns {
            clauses.push("time_unix_ns < ?".into());
            params.push(SqlValue::Integer(sql(until)));
        }
        let condition = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        (condition, params)
    }
}

impl Store {
    /// Runs `f` in one transaction and commits it (one WAL fsync, however many batches `f`
    /// writes). When `f` fails nothing it wrote is kept. Holds the single writer throughout.
    pub fn write_group<T>(
        &self,
        f: impl FnOnce(&mut GroupWriter<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let (result, inserted) = {
            let mut writer = GroupWriter {
                conn: &tx,
                insert_event: tx.prepare_cached(INSERT_EVENT)?,
                stored_digest: tx.prepare_cached(STORED_DIGEST)?,
                inserted: 0,
            };
            (f(&mut writer)?, writer.inserted)
        };
        add_to_event_count(&tx, inserted)?;
        tx.commit()?;
        Ok(result)
    }

    /// How many events the store holds: a running count kept with every insert and deletion,
    /// so reading it costs nothing however large the store is (`COUNT(*)` scans an index).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        Ok(read_event_count(&self.lock())?)
    }

    /// How many stored events `filter` takes.
    pub fn count_matching_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let (condition, params) = filter.condition();
        let count: i64 = self.lock().query_row(
            &format!("SELECT COUNT(*) FROM events{condition}"),
            params_from_iter(params),
            |r| r.get(0),
        )?;
        Ok(count as u64)
    }

    /// Calls `f` with the epoch and stored JSON of each event `filter` takes, by time (then
    /// identity, epoch, seq), at most `limit` of them (0: all).
    pub fn for_each_matching_event(
        &self,
        filter: &EventFilter,
        limit: usize,
        mut f: impl FnMut(u64, &str),
    ) -> Result<(), StoreError> {
        let (condition, params) = filter.condition();
        let limit = if limit == 0 {
            String::new()
        } else {
            format!(" LIMIT {limit}")
        };
        let conn = self.lock();
        let mut statement = conn.prepare(&format!(
            "SELECT epoch, json FROM events{condition} \
             ORDER BY time_unix_ns, identity, epoch, seq{limit}"
        ))?;
        let rows = statement.query_map(params_from_iter(params), |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (epoch, json) = row?;
            f(epoch, &json);
        }
        Ok(())
    }
}

/// Adds `delta` to the running event count, inside the transaction that changed the events.
pub(super) fn add_to_event_count(conn: &Connection, delta: i64) -> rusqlite::Result<()> {
    if delta != 0 {
        conn.execute(
            "UPDATE counters SET value = value + ?1 WHERE name = 'events'",
            [delta],
        )?;
    }
    Ok(())
}

/// The running event count (see [`Store::event_count`]).
pub(super) fn read_event_count(conn: &Connection) -> rusqlite::Result<u64> {
    let value: i64 = conn.query_row(
        "SELECT value FROM counters WHERE name = 'events'",
        [],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(value).unwrap_or(0))
}

impl AdmissionTx<'_> {
    /// The stored JSON of the latest exec event of process execution `exec_id` on agent
    /// `identity` (where an alert of that execution finds its ancestry).
    pub fn exec_event_json(
        &self,
        identity: &str,
        exec_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(EXEC_EVENT_JSON, params![identity, exec_id], |r| r.get(0))
            .optional()?)
    }
}
