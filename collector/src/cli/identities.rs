//! The commands that issue and revoke node identities in a data directory: `agents token
//! create` (a one-time join token for a VM), `agents revoke` (an identity, or a certificate
//! serial with every certificate renewed from it) and `agents certificates` (what enrolment
//! issued). A running collector sharing the store picks revocations up within its reload
//! interval.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::cli::events::{open, EventsCliError};
use crate::enrolment::{issuer, join_token};
use crate::store::Store;
use crate::text::escape;

/// Options of `agents token create`.
#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    /// Data directory of the collector (holds `kestrel.db`; created when missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The node the token admits (its identity: `spiffe://<trust domain>/node/NAME`).
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// How long the token may wait to be used (e.g. 1h, 15m).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

/// Options of `agents revoke`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["serial", "identity"])))]
pub struct RevokeArgs {
    /// Data directory of the collector (holds `kestrel.db`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// A certificate serial (hex; `:` separators and a `0x` prefix are fine). Certificates
    /// renewed from it are revoked with it.
    #[arg(long, value_name = "HEX")]
    pub serial: Option<String>,
    /// An identity, exactly as the collector stamps it (`spiffe://kestrel.local/node/web-1`).
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// Why, for the record.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// Options of `agents certificates`.
#[derive(Debug, Clone, Args)]
pub struct CertificatesArgs {
    /// Data directory of the collector (holds `kestrel.db`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Only this identity's.
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// A command of this module failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentitiesCliError {
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] EventsCliError),
    /// The node name is unusable.
    #[error("--node {0:?}: not a node name (lower-case letters, digits, '-' and '.')")]
    Node(String),
    /// The system's random source failed.
    #[error("no randomness for the token")]
    Random,
    /// `--ttl` is zero or absurd.
    #[error("--ttl must be between 1s and 30 days")]
    Ttl,
}

/// `agents token create`: stores the token's hash and returns the token (printed once; the
/// store cannot give it back).
pub fn token_create(args: &TokenCreateArgs) -> Result<String, IdentitiesCliError> {
    if !issuer::valid_node_name(&args.node) {
        return Err(IdentitiesCliError::Node(args.node.clone()));
    }
    if args.ttl.is_zero() || args.ttl > Duration::from_secs(30 * 24 * 3600) {
        return Err(IdentitiesCliError::Ttl);
    }
    let store = Store::open(&args.data).map_err(EventsCliError::from)?;
    let token = join_token::generate().map_err(|_| IdentitiesCliError::Random)?;
    let now = crate::clock::now_unix_ns();
    let expires = now.saturating_add(args.ttl.as_nanos() as u64);
    store
        .create_join_token(&join_token::hash(&token), &args.node, now, expires)
        .map_err(EventsCliError::from)?;
    Ok(token)
}

/// `agents revoke`: what was revoked, one line each.
pub fn revoke(args: &RevokeArgs) -> Result<String, IdentitiesCliError> {
    let store = open(&args.data)?;
    let now = crate::clock::now_unix_ns();
    let mut out = String::new();
    if let Some(identity) = &args.identity {
        let new = store
            .revoke_identity(identity, &args.reason, now)
            .map_err(EventsCliError::from)?;
        let state = if new { "revoked" } else { "already revoked" };
        let _ = writeln!(out, "identity {}: {state}", escape(identity));
    }
    if let Some(serial) = &args.serial {
        let serial = issuer::normalize_serial(serial);
        let revoked = store
            .revoke_serial(&serial, &args.reason, now)
            .map_err(EventsCliError::from)?;
        if revoked.is_empty() {
            let _ = writeln!(out, "serial {}: already revoked", escape(&serial));
        }
        for serial in revoked {
            let _ = writeln!(out, "serial {}: revoked", escape(&serial));
        }
    }
    Ok(out)
}

/// `agents certificates`: the certificates enrolment issued, newest first.
pub fn certificates(args: &CertificatesArgs) -> Result<String, IdentitiesCliError> {
    let store = open(&args.data)?;
    let revoked = store.revoked().map_err(EventsCliError::from)?;
    let issued = store
        .issued_certificates(args.identity.as_deref())
        .map_err(EventsCliError::from)?;
    let mut out = String::new();
    if !args.json {
        out.push_str("SERIAL  IDENTITY  NOT AFTER  PROOF  RENEWED FROM  STATE\n");
    }
    for cert in issued {
        let is_revoked =
            revoked.serials.contains(&cert.serial) || revoked.identities.contains(&cert.identity);
        let not_after = crate::alert::rfc3339((cert.not_after_unix.max(0) as u64) * 1_000_000_000);
        if args.json {
            let line = json!({
                "serial": cert.serial,
                "identity": cert.identity,
                "not_before_unix": cert.not_before_unix,
                "not_after_unix": cert.not_after_unix,
                "proof": cert.proof,
                "renewed_from": cert.renewed_from,
                "revoked": is_revoked,
            });
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(
                out,
                "{}  {}  {not_after}  {}  {}  {}",
                cert.serial,
                escape(&cert.identity),
                cert.proof,
                cert.renewed_from.as_deref().unwrap_or("-"),
                if is_revoked { "REVOKED" } else { "valid" }
            );
        }
    }
    Ok(out)
}
