//! Sigma string values: wildcard and escape parsing, the `windash` and anchoring transformations,
//! and compilation into a [`Matcher`] that tests one field value.

use regex::{Regex, RegexBuilder};

use super::fields::Value;

/// Compiled-program size limit for every regex (explicit `re` values and wildcard patterns).
/// Hostile or accidental blow-ups (`(a{1000}){1000}`) fail at load with a clear error instead of
/// consuming memory; matching with the `regex` crate is linear in the input either way.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Cache limit for the lazy DFA of each regex.
const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;

/// The dash-like characters `windash` makes interchangeable.
const WINDASH_CHARS: [char; 5] = ['-', '/', '–', '—', '―'];

/// One element of a parsed Sigma string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A literal character.
    Char(char),
    /// `*`: any run of characters, possibly empty.
    Many,
    /// `?`: exactly one character.
    One,
    /// A `windash` position: any of [`WINDASH_CHARS`].
    Dash,
}

/// Parses a Sigma string: `*` and `?` are wildcards; a backslash escapes `*`, `?` and itself and
/// is a literal backslash before anything else (so `\\` and `\` both mean one backslash).
pub(crate) fn parse(value: &str) -> Vec<Tok> {
    let mut toks = Vec::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => toks.push(Tok::Many),
            '?' => toks.push(Tok::One),
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    chars.next();
                    toks.push(Tok::Char(next));
                }
                _ => toks.push(Tok::Char('\\')),
            },
            c => toks.push(Tok::Char(c)),
        }
    }
    toks
}

/// The `windash` transformation: a `-` or `/` that starts a command-line flag (not preceded by a
/// word character, followed by one) matches any dash-like character. Same positions as pySigma's
/// `\B[-/]\b`.
pub(crate) fn windash(toks: &mut [Tok]) {
    let is_word =
        |t: Option<&Tok>| matches!(t, Some(Tok::Char(c)) if c.is_alphanumeric() || *c == '_');
    for i in 0..toks.len() {
        if matches!(toks[i], Tok::Char('-' | '/'))
            && !is_word(i.checked_sub(1).and_then(|p| toks.get(p)))
            && is_word(toks.get(i + 1))
        {
            toks[i] = Tok::Dash;
        }
    }
}

/// Where a value must occur in the field, from the `contains` / `startswith` / `endswith` modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Anchor {
    /// The whole field (plain Sigma value).
    #[default]
    Whole,
    /// Anywhere (`contains`).
    Contains,
    /// At the start (`startswith`).
    Start,
    /// At the end (`endswith`).
    End,
}

/// Applies an anchor by adding `*` wildcards where the anchor leaves the value open.
pub(crate) fn anchor(mut toks: Vec<Tok>, anchor: Anchor) -> Vec<Tok> {
    let open_start = matches!(anchor, Anchor::Contains | Anchor::End);
    let open_end = matches!(anchor, Anchor::Contains | Anchor::Start);
    if open_end && toks.last() != Some(&Tok::Many) {
        toks.push(Tok::Many);
    }
    if open_start && toks.first() != Some(&Tok::Many) {
        toks.insert(0, Tok::Many);
    }
    toks
}

/// A numeric comparison (`lt`, `lte`, `gt`, `gte`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    /// Field < value.
    Lt,
    /// Field <= value.
    Lte,
    /// Field > value.
    Gt,
    /// Field >= value.
    Gte,
}

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

/// Tests one field value. Built once at rule load; matching allocates nothing.
#[derive(Debug)]
pub(crate) enum Matcher {
    /// Any present value (`*`).
    Any,
    /// Equal to the literal.
    Exact { text: String, cased: bool },
    /// Starts with the literal.
    Prefix { text: String, cased: bool },
    /// Ends with the literal.
    Suffix { text: String, cased: bool },
    /// Contains the literal.
    Contains { text: String, cased: bool },
    /// A regex tested on the original value (explicit `re`, or a wildcard pattern translated).
    Regex(Regex),
    /// A numeric comparison; non-numeric field values never match.
    Compare(Compare, f64),
}

