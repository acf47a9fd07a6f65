//! Sigma string values: wildcard and escape parsing, the `windash` and anchoring transformations,
//! and compilation into a [`Matcher`] that tests one field value.

use std::net::IpAddr;

use memchr::memmem::Finder;
use regex::{Regex, RegexBuilder};

use crate::compile::regex_flags::RegexFlags;
use crate::fields::Value;
use crate::lowercase::{lowercase, lowercase_into};

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

/// A numeric comparison (`lt`, `lte`, `gt`, `gte`; equality for time parts without one).
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
    /// Field == value.
    Eq,
}

impl Compare {
    /// Applies the comparison `n OP bound`.
    pub(crate) fn holds(self, n: f64, bound: f64) -> bool {
        match self {
            Compare::Lt => n < bound,
            Compare::Lte => n <= bound,
            Compare::Gt => n > bound,
            Compare::Gte => n >= bound,
            Compare::Eq => n == bound,
        }
    }
}

/// A part of a time value, from the time modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimePart {
    /// `minute`: 0..=59.
    Minute,
    /// `hour`: 0..=23.
    Hour,
    /// `day`: day of the month, 1..=31.
    Day,
    /// `week`: ISO week, 1..=53.
    Week,
    /// `month`: 1..=12.
    Month,
    /// `year`.
    Year,
}

impl TimePart {
    /// This part of a `YYYY-MM-DD HH:MM:SS[.fff]` time, `None` when the text is not one.
    pub(crate) fn of(self, time: &str) -> Option<i64> {
        let b = time.as_bytes();
        let num =
            |range: std::ops::Range<usize>| -> Option<i64> { time.get(range)?.parse::<i64>().ok() };
        if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' {
            return None;
        }
        Some(match self {
            TimePart::Year => num(0..4)?,
            TimePart::Month => num(5..7)?,
            TimePart::Day => num(8..10)?,
            TimePart::Hour => num(11..13)?,
            TimePart::Minute => num(14..16)?,
            TimePart::Week => {
                let days = crate::calendar::days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
                let secs = u64::try_from(days).ok()?.checked_mul(86_400)?;
                i64::from(crate::calendar::utc_parts(secs.checked_mul(1_000_000_000)?).week)
            }
        })
    }
}

/// An IP network from the `cidr` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `v6::/n` (a bare address is a /32 or /128).
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not an IP network (a.b.c.d/n or v6::/n)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    /// True when `ip` is inside the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn contains(&self, ip: &str) -> bool {
        let Ok(ip) = ip.trim().parse::<IpAddr>() else {
            return false;
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A literal compared with the field value: the lowercase form (or the original with `cased`).
#[derive(Debug)]
pub(crate) struct Literal {
    text: String,
    cased: bool,
    finder: Finder<'static>,
}

impl Literal {
    fn new(text: String, cased: bool) -> Literal {
        let finder = Finder::new(text.as_bytes()).into_owned();
        Literal {
            text,
            cased,
            finder,
        }
    }

    fn hay<'v>(&self, value: Value<'v>) -> &'v str {
        if self.cased {
            value.raw
        } else {
            value.lower
        }
    }
}

