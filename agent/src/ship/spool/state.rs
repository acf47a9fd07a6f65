//! The spool's small state file (`DIR/state`): the epoch and the highest acknowledged sequence
//! number. Replaced atomically (write a temporary file, fsync, rename, fsync the directory), so a
//! crash leaves either the old or the new state, never a torn one.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::SpoolError;

/// File name of the state inside the spool directory.
pub const STATE_FILE: &str = "state";

/// What the spool remembers between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Epoch of the sequence numbers in this spool; chosen once, when the spool is created.
    pub epoch: u64,
    /// Every record up to and including this sequence number was acknowledged.
    pub acked_seq: u64,
}

/// Reads the state: `Ok(None)` when there is none yet, an error when it exists but is unusable.
pub fn load(dir: &Path) -> Result<Option<State>, SpoolError> {
    let path = dir.join(STATE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SpoolError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| SpoolError::Corrupt {
            path,
            reason: format!("state file does not parse: {e}"),
        })
}

/// Replaces the state atomically and durably.
pub fn store(dir: &Path, state: &State) -> Result<(), SpoolError> {
    let text = serde_json::to_string(state).expect("state serializes");
    replace_file(dir, STATE_FILE, text.as_bytes())
}

/// Replaces file `name` in `dir` with `bytes`, atomically and durably: a crash leaves the old
/// or the new contents, never a mix.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| SpoolError::Io { path, source }
    };
    let mut file = super::modes::open_private(
        &tmp,
        fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true),
    )?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

/// Makes renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_absence_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let state = State {
            epoch: 17,
            acked_seq: 99,
        };
        store(dir.path(), &state).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(state));
        assert!(!dir.path().join("state.tmp").exists());
    }

    #[test]
    fn unparsable_state_is_a_corruption_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), "{garbage").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("state") && err.contains("does not parse"),
            "{err}"
        );
    }
}
