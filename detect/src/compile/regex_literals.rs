//! Texts that every match of a case-sensitive regex contains, for the literal prefilter.
//!
//! A small, deliberately conservative reading of the regex syntax: literal characters, small
//! character classes, groups with alternation and repetitions are understood; anything else
//! (Unicode classes, `.`, escapes such as `\x41`, flags) counts as an unknown character, which
//! only ever drops texts. Every text returned is ASCII and lowercase: when the regex matches a
//! value, the lowercase form of the value contains at least one of them.
//!
//! (`regex-syntax`'s literal extractor would do this on the real syntax tree, but it finds
//! prefixes and suffixes only, while Sigma regexes mostly start with `\s`, `^(\S*/)?` or `\b`.)

use crate::compile::regex_flags::RegexFlags;

/// Most alternatives a text set may have before it stops being useful (and growing).
const MAX_ALTERNATIVES: usize = 16;
/// Longest text built by concatenation (a run stops growing there).
const MAX_TEXT_LEN: usize = 64;
/// Largest character class turned into alternatives.
const MAX_CLASS: usize = 8;

/// Texts of which every match of `pattern` contains one (lowercase), `None` when no such set
/// is known. Case-insensitive patterns and inline flags get `None`: Unicode case folding
/// makes some letters match characters whose lowercase form is not ASCII.
pub(crate) fn required_texts(pattern: &str, flags: RegexFlags) -> Option<Vec<String>> {
    if flags.case_insensitive {
        return None;
    }
    let mut parser = Parser {
        chars: pattern.chars().collect(),
        pos: 0,
    };
    let info = parser.alternation()?;
    if parser.pos != parser.chars.len() {
        return None;
    }
    let mut texts = info.required?;
    texts.sort();
    texts.dedup();
    Some(texts)
}

/// What is known about the strings a part of a regex matches.
#[derive(Debug, Clone, Default)]
struct Info {
    /// Every string the part can match (lowercase), when that set is small and all-ASCII.
    exact: Option<Vec<String>>,
    /// Every match contains one of these.
    required: Option<Vec<String>>,
}

impl Info {
    fn exact(texts: Vec<String>) -> Info {
        Info {
            required: Some(texts.clone()),
            exact: Some(texts),
        }
    }

    fn unknown() -> Info {
        Info::default()
    }

    /// The empty string only (anchors, word boundaries).
    fn empty() -> Info {
        Info {
            exact: Some(vec![String::new()]),
            required: None,
        }
    }
}

/// Higher is more selective: the shortest text counts most, then fewer alternatives.
fn score(texts: &[String]) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = texts.iter().map(String::len).min().unwrap_or(0);
    (shortest.min(16), std::cmp::Reverse(texts.len()))
}

