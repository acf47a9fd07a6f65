//! What a path in a call means: relative paths made absolute against the directory they are
//! relative to, as the agent knows it or, failing that, as `/proc` says while the process is
//! still there, and lexically normalized.

use kestrel_ebpf_abi::linux::AT_FDCWD;

/// The path of descriptor `fd` (`AT_FDCWD`: the working directory) in process `tgid`, while
/// both still exist.
pub fn fd_path(tgid: u32, fd: i32) -> Option<String> {
    if fd == AT_FDCWD {
        proc_link(tgid, "cwd")
    } else {
        proc_link(tgid, &format!("fd/{fd}"))
    }
}

/// Target of `/proc/<tgid>/<link>`, if the process still exists.
pub fn proc_link(tgid: u32, link: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{tgid}/{link}"))
        .ok()
        .map(|p| p.display().to_string())
}

/// The absolute form of a path argument of process `tgid`: joined to its directory descriptor's
/// path (`directory`
/// as the agent knows it, else live from /proc), or to the process's working directory (`cwd`
/// as the agent follows it, else live from /proc). Left relative when the base is not known: a
/// made-up absolute path would mislead the rules.
pub fn absolute(tgid: u32, path: &str, dirfd: i32, directory: Option<&str>, cwd: &str) -> String {
    if path.starts_with('/') || path.is_empty() {
        return normalize(path);
    }
    let known = if dirfd == AT_FDCWD {
        Some(cwd)
    } else {
        directory
    };
    let base = known
        .filter(|base| !base.is_empty())
        .map(str::to_owned)
        .or_else(|| fd_path(tgid, dirfd));
    match base {
        Some(base) => join(&base, path),
        None => normalize(path),
    }
}

/// `path` (relative) under the directory `base`, normalized.
pub fn join(base: &str, path: &str) -> String {
    normalize(&format!("{}/{path}", base.trim_end_matches('/')))
}

/// Removes `.` and `..` components and repeated slashes (lexically: symlinks stay as they are).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if path.starts_with('/') {
        format!("/{}", parts.join("/"))
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(normalize("/tmp/./a//b/../c"), "/tmp/a/c");
        assert_eq!(normalize("/.."), "/");
    }
}
