//! One YAML document of a rule file: splitting a file at `---` lines, the file positions that
//! errors point to, which kind of Sigma document it is, and its default id.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml::Value as Yaml;

use crate::error::RuleErrorKind;

/// A problem in one document and the 1-based file line it concerns, when known.
pub(crate) type DocumentError = (RuleErrorKind, Option<usize>);

/// Every problem found in one document (at least one), so that `rules check` names them all
/// in one run. A problem that leaves nothing else checkable (YAML that does not parse) is
/// the only one.
#[derive(Debug, Default)]
pub(crate) struct DocumentErrors(pub(crate) Vec<DocumentError>);

impl From<DocumentError> for DocumentErrors {
    fn from(error: DocumentError) -> Self {
        DocumentErrors(vec![error])
    }
}

impl DocumentErrors {
    /// Adds the problem of `result`, if any, and returns its value otherwise.
    pub(crate) fn take<T>(&mut self, result: Result<T, impl Into<DocumentErrors>>) -> Option<T> {
        result.map_err(|e| self.0.extend(e.into().0)).ok()
    }

    /// `value` when no problem was found.
    pub(crate) fn or<T>(self, value: Option<T>) -> Result<T, DocumentErrors> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self),
        }
    }
}

/// What a YAML document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A correlation rule.
    Correlation,
    /// A Sigma filter.
    Filter,
}

/// One YAML document of a rule file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk<'t> {
    /// The document's text.
    pub(crate) text: &'t str,
    /// 1-based line of the file where the document starts.
    pub(crate) first_line: usize,
}

impl<'t> Chunk<'t> {
    /// A file of one document.
    pub(crate) fn whole(text: &'t str) -> Chunk<'t> {
        Chunk {
            text,
            first_line: 1,
        }
    }

    /// The document as a YAML value.
    pub(crate) fn parse_value(&self) -> Result<Yaml, DocumentError> {
        self.parse()
    }

    /// The document deserialized into `T`; errors carry the file position.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, DocumentError> {
        serde_yaml::from_str(self.text).map_err(|e| {
            let line = e.location().map(|l| l.line() + self.first_line - 1);
            let message = shift_lines(&e.to_string(), self.first_line - 1);
            (RuleErrorKind::Yaml { message }, line)
        })
    }

    /// Best-effort 1-based file line of the first YAML key `key` at or after file line `from`
    /// (0: from the document's start), for error messages. Matches `key:`, `- key:` and quoted
    /// keys.
    pub(crate) fn line_of(&self, key: &str, from: usize) -> Option<usize> {
        let skip = from.saturating_sub(self.first_line);
        self.text
            .lines()
            .enumerate()
            .skip(skip)
            .find(|(_, line)| {
                let line = line.trim_start();
                let line = line.strip_prefix("- ").unwrap_or(line).trim_start();
                let unquoted = line
                    .strip_prefix(['\'', '"'])
                    .and_then(|l| l.strip_prefix(key))
                    .and_then(|l| l.strip_prefix(['\'', '"']));
                let rest = unquoted.or_else(|| line.strip_prefix(key));
                rest.is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map(|(i, _)| i + self.first_line)
    }
}

/// Rewrites every `line N` of a YAML parser message to `line N + offset` (file lines).
fn shift_lines(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (head, tail) = rest.split_at(at + "line ".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        match tail[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Splits a file into its YAML documents at `---` lines (empty documents are dropped).
pub(crate) fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line: start_line,
    });
    chunks.retain(|c| {
        c.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    chunks
}

/// The kind of a Sigma document, `None` for a detection rule; rule collections (`action`)
/// are reported as errors by
/// [`parse_file`](crate::parse::document::parse_file).
pub(crate) fn kind_of(doc: &Yaml) -> Option<Kind> {
    let map = doc.as_mapping()?;
    if map.contains_key("correlation") {
        Some(Kind::Correlation)
    } else if map.contains_key("filter") && !map.contains_key("detection") {
        Some(Kind::Filter)
    } else {
        None
    }
}

/// The id of document `index` of `count` in the file at `path` when it has no `id` or `name`:
/// the file stem, followed by `#N` in files of several documents.
pub(crate) fn default_id(path: &Path, index: usize, count: usize) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if count == 1 {
        stem
    } else {
        format!("{stem}#{}", index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_finds_plain_list_and_quoted_keys() {
        let text = "title: x\ndetection:\n  sel:\n    - 'Image|endswith': a\n    CommandLine: b\n";
        let c = Chunk::whole(text);
        assert_eq!(c.line_of("detection", 0), Some(2));
        assert_eq!(c.line_of("Image|endswith", 2), Some(4));
        assert_eq!(c.line_of("CommandLine", 2), Some(5));
        assert_eq!(c.line_of("Command", 2), None);
    }

    #[test]
    fn documents_split_at_separator_lines_with_their_first_line() {
        let text = "title: a\n---\ntitle: b\nx: 1\n--- \n# only a comment\n---\ntitle: c\n";
        let chunks = split(text);
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[0].first_line, chunks[0].text), (1, "title: a\n"));
        assert_eq!(
            (chunks[1].first_line, chunks[1].text),
            (3, "title: b\nx: 1\n")
        );
        assert_eq!(chunks[2].first_line, 8);
        assert_eq!(chunks[1].line_of("x", 0), Some(4));
    }

    #[test]
    fn leading_separator_is_not_an_empty_document() {
        let chunks = split("---\ntitle: a\n");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].first_line, 2);
    }

    #[test]
    fn yaml_errors_point_at_the_file_line() {
        let text = "title: a\n---\ntitle: b\nlogsource: [unclosed\n";
        let chunks = split(text);
        let (kind, line) = chunks[1].parse_value().unwrap_err();
        assert_eq!(line, Some(5), "{kind:?}");
        assert!(kind.to_string().contains("line 5"), "{kind}");
        assert!(!kind.to_string().contains("line 2 "), "{kind}");
    }
}
