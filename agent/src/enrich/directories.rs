//! The paths of directories processes opened, by identity (device and inode generation, inode
//! number: unique even when an inode number is reused): calls name files
//! relative to a directory descriptor (`openat(dirfd, …)`, `unlinkat`, `rm -r`, `find`), and by
//! the time the agent reads such a call the descriptor may be closed and the process gone, so
//! /proc can no longer say where it pointed. The kernel side reports each read-only
//! `O_DIRECTORY` open and tags each relative call with its directory's identity.

use hashlink::LruCache;

/// How many directories are remembered (least recently used forgotten first).
const CAPACITY: usize = 32_768;

/// Directory paths by identity, bounded.
pub struct Directories {
    paths: LruCache<(u64, u64), String>,
}

impl Default for Directories {
    fn default() -> Directories {
        Directories {
            paths: LruCache::new(CAPACITY),
        }
    }
}

impl Directories {
    /// Remembers that the directory with this identity is at the absolute `path` (an identity
    /// of zeros, unknown, and a relative path are ignored).
    pub fn learn(&mut self, identity: (u64, u64), path: String) {
        if identity != (0, 0) && path.starts_with('/') {
            self.paths.insert(identity, path);
        }
    }

    /// The path of the directory with this identity, if it was opened while the agent watched
    /// (and not forgotten since).
    pub fn path_of(&mut self, identity: (u64, u64)) -> Option<&str> {
        if identity == (0, 0) {
            return None;
        }
        self.paths.get(&identity).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_found_by_identity_and_unknown_ones_are_not_guessed() {
        let mut dirs = Directories::default();
        dirs.learn((8, 42), "/var/log/audit".into());
        dirs.learn((0, 0), "/unknown".into());
        dirs.learn((8, 43), "relative".into());
        assert_eq!(dirs.path_of((8, 42)), Some("/var/log/audit"));
        assert_eq!(dirs.path_of((9, 42)), None, "another device");
        assert_eq!(dirs.path_of((0, 0)), None);
        assert_eq!(dirs.path_of((8, 43)), None);
        dirs.learn((8, 42), "/var/log/audit.old".into());
        assert_eq!(dirs.path_of((8, 42)), Some("/var/log/audit.old"), "renamed");
    }
}
