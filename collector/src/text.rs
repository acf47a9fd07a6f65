//! Peer-supplied text made safe for where it is shown: the terminal (CLI tables), JSON lines and
//! Prometheus labels. Event, agent and alert fields come from agents, which an attacker may
//! control: a raw ESC can clear the screen, rewrite earlier lines or set the clipboard, a bidi
//! override can make `evil\u{202e}hs.txt` read as `evilxt.sh`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a terminal could act on `c` instead of printing it: C0 controls, DEL, C1 controls
/// and the bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every character a terminal could act on ([`is_unsafe`]), newlines and tabs
/// included, written visibly: `\n`, `\r`, `\t`, `\xHH` for the other ASCII controls,
/// `\u{HHHH}` beyond ASCII. The one function the CLI's human output goes through.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && is_unsafe(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for text of several lines (a rule description, a process tree, a whole
/// command's output): each line escaped, the line breaks kept.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(escape).collect::<Vec<_>>().join("\n"))
}

/// Serialized JSON with the characters serde_json leaves raw but a terminal acts on (DEL, C1,
/// bidi overrides) written as `\uXXXX` escapes: the same JSON value, safe to print. They can
/// only occur inside JSON strings, where the escape means the same character.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        // serde_json already escaped C0 controls; newlines between lines (JSON lines) stay.
        if is_unsafe(c) && c != '\n' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A Prometheus label value in the text exposition format: backslash, double quote and line
/// feed escaped (`\\`, `\"`, `\n`), nothing else can end the value or the line.
pub fn prometheus_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_bidi_overrides_are_written_visibly() {
        assert_eq!(escape("plain /usr/bin/ls -l"), "plain /usr/bin/ls -l");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\u{7f}\u{9b}31m"), "x\\x7f\\u{9b}31m");
        assert_eq!(escape("evil\u{202e}hs.txt"), "evil\\u{202e}hs.txt");
        assert_eq!(escape("\u{2066}i\u{2069}"), "\\u{2066}i\\u{2069}");
        assert_eq!(escape("l1\nl2\r\t"), "l1\\nl2\\r\\t");
        assert_eq!(escape("é ü 日本"), "é ü 日本");
    }

    #[test]
    fn multi_line_text_keeps_its_line_breaks_only() {
        assert_eq!(escape_lines("a\n\u{1b}b\n"), "a\n\\x1bb\n");
        assert_eq!(escape_lines("a\r\nb"), "a\\r\nb");
    }

    #[test]
    fn json_stays_the_same_value_without_raw_controls() {
        let value = serde_json::json!({"s": "a\u{1b}b\u{7f}\u{85}\u{202e}\u{1F600}"});
        let text = serde_json::to_string(&value).unwrap();
        let safe = json_safe(&text);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            value
        );
        assert_eq!(json_safe("{\"a\":1}\n"), "{\"a\":1}\n");
    }

    #[test]
    fn label_values_cannot_end_the_value_or_the_line() {
        assert_eq!(
            prometheus_label("kernel\"} 1\nforged{x=\"\\"),
            "kernel\\\"} 1\\nforged{x=\\\"\\\\"
        );
    }
}