fn better(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Every concatenation of a text of `a` with a text of `b`; `None` when there would be too many.
fn product(a: &[String], b: &[String]) -> Option<Vec<String>> {
    if a.len() * b.len() > MAX_ALTERNATIVES {
        return None;
    }
    let mut out: Vec<String> = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| format!("{x}{y}")))
        .collect();
    if out.iter().any(|s| s.len() > MAX_TEXT_LEN) {
        return None;
    }
    out.sort();
    out.dedup();
    Some(out)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// `branch ('|' branch)*`, up to a `)` or the end.
    fn alternation(&mut self) -> Option<Info> {
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        if branches.len() == 1 {
            return branches.pop();
        }
        let mut exact = Some(Vec::new());
        let mut required = Some(Vec::new());
        for b in branches {
            exact = exact.zip(b.exact.clone()).map(|(mut e, b)| {
                e.extend(b);
                e
            });
            required = required.zip(better(b.required, b.exact)).map(|(mut r, b)| {
                r.extend(b);
                r
            });
        }
        let cap = |set: Option<Vec<String>>| {
            set.map(|mut s| {
                s.sort();
                s.dedup();
                s
            })
            .filter(|s| s.len() <= MAX_ALTERNATIVES)
        };
        Some(Info {
            exact: cap(exact),
            required: cap(required),
        })
    }

    /// A sequence of repeated atoms.
    fn concat(&mut self) -> Option<Info> {
        // `run`: the exact set of the atoms since the last unknown one.
        let mut run: Option<Vec<String>> = Some(vec![String::new()]);
        let mut whole = true;
        let mut best: Option<Vec<String>> = None;
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            let (info, repeated) = self.repetition(atom)?;
            if let (Some(e), true) = (&info.exact, repeated) {
                // `x+`, `x{2,}`: the run goes up to the first copy, the next starts at the last.
                let before = run.take().unwrap_or_else(|| vec![String::new()]);
                match product(&before, e) {
                    Some(ended) => best = better(best, Some(ended)),
                    None => best = better(better(best, Some(before)), Some(e.clone())),
                }
                run = Some(e.clone());
                whole = false;
                continue;
            }
            match (&run, &info.exact) {
                (Some(r), Some(e)) => match product(r, e) {
                    Some(p) => run = Some(p),
                    None => {
                        best = better(best, run.take());
                        run = Some(e.clone());
                        whole = false;
                    }
                },
                _ => {
                    best = better(best, run.take().filter(|r| r != &[String::new()]));
                    best = better(best, info.required);
                    run = Some(vec![String::new()]);
                    whole = false;
                }
            }
        }
        let exact = if whole { run.clone() } else { None };
        let required = better(best, run.filter(|r| r != &[String::new()]));
        Some(Info { exact, required })
    }

    /// An atom followed by an optional repetition operator; true when the atom is repeated
    /// at least once and possibly more (its info is then the atom's own).
    fn repetition(&mut self, atom: Info) -> Option<(Info, bool)> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                self.pos += 1;
                let min = self.number()?;
                let max = if self.peek() == Some(',') {
                    self.pos += 1;
                    if self.peek() == Some('}') {
                        None
                    } else {
                        Some(self.number()?)
                    }
                } else {
                    Some(min)
                };
                if self.peek() != Some('}') {
                    return None;
                }
                (min, max)
            }
            _ => return Some((atom, false)),
        };
        self.pos += 1;
        if self.peek() == Some('?') {
            self.pos += 1; // lazy
        }
        Some(match (min, max) {
            (1, Some(1)) => (atom, false),
            (0, _) => (Info::unknown(), false),
            _ if atom.exact.is_some() => (atom, true),
            _ => (
                Info {
                    exact: None,
                    required: atom.required,
                },
                false,
            ),
        })
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn atom(&mut self) -> Option<Info> {
        let c = self.next()?;
        Some(match c {
            '(' => {
                if self.peek() == Some('?') {
                    // Only non-capturing groups; flags such as (?i) or (?x) change meanings.
                    if self.chars.get(self.pos + 1) != Some(&':') {
                        return None;
                    }
                    self.pos += 2;
                }
                let inner = self.alternation()?;
                if self.next()? != ')' {
                    return None;
                }
                inner
            }
            '[' => self.class()?,
            '\\' => self.escape()?,
            '^' | '$' => Info::empty(),
            '.' => Info::unknown(),
            '*' | '+' | '?' | '{' | ')' | '|' => return None,
            c => literal(c),
        })
    }

    fn escape(&mut self) -> Option<Info> {
        let c = self.next()?;
        Some(match c {
            'b' | 'B' | 'A' | 'z' => Info::empty(),
            'x' | 'u' | 'U' | 'p' | 'P' => {
                let digits = match c {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    _ => 1,
                };
                if self.peek() == Some('{') {
                    while self.next()? != '}' {}
                } else {
                    for _ in 0..digits {
                        self.next()?;
                    }
                }
                Info::unknown()
            }
            c if c.is_ascii_alphanumeric() => Info::unknown(),
            c if c.is_ascii() => literal(c),
            _ => Info::unknown(),
        })
    }

    /// A bracketed class; a small one of plain ASCII characters becomes alternatives.
    fn class(&mut self) -> Option<Info> {
        let mut chars: Vec<char> = Vec::new();
        let mut plain = true;
        if self.peek() == Some('^') {
            self.pos += 1;
            plain = false;
        }
        let mut first = true;
        let mut depth = 1;
        let mut previous: Option<char> = None;
        loop {
            let c = self.next()?;
            match c {
                ']' if !first || depth > 1 => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                '[' => {
                    depth += 1;
                    plain = false;
                }
                '\\' => {
                    let e = self.next()?;
                    if e.is_ascii_punctuation() {
                        chars.push(e);
                        previous = Some(e);
                    } else {
                        // \d, \s, \x41, \p{L}, ...: not worth following.
                        plain = false;
                        if self.peek() == Some('{') {
                            while self.next()? != '}' {}
                        }
                    }
                    first = false;
                    continue;
                }
                '-' if previous.is_some()
                    && self.peek().is_some_and(|n| n != ']')
                    && depth == 1 =>
                {
                    let end = self.next()?;
                    let start = previous.take().expect("checked");
                    if end == '\\' || end == '[' || !start.is_ascii() || !end.is_ascii() {
                        return None;
                    }
                    if (end as u32).saturating_sub(start as u32) as usize > MAX_CLASS {
                        plain = false;
                    } else {
                        chars.extend((start..=end).skip(1));
                    }
                    first = false;
                    continue;
                }
                '&' | '~' | '-' if self.peek() == Some(c) => {
                    // Class set operations (`&&`, `~~`, `--`).
                    plain = false;
                }
                c => chars.push(c),
            }
            previous = (depth == 1).then_some(c);
            first = false;
        }
        if !plain || chars.is_empty() || chars.iter().any(|c| !c.is_ascii()) {
            return Some(Info::unknown());
        }
        let mut texts: Vec<String> = chars
            .iter()
            .map(|c| c.to_ascii_lowercase().to_string())
            .collect();
        texts.sort();
        texts.dedup();
        if texts.len() > MAX_CLASS {
            return Some(Info::unknown());
        }
        Some(Info::exact(texts))
    }
}

