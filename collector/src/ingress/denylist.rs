//! The deny-list: agent identities the collector refuses (revoked), from a file that is
//! re-read when it changes.
//!
//! One identity per line, exactly as the collector stamps it (`spiffe://kestrel.local/node/web-1`
//! or a DNS name); blank lines and `#` comments are ignored. A revoked identity is refused at its
//! next TLS handshake and its live stream, if any, is ended at once. A file that changes but cannot
//! be read is logged and the previous list stays in force.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::ingress::identity::Identity;

/// The deny-list file cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("deny-list {}: {source}", path.display())]
pub struct DenyListError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

#[derive(Debug, Default)]
struct Loaded {
    stamp: Option<(u64, SystemTime)>,
    denied: HashSet<String>,
}

/// A reloadable set of revoked identities.
#[derive(Debug, Default)]
pub struct DenyList {
    path: Option<PathBuf>,
    loaded: RwLock<Loaded>,
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn read(path: &Path) -> Result<HashSet<String>, DenyListError> {
    let text = std::fs::read_to_string(path).map_err(|source| DenyListError {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse(&text))
}

/// The identities listed in deny-list text.
pub fn parse(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

impl DenyList {
    /// A list that denies nobody and has no file.
    pub fn empty() -> DenyList {
        DenyList::default()
    }

    /// Reads `path` (it must exist).
    pub fn load(path: &Path) -> Result<DenyList, DenyListError> {
        let stamp = stamp(path);
        let denied = read(path)?;
        Ok(DenyList {
            path: Some(path.to_owned()),
            loaded: RwLock::new(Loaded { stamp, denied }),
        })
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// True when `identity` is revoked.
    pub fn contains(&self, identity: &Identity) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .denied
            .contains(identity.as_str())
    }

    /// Number of identities listed.
    pub fn len(&self) -> usize {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .denied
            .len()
    }

    /// True when nobody is denied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file if it changed. Returns `None` when unchanged, else the identities that
    /// became denied (possibly none), or the read error (the previous list stays).
    pub fn reload_if_changed(&self) -> Option<Result<Vec<String>, DenyListError>> {
        let path = self.path.as_ref()?;
        let now = stamp(path);
        if self.loaded.read().unwrap_or_else(|p| p.into_inner()).stamp == now {
            return None;
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.stamp = now;
        Some(read(path).map(|denied| {
            let mut added: Vec<String> = denied.difference(&loaded.denied).cloned().collect();
            added.sort();
            loaded.denied = denied;
            added
        }))
    }

    /// Checks the file every `interval` until `stop` is cancelled; for each newly denied
    /// identity calls `revoke` (which ends its live stream).
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
        revoke: impl Fn(&Identity) + Send + 'static,
    ) {
        if self.path.is_none() {
            return;
        }
        crate::watch::every(interval, stop, || async {
            match self.reload_if_changed() {
                None => {}
                Some(Ok(added)) => {
                    info!(list = ?self.path, identities = self.len(), "deny-list reloaded");
                    for identity in added {
                        warn!(identity = %identity, "identity revoked: its stream is closed and new connections are refused");
                        revoke(&Identity::new(identity));
                    }
                }
                Some(Err(e)) => {
                    error!(error = %e, "deny-list changed but cannot be read: keeping the previous one")
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let ids =
            parse("# revoked\nspiffe://kestrel.local/node/a  # stolen laptop\n\n  b.example.com\n");
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("spiffe://kestrel.local/node/a"));
        assert!(ids.contains("b.example.com"));
    }

    #[test]
    fn reload_reports_newly_denied_identities_and_keeps_the_list_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deny");
        std::fs::write(&path, "a\n").unwrap();
        let list = DenyList::load(&path).unwrap();
        assert!(list.contains(&Identity::new("a")));
        assert!(list.reload_if_changed().is_none());

        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let added = list.reload_if_changed().unwrap().unwrap();
        assert_eq!(added, ["b", "c"]);
        assert!(list.contains(&Identity::new("c")));

        std::fs::remove_file(&path).unwrap();
        let err = list.reload_if_changed().unwrap().unwrap_err();
        assert!(err.to_string().contains("deny"), "{err}");
        assert!(
            list.contains(&Identity::new("b")),
            "the previous list stays"
        );
    }

    #[test]
    fn missing_file_at_start_is_an_error_naming_it() {
        let err = DenyList::load(Path::new("/nonexistent/deny-list")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/deny-list"), "{err}");
    }
}
