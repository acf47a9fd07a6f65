//! Command-line interface of `kestrel-collector`: the arguments of every subcommand, and the
//! commands that read and manage a data directory (one module each).

pub mod agents;
pub mod alerts;
pub mod events;
pub mod identities;
pub mod rules;

use std::borrow::Cow;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// What a command prints, made safe for a terminal: JSON lines keep their exact values
/// ([`crate::text::json_safe`]), text has every control character and bidi override of the
/// fields it quotes written visibly ([`crate::text::escape_lines`]; commands escape each field
/// with [`crate::text::escape`] as well, so a field cannot start a line of its own).
pub fn terminal_safe(out: &str, json: bool) -> Cow<'_, str> {
    if json {
        crate::text::json_safe(out)
    } else {
        crate::text::escape_lines(out)
    }
}

/// Kestrel collector: authenticates agents over mutual TLS, detects with Sigma rules, stores
/// events and alerts.
#[derive(Debug, Parser)]
#[command(name = "kestrel-collector", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `kestrel-collector` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept agent streams over mTLS, detect, store events and alerts.
    Serve(ServeArgs),
    /// List, show, acknowledge, replay and suppress alerts in a data directory.
    Alerts(crate::cli::alerts::AlertsArgs),
    /// Check a rules directory or run its fixtures.
    Rules(crate::cli::rules::RulesArgs),
    /// Search the stored events of a data directory.
    Events(crate::cli::events::EventsArgs),
    /// List the agents a data directory knows, issue join tokens, revoke identities and
    /// certificates.
    Agents(crate::cli::agents::AgentsArgs),
}

/// Options of `kestrel-collector serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Check the configuration and exit without serving: the key's mode, the certificates,
    /// every rule file, `--config` and its sinks. Exit status 0 when `serve` would start with
    /// it; otherwise 1, naming every problem found.
    #[arg(long)]
    pub check_config: bool,
    /// Address to listen on for agents, e.g. `0.0.0.0:50051` or `[::]:50051`.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Server certificate chain (PEM), leaf first.
    #[arg(long, value_name = "F")]
    pub cert: PathBuf,
    /// Private key of the server certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "F")]
    pub key: PathBuf,
    /// CA certificate(s) (PEM) that agent certificates must chain to.
    #[arg(long, value_name = "F")]
    pub client_ca: PathBuf,
    /// Directory of Sigma rules (`*.yml`, `*.yaml`, searched recursively).
    #[arg(long, value_name = "DIR")]
    pub rules: PathBuf,
    /// Data directory; the SQLite store is `DIR/kestrel.db` (created when missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Also append every alert as one JSON object per line to this file (`-` for stdout):
    /// a `jsonl` sink named `alerts-jsonl`.
    #[arg(long, value_name = "F")]
    pub alerts_jsonl: Option<PathBuf>,
    /// Collector configuration file (TOML): alert dedup, rate limit, delivery and `[[sinks]]`.
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// Serve the collector's metrics (Prometheus text) on http://ADDR/metrics, and /healthz
    /// and /readyz (ready while the store takes writes, rules are loaded and no sink is dead).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Log lines as `text` or `json` (one object per line); overrides `log_format` in
    /// --config. Default text, coloured only when stderr is a terminal.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<kestrel_service::logging::LogFormat>,
    /// Agent admission (trust domain, deny-list) and liveness (silence) options.
    #[command(flatten)]
    pub agents: crate::ingress::AgentArgs,
    /// Event store options (retention window).
    #[command(flatten)]
    pub store: crate::store::retention::StoreArgs,
}