fn literal(c: char) -> Info {
    if c.is_ascii() {
        Info::exact(vec![c.to_ascii_lowercase().to_string()])
    } else {
        Info::unknown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pattern: &str) -> Option<Vec<String>> {
        required_texts(pattern, RegexFlags::default())
    }

    fn set(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn plain_runs_and_optional_prefixes() {
        assert_eq!(
            texts(r"^(\S*/)?setenforce\s+(0|permissive)\b"),
            set(&["setenforce"])
        );
        assert_eq!(
            texts(r"kernel[./]randomize_va_space\s*=\s*0\b"),
            set(&["kernel.randomize_va_space", "kernel/randomize_va_space"])
        );
        assert_eq!(texts(r"\s-O\s"), set(&["-o"]));
        assert_eq!(texts("ab*c"), set(&["a"]));
        assert_eq!(texts("ab+c"), set(&["ab"]));
    }

    #[test]
    fn alternations_become_alternatives() {
        assert_eq!(
            texts(r"\b(curl|wget)\s[^|]*\|\s*sh"),
            set(&["curl", "wget"])
        );
        assert_eq!(texts(r"-(W|R)\s?x"), set(&["-r", "-w"]));
        assert_eq!(texts("abc|de"), set(&["abc", "de"]));
        assert_eq!(
            texts("abc|.*"),
            None,
            "an unknown branch makes the whole unknown"
        );
    }

    #[test]
    fn unknown_constructs_give_nothing() {
        assert_eq!(texts(r"(?i)abc"), None);
        assert_eq!(texts(r"(?x)a b c"), None);
        assert_eq!(texts(r"(.){200,}"), None);
        assert_eq!(texts(r"[^/]{100,}$"), None);
        assert_eq!(texts(r"\x41\u0042\p{L}"), None);
        assert_eq!(
            required_texts(
                "abc",
                RegexFlags {
                    case_insensitive: true,
                    ..Default::default()
                }
            ),
            None
        );
    }

    #[test]
    fn classes_escapes_and_repetitions() {
        assert_eq!(texts(r"/etc/rc[0-6S]\.d/").map(|t| t.len()), Some(8));
        assert_eq!(texts(r"/etc/rc[0-9a-z]\.d/"), set(&["/etc/rc"]));
        assert_eq!(texts(r"a[bc]d"), set(&["abd", "acd"]));
        assert_eq!(texts(r"a[]b]c"), set(&["a]c", "abc"]));
        assert_eq!(texts(r"x{2}yz"), set(&["xyz"]));
        assert_eq!(
            texts(r"(?:\s-t\s*1\b|\s--target[= ]1\b)"),
            set(&["--target 1", "--target=1", "-t"])
        );
    }

    proptest::proptest! {
        /// Soundness: whenever the regex matches a value, the lowercase value contains one of
        /// the texts.
        #[test]
        fn every_match_contains_a_text(
            pattern in r"([abAB.|*+?^$-]|\[[ab^-]{1,3}\]|\((\?:)?|\)|\\[sbd.]|\{[12](,[23]?)?\}){1,10}",
            value in "[abAB .-]{0,12}",
        ) {
            let Ok(re) = regex::Regex::new(&pattern) else { return Ok(()) };
            if let (Some(texts), true) = (texts(&pattern), re.is_match(&value)) {
                let lower = value.to_lowercase();
                proptest::prop_assert!(
                    texts.iter().any(|t| lower.contains(t.as_str())),
                    "{:?} matches {:?} without any of {:?}", pattern, value, texts
                );
            }
        }
    }
}
