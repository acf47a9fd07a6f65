//! The flags of a `re` value, shared by the modifier parser, the regex matcher and the
//! prefilter's literal extraction.

/// Regex flags from the `re` sub-modifiers `i`, `m`, `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RegexFlags {
    /// Case-insensitive (`i`).
    pub(crate) case_insensitive: bool,
    /// `^`/`$` match at line boundaries (`m`).
    pub(crate) multi_line: bool,
    /// `.` matches newline (`s`).
    pub(crate) dot_all: bool,
}
