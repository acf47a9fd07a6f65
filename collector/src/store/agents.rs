//! The `agents` table: each agent's Hello, last heartbeat and silence.

use kestrel_proto::{Heartbeat, Hello};
use rusqlite::{params, OptionalExtension};

use super::{sql, AdmissionTx, Store, StoreError};

/// An agent as silence detection sees it in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLiveness {
    /// The agent's identity.
    pub identity: String,
    /// When it was last heard from (Hello or heartbeat), Unix ns.
    pub last_seen_unix_ns: u64,
    /// Since when (Unix ns) it has been silent, if `agent silent` was raised and it has not
    /// been heard from since.
    pub silent_since_unix_ns: Option<u64>,
}

/// An agent as `kestrel-collector agents list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// The agent's identity.
    pub identity: String,
    /// Host name from its Hello.
    pub hostname: String,
    /// Agent version from its Hello.
    pub agent_version: String,
    /// Kernel release from its Hello.
    pub kernel_release: String,
    /// Spool epoch from its Hello.
    pub epoch: u64,
    /// When its stream opened, Unix ns.
    pub connected_unix_ns: u64,
    /// When it was last heard from, Unix ns.
    pub last_seen_unix_ns: u64,
    /// Since when it has been silent, if it is.
    pub silent_since_unix_ns: Option<u64>,
    /// Its last heartbeat, as the JSON it is stored as.
    pub last_heartbeat: Option<String>,
}

impl Store {
    /// Records that `identity` opened a stream with this Hello (and the agent's pid it names:
    /// a signal or ptrace aimed at it is tampering).
    pub fn write_hello(
        &self,
        identity: &str,
        now_unix_ns: u64,
        hello: &Hello,
    ) -> Result<(), StoreError> {
        let kernel = hello
            .capabilities
            .as_ref()
            .map_or("", |c| c.kernel_release.as_str());
        self.lock().execute(
            "INSERT INTO agents (identity, agent_version, hostname, kernel_release, epoch, \
             connected_unix_ns, last_seen_unix_ns, agent_pid) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) \
             ON CONFLICT (identity) DO UPDATE SET agent_version = excluded.agent_version, \
             hostname = excluded.hostname, kernel_release = excluded.kernel_release, \
             epoch = excluded.epoch, connected_unix_ns = excluded.connected_unix_ns, \
             last_seen_unix_ns = excluded.last_seen_unix_ns, agent_pid = excluded.agent_pid",
            params![
                identity,
                hello.agent_version,
                hello.hostname,
                kernel,
                sql(hello.spool_epoch),
                sql(now_unix_ns),
                hello.agent_pid,
            ],
        )?;
        Ok(())
    }

    /// Records a heartbeat from `identity` (last seen time and the statistics as JSON).
    pub fn write_heartbeat(
        &self,
        identity: &str,
        now_unix_ns: u64,
        heartbeat: &Heartbeat,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE agents SET last_seen_unix_ns = ?2, last_heartbeat = ?3 WHERE identity = ?1",
            params![
                identity,
                sql(now_unix_ns),
                serde_json::to_string(heartbeat)?
            ],
        )?;
        Ok(())
    }

    /// Every agent the store has seen, with what silence detection needs to carry on across a
    /// collector restart.
    pub fn agent_liveness(&self) -> Result<Vec<AgentLiveness>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT identity, last_seen_unix_ns, silent_since_unix_ns FROM agents ORDER BY identity",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(AgentLiveness {
                identity: row.get(0)?,
                last_seen_unix_ns: row.get::<_, i64>(1)? as u64,
                silent_since_unix_ns: row.get::<_, Option<i64>>(2)?.map(|t| t as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that `identity` has been silent since `since` (Unix ns), or (`None`) that it
    /// is not silent.
    pub fn set_agent_silent(&self, identity: &str, since: Option<u64>) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE agents SET silent_since_unix_ns = ?2 WHERE identity = ?1",
            params![identity, since.map(sql)],
        )?;
        Ok(())
    }

    /// Every agent that ever connected, silent ones first, then by identity.
    pub fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT identity, hostname, agent_version, kernel_release, epoch, connected_unix_ns, \
             last_seen_unix_ns, silent_since_unix_ns, last_heartbeat FROM agents \
             ORDER BY silent_since_unix_ns IS NULL, identity",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(AgentRow {
                identity: r.get(0)?,
                hostname: r.get(1)?,
                agent_version: r.get(2)?,
                kernel_release: r.get(3)?,
                epoch: r.get::<_, i64>(4)? as u64,
                connected_unix_ns: r.get::<_, i64>(5)? as u64,
                last_seen_unix_ns: r.get::<_, i64>(6)? as u64,
                silent_since_unix_ns: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                last_heartbeat: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl AdmissionTx<'_> {
    /// The pid the agent of `identity` announced in its last Hello (`None`: unknown or 0).
    pub fn agent_pid(&self, identity: &str) -> Result<Option<u32>, StoreError> {
        let pid: Option<i64> = self
            .conn
            .prepare_cached("SELECT agent_pid FROM agents WHERE identity = ?1")?
            .query_row([identity], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(pid.and_then(|p| u32::try_from(p).ok()).filter(|&p| p != 0))
    }
}
