//! Finding and reading the rule files of a rules directory.

use std::path::{Path, PathBuf};

use crate::error::{LoadError, RuleError, RuleErrorKind};

/// Rule files larger than this are rejected (rules are small; this bounds hostile input).
pub const MAX_RULE_FILE_BYTES: u64 = 1 << 20;
/// Sub-directory depth limit, against symlink loops.
const MAX_DIR_DEPTH: usize = 16;
/// Directories with this name inside a rules directory hold rule test fixtures, not rules.
pub const FIXTURES_DIR: &str = "fixtures";

/// The rule files under `dir`, sorted.
pub fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    collect_rule_files(dir, 0, &mut files)?;
    files.sort();
    Ok(files)
}

fn collect_rule_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let load_error = |error| LoadError {
        dir: dir.to_path_buf(),
        error,
    };
    if depth > MAX_DIR_DEPTH {
        return Err(load_error(std::io::Error::other(format!(
            "more than {MAX_DIR_DEPTH} nested directories (symlink loop?)"
        ))));
    }
    for entry in std::fs::read_dir(dir).map_err(load_error)? {
        let entry = entry.map_err(load_error)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks; a dangling link is reported as a rule file problem below if it looks
        // like a rule, and ignored otherwise.
        let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            if name != FIXTURES_DIR {
                collect_rule_files(&path, depth + 1, out)?;
            }
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The text of one rule file, refused when larger than [`MAX_RULE_FILE_BYTES`].
pub(super) fn read_rule_file(path: &Path) -> Result<String, RuleError> {
    let fail = |kind| RuleError::new(path, None, kind);
    let size = std::fs::metadata(path)
        .map_err(|e| fail(RuleErrorKind::Read(e)))?
        .len();
    if size > MAX_RULE_FILE_BYTES {
        return Err(fail(RuleErrorKind::TooLarge {
            size,
            limit: MAX_RULE_FILE_BYTES,
        }));
    }
    std::fs::read_to_string(path).map_err(|e| fail(RuleErrorKind::Read(e)))
}