/// Tests one field value. Built once at rule load; matching allocates nothing.
#[derive(Debug)]
pub(crate) enum Matcher {
    /// Any present value (`*`).
    Any,
    /// Equal to the literal.
    Exact(Literal),
    /// Starts with the literal.
    Prefix(Literal),
    /// Ends with the literal.
    Suffix(Literal),
    /// Contains the literal.
    Contains(Literal),
    /// A wildcard pattern, translated to an anchored regex over the lowercase value (or the
    /// original value with `cased`).
    Glob {
        /// The translated pattern.
        regex: Regex,
        /// Match the original value rather than the lowercase one.
        cased: bool,
        /// The longest literal run of the pattern, lowercase, for the prefilter.
        longest: String,
    },
    /// An explicit `re` value, tested on the original value.
    Regex {
        /// The compiled pattern.
        regex: Regex,
        /// Lowercase texts of which every match contains one, for the prefilter.
        texts: Option<Vec<String>>,
    },
    /// A numeric comparison; non-numeric field values never match.
    Compare(Compare, f64),
    /// A comparison on a part of a time value.
    Time(TimePart, Compare, f64),
    /// An IP network (`cidr`).
    Cidr(Cidr),
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
            return Ok(Matcher::Glob {
                regex: glob_regex(toks, cased)?,
                cased,
                longest: longest_run(toks),
            });
        };
        let literal = Literal::new(literal, cased);
        Ok(match (lead, trail) {
            (false, false) => Matcher::Exact(literal),
            (false, true) => Matcher::Prefix(literal),
            (true, false) => Matcher::Suffix(literal),
            (true, true) => Matcher::Contains(literal),
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
        .map(|regex| Matcher::Regex {
            regex,
            texts: crate::compile::regex_literals::required_texts(pattern, flags),
        })
    }

    /// True when `value` satisfies this matcher.
    pub(crate) fn matches(&self, value: Value<'_>) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Exact(l) => l.hay(value) == l.text,
            Matcher::Prefix(l) => l.hay(value).starts_with(l.text.as_str()),
            Matcher::Suffix(l) => l.hay(value).ends_with(l.text.as_str()),
            Matcher::Contains(l) => l.finder.find(l.hay(value).as_bytes()).is_some(),
            Matcher::Glob { regex, cased, .. } => {
                regex.is_match(if *cased { value.raw } else { value.lower })
            }
            Matcher::Regex { regex, .. } => regex.is_match(value.raw),
            Matcher::Compare(op, bound) => value
                .raw
                .trim()
                .parse::<f64>()
                .is_ok_and(|n| op.holds(n, *bound)),
            Matcher::Time(part, op, bound) => part
                .of(value.raw)
                .is_some_and(|n| op.holds(n as f64, *bound)),
            Matcher::Cidr(cidr) => cidr.contains(value.raw),
        }
    }

    /// Lowercase ASCII texts of which every value this matcher accepts contains one (in its
    /// lowercase form), for the literal prefilter; `None` when there are no such texts.
    pub(crate) fn required_texts(&self) -> Option<Vec<String>> {
        let text = match self {
            Matcher::Exact(l) | Matcher::Prefix(l) | Matcher::Suffix(l) | Matcher::Contains(l) => {
                longest_ascii_run(&l.text)
            }
            Matcher::Glob { longest, .. } => longest_ascii_run(longest),
            Matcher::Regex { texts, .. } => return texts.clone(),
            _ => return None,
        };
        let text = text.to_ascii_lowercase();
        (!text.is_empty()).then(|| vec![text])
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
    Some(if cased { text } else { lowercase(&text) })
}

/// The longest run of literal characters in a pattern, lowercase.
fn longest_run(toks: &[Tok]) -> String {
    let mut best = String::new();
    let mut current = String::new();
    for tok in toks {
        match tok {
            Tok::Char(c) => current.push(*c),
            _ => {
                if current.len() > best.len() {
                    best = std::mem::take(&mut current);
                }
                current.clear();
            }
        }
    }
    if current.len() > best.len() {
        best = current;
    }
    lowercase(&best)
}

/// The longest run of ASCII characters of `s` (non-ASCII characters may lowercase in ways a
/// byte search cannot follow).
fn longest_ascii_run(s: &str) -> &str {
    s.split(|c: char| !c.is_ascii())
        .max_by_key(|run| run.len())
        .unwrap_or_default()
}