impl Matcher {
    /// Compiles parsed tokens into the cheapest matcher that implements them.
    pub(crate) fn from_tokens(toks: &[Tok], cased: bool) -> Result<Matcher, regex::Error> {
        let lead = toks.first() == Some(&Tok::Many);
        let trail = toks.len() > 1 && toks.last() == Some(&Tok::Many);
        let inner = &toks[usize::from(lead)..toks.len() - usize::from(trail)];
        if inner.iter().all(|t| *t == Tok::Many) && (lead || trail || !inner.is_empty()) {
            return Ok(Matcher::Any);
        }
        let Some(literal) = literal(inner, cased) else {
            return glob_regex(toks, cased).map(Matcher::Regex);
        };
        Ok(match (lead, trail) {
            (false, false) => Matcher::Exact {
                text: literal,
                cased,
            },
            (false, true) => Matcher::Prefix {
                text: literal,
                cased,
            },
            (true, false) => Matcher::Suffix {
                text: literal,
                cased,
            },
            (true, true) => Matcher::Contains {
                text: literal,
                cased,
            },
        })
    }

    /// Compiles an explicit `re` value.
    pub(crate) fn regex(pattern: &str, flags: RegexFlags) -> Result<Matcher, regex::Error> {
        build_regex(
            RegexBuilder::new(pattern)
                .case_insensitive(flags.case_insensitive)
                .multi_line(flags.multi_line)
                .dot_matches_new_line(flags.dot_all),
        )
        .map(Matcher::Regex)
    }

    /// True when `value` satisfies this matcher.
    pub(crate) fn matches(&self, value: Value<'_>) -> bool {
        let hay = |cased: bool| if cased { value.raw } else { value.lower };
        match self {
            Matcher::Any => true,
            Matcher::Exact { text, cased } => hay(*cased) == text,
            Matcher::Prefix { text, cased } => hay(*cased).starts_with(text.as_str()),
            Matcher::Suffix { text, cased } => hay(*cased).ends_with(text.as_str()),
            Matcher::Contains { text, cased } => hay(*cased).contains(text.as_str()),
            Matcher::Regex(re) => re.is_match(value.raw),
            Matcher::Compare(op, bound) => {
                value.raw.trim().parse::<f64>().is_ok_and(|n| match op {
                    Compare::Lt => n < *bound,
                    Compare::Lte => n <= *bound,
                    Compare::Gt => n > *bound,
                    Compare::Gte => n >= *bound,
                })
            }
        }
    }
}

/// The literal text of `toks` (lowercased unless `cased`), or `None` if it has wildcards.
fn literal(toks: &[Tok], cased: bool) -> Option<String> {
    let text: String = toks
        .iter()
        .map(|t| match t {
            Tok::Char(c) => Some(*c),
            _ => None,
        })
        .collect::<Option<_>>()?;
    Some(if cased { text } else { text.to_lowercase() })
}

/// Translates a wildcard pattern into an anchored regex over the whole value.
fn glob_regex(toks: &[Tok], cased: bool) -> Result<Regex, regex::Error> {
    let mut pattern = String::from(r"\A");
    let mut buf = [0u8; 4];
    for tok in toks {
        match tok {
            Tok::Char(c) => pattern.push_str(&regex::escape(c.encode_utf8(&mut buf))),
            Tok::Many => pattern.push_str(".*"),
            Tok::One => pattern.push('.'),
            Tok::Dash => {
                pattern.push('[');
                for c in WINDASH_CHARS {
                    pattern.push_str(&regex::escape(c.encode_utf8(&mut buf)));
                }
                pattern.push(']');
            }
        }
    }
    pattern.push_str(r"\z");
    build_regex(
        RegexBuilder::new(&pattern)
            .case_insensitive(!cased)
            .dot_matches_new_line(true),
    )
}

