//! `kestrel-collector agents list`: the fleet as the collector's store knows it — each agent's
//! identity, host, version, when it was last heard from, whether it is silent, and its last
//! heartbeat (spool backlog, events shed, kernel drops) — so an operator sees at a glance which
//! sensors are down or losing data. The identity commands (join tokens, revocation, issued
//! certificates) are in [`crate::cli::identities`].

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::alert::rfc3339;
use crate::cli::events::{open, EventsCliError};
use crate::cli::identities::{
    self, certificates, token_create, CertificatesArgs, IdentitiesCliError, RevokeArgs,
    TokenCreateArgs,
};
use crate::cli::terminal_safe;
use crate::store::AgentRow;
use crate::text::escape;

/// `kestrel-collector agents`.
#[derive(Debug, Clone, Args)]
pub struct AgentsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AgentsCommand,
}

/// `agents` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AgentsCommand {
    /// Every agent that ever connected, silent ones first, then by identity.
    List(ListArgs),
    /// One-time join tokens for enrolment.
    Token(TokenArgs),
    /// Revoke an identity or a certificate serial: refused at the handshake, at the stream's
    /// start and at enrolment; a live stream is closed.
    Revoke(RevokeArgs),
    /// The certificates enrolment issued, newest first.
    Certificates(CertificatesArgs),
}

/// `agents token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `agents token` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Make a one-time join token for one node and print it (only its hash is stored).
    Create(TokenCreateArgs),
}

/// Options of `agents list`.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Data directory of the collector (holds `kestrel.db`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// One JSON object per line, with the whole last heartbeat.
    #[arg(long)]
    pub json: bool,
}

/// Runs an `agents` command, printing to stdout.
pub fn run(args: AgentsArgs) -> Result<(), IdentitiesCliError> {
    let (out, json) = match &args.command {
        AgentsCommand::List(list) => (self::list(list)?, list.json),
        AgentsCommand::Token(TokenArgs {
            command: TokenCommand::Create(create),
        }) => (format!("{}\n", token_create(create)?), false),
        AgentsCommand::Revoke(revoke) => (identities::revoke(revoke)?, false),
        AgentsCommand::Certificates(certs) => (certificates(certs)?, certs.json),
    };
    print!("{}", terminal_safe(&out, json));
    Ok(())
}

/// The agents of the store in `args.data`, as text or JSON lines.
pub fn list(args: &ListArgs) -> Result<String, EventsCliError> {
    let rows = open(&args.data)?.agents()?.into_iter().map(agent_json);
    let mut out = String::new();
    if !args.json {
        out.push_str(
            "IDENTITY  HOSTNAME  VERSION  LAST SEEN  STATE  SPOOL UNACKED  SHED  KERNEL DROPS\n",
        );
    }
    for agent in rows {
        if args.json {
            let _ = writeln!(out, "{agent}");
            continue;
        }
        let state = match agent["silent_since_unix_ns"].as_u64() {
            Some(since) => format!("SILENT since {}", rfc3339(since)),
            None => "reporting".to_owned(),
        };
        let beat = &agent["last_heartbeat"];
        let stat = |name: &str| {
            beat.get(name)
                .and_then(Value::as_u64)
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        };
        let _ = writeln!(
            out,
            "{}  {}  {}  {}  {state}  {}  {}  {}",
            escape(agent["identity"].as_str().unwrap_or("")),
            escape(agent["hostname"].as_str().unwrap_or("")),
            escape(agent["agent_version"].as_str().unwrap_or("")),
            rfc3339(agent["last_seen_unix_ns"].as_u64().unwrap_or(0)),
            stat("spool_unacked"),
            stat("events_shed"),
            stat("kernel_drops"),
        );
    }
    Ok(out)
}

/// An agent as `agents list --json` prints it.
fn agent_json(agent: AgentRow) -> Value {
    json!({
        "identity": agent.identity,
        "hostname": agent.hostname,
        "agent_version": agent.agent_version,
        "kernel_release": agent.kernel_release,
        "epoch": agent.epoch,
        "connected_unix_ns": agent.connected_unix_ns,
        "last_seen_unix_ns": agent.last_seen_unix_ns,
        "silent_since_unix_ns": agent.silent_since_unix_ns,
        "last_heartbeat": agent
            .last_heartbeat
            .and_then(|h| serde_json::from_str::<Value>(&h).ok())
            .unwrap_or(Value::Null),
    })
}