/// Translates a wildcard pattern into an anchored regex over the whole value; without `cased`
/// the pattern is lowercased and matched against the lowercase value.
fn glob_regex(toks: &[Tok], cased: bool) -> Result<Regex, regex::Error> {
    let mut pattern = String::from(r"\A");
    let mut buf = [0u8; 4];
    let mut lower = String::new();
    for tok in toks {
        match tok {
            Tok::Char(c) if cased => pattern.push_str(&regex::escape(c.encode_utf8(&mut buf))),
            Tok::Char(c) => {
                lower.clear();
                lowercase_into(c.encode_utf8(&mut buf), &mut lower);
                pattern.push_str(&regex::escape(&lower));
            }
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
    build_regex(RegexBuilder::new(&pattern).dot_matches_new_line(true))
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
        assert!(matches!(m, Matcher::Exact(_)));
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
        assert!(matches!(m, Matcher::Glob { .. }));
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
        assert!(matches!(contains, Matcher::Contains(_)));
        assert!(matches(&contains, "cat /ETC/shadow > /dev/null"));
        assert!(!matches(&contains, "cat /etc/hosts"));
        let start = compile("/tmp/", Anchor::Start, false);
        assert!(matches!(start, Matcher::Prefix(_)));
        assert!(matches(&start, "/tmp/x"));
        assert!(!matches(&start, "/var/tmp/x"));
        let end = compile("/cat", Anchor::End, false);
        assert!(matches!(end, Matcher::Suffix(_)));
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

    /// Reference semantics of a Sigma wildcard pattern: `*` any run, `?` one character.
    fn reference(toks: &[Tok], value: &[char]) -> bool {
        match toks.split_first() {
            None => value.is_empty(),
            Some((Tok::Many, rest)) => (0..=value.len()).any(|i| reference(rest, &value[i..])),
            Some((Tok::One, rest)) => !value.is_empty() && reference(rest, &value[1..]),
            Some((Tok::Char(c), rest)) => value.first() == Some(c) && reference(rest, &value[1..]),
            Some((Tok::Dash, rest)) => {
                value.first().is_some_and(|c| WINDASH_CHARS.contains(c))
                    && reference(rest, &value[1..])
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn wildcard_matcher_agrees_with_the_reference(
            pattern in "[ab*?\\\\.]{0,8}",
            value in "[abAB*?.\\\\]{0,10}",
            anchor_with in 0u8..4,
            cased: bool,
        ) {
            let anchor_with = [Anchor::Whole, Anchor::Contains, Anchor::Start, Anchor::End][anchor_with as usize];
            let toks = anchor(parse(&pattern), anchor_with);
            let m = Matcher::from_tokens(&toks, cased).unwrap();
            let hay = if cased { value.clone() } else { value.to_lowercase() };
            let reference_toks: Vec<Tok> = toks
                .iter()
                .map(|t| match t {
                    Tok::Char(c) if !cased => Tok::Char(c.to_ascii_lowercase()),
                    t => *t,
                })
                .collect();
            let expected = reference(&reference_toks, &hay.chars().collect::<Vec<_>>());
            proptest::prop_assert_eq!(matches(&m, &value), expected, "pattern {:?} value {:?}", pattern, value);
        }

        #[test]
        fn prefilter_text_is_in_every_matching_value(
            pattern in "[ab*?]{0,8}",
            value in "[abAB]{0,10}",
            cased: bool,
        ) {
            let m = Matcher::from_tokens(&anchor(parse(&pattern), Anchor::Contains), cased).unwrap();
            if let (Some(texts), true) = (m.required_texts(), matches(&m, &value)) {
                proptest::prop_assert!(texts.iter().any(|t| value.to_lowercase().contains(t.as_str())), "{:?} {:?} {:?}", pattern, value, texts);
            }
        }
    }

    #[test]
    fn cidr_matches_v4_v6_and_mapped_addresses() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3"));
        assert!(net.contains("::ffff:10.1.2.3"));
        assert!(!net.contains("11.0.0.1"));
        assert!(!net.contains("not an ip"));
        let v6 = Cidr::parse("fe80::/10").unwrap();
        assert!(v6.contains("fe80::1"));
        assert!(!v6.contains("2001:db8::1"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.org/8").is_err());
    }

    #[test]
    fn time_parts_of_utc_time_values() {
        let t = "2023-11-14 22:13:20.123";
        assert_eq!(TimePart::Hour.of(t), Some(22));
        assert_eq!(TimePart::Minute.of(t), Some(13));
        assert_eq!(TimePart::Day.of(t), Some(14));
        assert_eq!(TimePart::Month.of(t), Some(11));
        assert_eq!(TimePart::Year.of(t), Some(2023));
        assert_eq!(TimePart::Week.of(t), Some(46));
        assert_eq!(TimePart::Hour.of("garbage"), None);
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