fn build_regex(builder: &mut RegexBuilder) -> Result<Regex, regex::Error> {
    builder
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(raw: &str) -> (String, String) {
        (raw.to_string(), raw.to_lowercase())
    }

    fn matches(m: &Matcher, raw: &str) -> bool {
        let (raw, lower) = value(raw);
        m.matches(Value {
            raw: &raw,
            lower: &lower,
        })
    }

    fn compile(sigma: &str, anchor_with: Anchor, cased: bool) -> Matcher {
        Matcher::from_tokens(&anchor(parse(sigma), anchor_with), cased).unwrap()
    }

    #[test]
    fn escapes_follow_the_sigma_backslash_rules() {
        use Tok::*;
        assert_eq!(parse(r"a\*b"), vec![Char('a'), Char('*'), Char('b')]);
        assert_eq!(parse(r"a\?"), vec![Char('a'), Char('?')]);
        assert_eq!(parse(r"C:\Windows"), parse(r"C:\\Windows"));
        assert_eq!(parse(r"\\*"), vec![Char('\\'), Many]);
        assert_eq!(parse(r"\\\*"), vec![Char('\\'), Char('*')]);
        assert_eq!(parse(r"\\\\"), vec![Char('\\'), Char('\\')]);
        assert_eq!(parse(r"\\\a"), vec![Char('\\'), Char('\\'), Char('a')]);
        assert_eq!(
            parse("end\\"),
            vec![Char('e'), Char('n'), Char('d'), Char('\\')]
        );
    }

    #[test]
    fn plain_values_match_whole_field_case_insensitively() {
        let m = compile("/usr/bin/Cat", Anchor::Whole, false);
        assert!(matches!(m, Matcher::Exact { .. }));
        assert!(matches(&m, "/USR/bin/cat"));
        assert!(!matches(&m, "/usr/bin/cat2"));
        assert!(!matches(&m, "x/usr/bin/cat"));
    }

    #[test]
    fn cased_values_match_exact_case_only() {
        let m = compile("-D", Anchor::Contains, true);
        assert!(matches(&m, "ssh -D 1080"));
        assert!(!matches(&m, "ssh -d 1080"));
        let glob = compile("*-D?x*", Anchor::Whole, true);
        assert!(matches(&glob, "a -D1x"));
        assert!(!matches(&glob, "a -d1x"));
    }

    #[test]
    fn wildcards_star_and_question_mark() {
        let m = compile("/bin/?ash*-i", Anchor::Whole, false);
        assert!(matches!(m, Matcher::Regex(_)));
        assert!(matches(&m, "/bin/bash -i"));
        assert!(matches(&m, "/BIN/dash --x -i"));
        assert!(!matches(&m, "/bin/ash -i"), "? needs exactly one character");
        assert!(
            !matches(&m, "/bin/bash -i x"),
            "wildcard patterns are anchored"
        );
        let star = compile("*", Anchor::Whole, false);
        assert!(matches!(star, Matcher::Any));
        assert!(matches(&star, ""));
    }

    #[test]
    fn escaped_wildcards_are_literals() {
        let m = compile(r"what\?", Anchor::Whole, false);
        assert!(matches(&m, "what?"));
        assert!(!matches(&m, "whatx"));
        let m = compile(r"a\*b", Anchor::Contains, false);
        assert!(matches(&m, "xa*by"));
        assert!(!matches(&m, "xaZZby"));
        let m = compile(r"C:\\*", Anchor::Whole, false);
        assert!(matches(&m, r"C:\anything"));
        assert!(!matches(&m, "C:/anything"));
    }

    #[test]
    fn regex_metacharacters_in_plain_values_are_literal() {
        let m = compile("a.b*(c)", Anchor::Whole, false);
        assert!(matches(&m, "a.bXX(c)"));
        assert!(!matches(&m, "aXbXX(c)"));
    }

    #[test]
    fn anchors_select_substring_prefix_suffix() {
        let contains = compile("/etc/shadow", Anchor::Contains, false);
        assert!(matches!(contains, Matcher::Contains { .. }));
        assert!(matches(&contains, "cat /ETC/shadow > /dev/null"));
        assert!(!matches(&contains, "cat /etc/hosts"));
        let start = compile("/tmp/", Anchor::Start, false);
        assert!(matches!(start, Matcher::Prefix { .. }));
        assert!(matches(&start, "/tmp/x"));
        assert!(!matches(&start, "/var/tmp/x"));
        let end = compile("/cat", Anchor::End, false);
        assert!(matches!(end, Matcher::Suffix { .. }));
        assert!(matches(&end, "/usr/bin/cat"));
        assert!(!matches(&end, "/usr/bin/concat2"));
        assert!(!matches(&end, "/usr/bin/cat2"));
    }

    #[test]
    fn windash_matches_every_dash_variant_of_a_flag() {
        let mut toks = parse(" -e ");
        windash(&mut toks);
        let m = Matcher::from_tokens(&anchor(toks, Anchor::Contains), false).unwrap();
        for cmd in [
            "nc -e /bin/sh",
            "nc /e /bin/sh",
            "nc –e sh",
            "nc —e sh",
            "nc ―e sh",
        ] {
            assert!(matches(&m, cmd), "{cmd}");
        }
        assert!(!matches(&m, "nc +e /bin/sh"));
        let mut toks = parse("a-b");
        windash(&mut toks);
        assert!(
            !toks.contains(&Tok::Dash),
            "a dash inside a word is not a flag"
        );
    }

    #[test]
    fn explicit_regex_is_case_sensitive_unless_i() {
        let m = Matcher::regex(r"\s-[FTd]\s", RegexFlags::default()).unwrap();
        assert!(matches(&m, "ssh -T host"));
        assert!(!matches(&m, "ssh -t host"));
        let i = RegexFlags {
            case_insensitive: true,
            ..Default::default()
        };
        assert!(matches(
            &Matcher::regex(r"\s-[FTd]\s", i).unwrap(),
            "ssh -t host"
        ));
    }

    #[test]
    fn regex_multiline_and_dotall_flags() {
        let plain = Matcher::regex("^b.c$", RegexFlags::default()).unwrap();
        assert!(!matches(&plain, "a\nb\nc"));
        let m = RegexFlags {
            multi_line: true,
            ..Default::default()
        };
        assert!(matches(&Matcher::regex("^b$", m).unwrap(), "a\nb\nc"));
        let s = RegexFlags {
            dot_all: true,
            ..Default::default()
        };
        assert!(matches(&Matcher::regex("b.c", s).unwrap(), "b\nc"));
        assert!(!matches(
            &Matcher::regex("b.c", RegexFlags::default()).unwrap(),
            "b\nc"
        ));
    }

    #[test]
    fn oversized_regex_is_an_error_not_a_hang() {
        let err = Matcher::regex("(a{1000}){1000}", RegexFlags::default()).unwrap_err();
        assert!(matches!(err, regex::Error::CompiledTooBig(_)), "{err}");
    }

    #[test]
    fn sigmahq_long_commandline_regex_fits_the_size_limit() {
        assert!(Matcher::regex("(.){200,}", RegexFlags::default()).is_ok());
    }

    #[test]
    fn numeric_comparisons() {
        let gt = Matcher::Compare(Compare::Gt, 1000.0);
        assert!(matches(&gt, "1001"));
        assert!(!matches(&gt, "1000"));
        assert!(!matches(&gt, "abc"));
        assert!(matches(&Matcher::Compare(Compare::Gte, 1000.0), "1000"));
        assert!(matches(&Matcher::Compare(Compare::Lt, 2.0), "1"));
        assert!(!matches(&Matcher::Compare(Compare::Lte, 2.0), "3"));
    }
}
