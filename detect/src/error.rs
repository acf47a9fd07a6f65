//! Errors raised while loading and compiling Sigma rules.

use std::fmt;
use std::path::PathBuf;

/// The rule directory (or one of its sub-directories) could not be read.
///
/// The message is self-contained (directory and I/O error), so no `source()` chain repeats it.
#[derive(Debug, thiserror::Error)]
#[error("cannot read rule directory {}: {error}", dir.display())]
pub struct LoadError {
    /// The directory that could not be read.
    pub dir: PathBuf,
    /// The underlying I/O error.
    pub error: std::io::Error,
}

/// One rule (or one document of a rule file) that could not be loaded; the other rules still
/// load.
///
/// Displays as `rule {path}: {reason}`, followed by `(line N)` when the position is known
/// (YAML syntax errors have the line and column in the reason).
#[derive(Debug, thiserror::Error)]
pub struct RuleError {
    /// The rule file.
    pub path: PathBuf,
    /// 1-based line in the file where the problem is, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: RuleErrorKind,
}

impl RuleError {
    /// An error in `path` at `line` (when known).
    pub fn new(path: impl Into<PathBuf>, line: Option<usize>, kind: RuleErrorKind) -> RuleError {
        RuleError {
            path: path.into(),
            line,
            kind,
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}", self.path.display(), self.kind)?;
        match (self.line, &self.kind) {
            // The parser's message has the position already.
            (_, RuleErrorKind::Yaml { .. }) | (None, _) => {}
            (Some(line), _) => write!(f, " (line {line})")?,
        }
        Ok(())
    }
}

/// The reason a rule file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleErrorKind {
    /// The file could not be read.
    #[error("cannot read file: {0}")]
    Read(std::io::Error),
    /// The file is larger than rules are allowed to be.
    #[error("file is {size} bytes, more than the {limit} bytes a rule may have")]
    TooLarge {
        /// File size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not valid YAML or lacks mandatory Sigma attributes.
    #[error("invalid rule YAML: {message}")]
    Yaml {
        /// The parser's message, with positions as file lines.
        message: String,
    },
    /// A Sigma document kind Kestrel does not evaluate (rule collections with `action`).
    #[error("{0} are not supported")]
    UnsupportedDocument(&'static str),
    /// The rule's logsource is not one Kestrel evaluates.
    #[error(
        "logsource {0} is not supported (Kestrel evaluates product linux with a category such \
         as process_creation, file_event, network_connection; see 'Writing a rule' in the README)"
    )]
    UnsupportedLogsource(String),
    /// A Sigma taxonomy field Kestrel's events never carry.
    #[error("field '{field}' is not produced by Kestrel: {why}")]
    FieldNotAvailable {
        /// The field name as written.
        field: String,
        /// Why Kestrel does not produce it.
        why: &'static str,
    },
    /// A field Kestrel knows, but not for this rule's category.
    #[error("field '{field}' is not produced for category {category}")]
    FieldNotProduced {
        /// The field name as written.
        field: String,
        /// The rule's category.
        category: &'static str,
    },
    /// The correlation section is malformed.
    #[error("correlation: {0}")]
    Correlation(String),
    /// The filter section is malformed.
    #[error("filter: {0}")]
    Filter(String),
    /// A correlation or filter names a rule that is not loaded.
    #[error("references rule '{reference}', which is not loaded (no rule has that id or name)")]
    UnknownReference {
        /// The id or name as written.
        reference: String,
    },
    /// Another rule already uses this name.
    #[error("duplicate rule name '{name}' (already used by {})", first.display())]
    DuplicateName {
        /// The name used twice.
        name: String,
        /// The file that loaded first with this name.
        first: PathBuf,
    },
    /// Another rule file already uses this id.
    #[error("duplicate rule id '{id}' (already used by {})", first.display())]
    DuplicateId {
        /// The id used twice.
        id: String,
        /// The file that loaded first with this id.
        first: PathBuf,
    },
    /// The detection section is malformed.
    #[error("detection: {0}")]
    Detection(String),
    /// A search identifier is a plain keyword list instead of field/value maps.
    #[error("selection '{0}': keyword search not supported on structured events")]
    KeywordSearch(String),
    /// A field outside the field mapping table.
    #[error("unknown field '{field}' in selection '{selection}'")]
    UnknownField {
        /// The field name as written.
        field: String,
        /// The search identifier that uses it.
        selection: String,
    },
    /// A value modifier Sigma does not define.
    #[error("unknown modifier '{modifier}' on field {field}")]
    UnknownModifier {
        /// The modifier as written.
        modifier: String,
        /// The field it modifies.
        field: String,
    },
    /// A Sigma modifier Kestrel does not implement.
    #[error("unsupported modifier '{modifier}' on field {field}: {why}")]
    UnsupportedModifier {
        /// The modifier as written.
        modifier: String,
        /// The field it modifies.
        field: String,
        /// Why it cannot be evaluated.
        why: &'static str,
    },
    /// A value (or value/modifier combination) that cannot be evaluated.
    #[error("field {field}: {reason}")]
    InvalidValue {
        /// The field the value belongs to (with its modifiers).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `re` value that does not compile or exceeds the size limit.
    #[error("field {field}: invalid regular expression: {error}")]
    Regex {
        /// The field the regex belongs to.
        field: String,
        /// The regex crate's error (syntax error or "exceeds size limit").
        error: regex::Error,
    },
    /// The condition does not parse or references missing search identifiers.
    #[error("condition '{condition}': {reason}")]
    Condition {
        /// The condition text.
        condition: String,
        /// What is wrong, with the column where known.
        reason: String,
    },
}
