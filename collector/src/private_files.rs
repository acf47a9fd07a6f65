//! Owner-only files, whatever the umask: the data directory is created 0700, the database and
//! the files beside it 0600 (they hold every event and alert), and the collector refuses a
//! private key that its group or others can read.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tracing::warn;

use crate::ingress::tls::TlsError;

/// Mode of directories the collector creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files the collector creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) owner-only. A directory that already exists keeps its
/// mode (it may be shared, like a parent the operator made), with a warning when others can
/// enter it.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        // The mode given to mkdir is masked by the umask, which only removes bits: 0700 or less.
        return Ok(());
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        warn!(
            dir = %dir.display(),
            mode = %format_args!("{mode:o}"),
            "the data directory is open to group or others; it holds every event and alert \
             (chmod 700 it)"
        );
    }
    Ok(())
}

/// Creates `path` owner-only when it is missing, and takes group and other access away from an
/// existing one: for files the collector owns (the database, its WAL and shared memory).
pub fn restrict_file(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)
            .map(drop),
        Err(e) => Err(e),
    }
}

/// `path`'s existing sibling files `path-wal` and `path-shm` made owner-only too.
pub fn restrict_sqlite_files(db: &Path) -> io::Result<()> {
    restrict_file(db)?;
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        if path.exists() {
            restrict_file(path)?;
        }
    }
    Ok(())
}

/// Refuses a private key file that its group or others can read: anyone who reads it can pose
/// as the collector to every agent.
pub fn check_private_key(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        return Err(TlsError::Key {
            path: path.to_path_buf(),
            reason: format!(
                "mode {mode:o} lets group or others read it; make it readable by the collector's \
                 user only (chmod 600, or systemd LoadCredential=)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_files_and_directories_are_owner_only_and_loose_files_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("kestrel.db");
        restrict_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let wal = dir.join("kestrel.db-wal");
        std::fs::write(&wal, b"x").unwrap();
        std::fs::set_permissions(&wal, Permissions::from_mode(0o666)).unwrap();
        restrict_sqlite_files(&db).unwrap();
        assert_eq!(mode(&wal), 0o600);
        assert!(!dir.join("kestrel.db-shm").exists());
    }

    #[test]
    fn a_key_others_can_read_is_refused_naming_file_and_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("collector-key.pem");
        std::fs::write(&key, b"key").unwrap();
        for (mode, refused) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&key, Permissions::from_mode(mode)).unwrap();
            let result = check_private_key(&key);
            assert_eq!(result.is_err(), refused, "{mode:o}");
            if let Err(e) = result {
                let text = e.to_string();
                assert!(text.contains(&key.display().to_string()), "{text}");
                assert!(text.contains(&format!("mode {mode:o}")), "{text}");
            }
        }
    }
}
