//! Owner-only access to the spool: the directory is 0700 and its files 0600, whatever the umask,
//! since they hold every event of the host (command lines, paths, addresses). Looser modes
//! found at start (an older agent, a copied directory) are tightened and logged.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use super::{io_err, SpoolError};

/// Mode of the spool directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in it.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` when missing and makes it and every file in it owner-only.
pub fn secure_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    tighten(dir, DIR_MODE)?;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let is_file = entry.file_type().map_err(io_err(dir))?.is_file();
        if is_file {
            tighten(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// Sets `mode` on `path` when its permission bits differ, logging a looser mode found.
fn tighten(path: &Path, mode: u32) -> Result<(), SpoolError> {
    let found = fs::symlink_metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode()
        & 0o7777;
    if found == mode {
        return Ok(());
    }
    if found & !mode != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{found:04o}"),
            now = format!("{mode:04o}"),
            "spool file was accessible to others: made owner-only"
        );
    }
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Opens `path` with `options`, creating it owner-only (0600 exactly, not just what the umask
/// leaves of it).
pub fn open_private(path: &Path, options: &mut OpenOptions) -> Result<File, SpoolError> {
    let file = options.mode(FILE_MODE).open(path).map_err(io_err(path))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io_err(path))?;
    Ok(file)
}
