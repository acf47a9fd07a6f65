//! The Sigma condition language: `and`, `or`, `not`, parentheses, `1 of pattern*`,
//! `all of pattern*`, `1 of them`, `all of them`. Precedence, loosest first:
//! `or` < `and` < `not` < `x of` < parentheses.

/// A parsed condition over search identifiers, referenced by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// The search identifier with this index.
    Sel(usize),
    /// Negation.
    Not(Box<Expr>),
    /// All operands hold.
    And(Vec<Expr>),
    /// At least one operand holds.
    Or(Vec<Expr>),
}

impl Expr {
    /// Evaluates the condition, asking `sel` for each search identifier it reaches (short-circuit).
    pub(crate) fn eval(&self, sel: &impl Fn(usize) -> bool) -> bool {
        match self {
            Expr::Sel(i) => sel(*i),
            Expr::Not(e) => !e.eval(sel),
            Expr::And(es) => es.iter().all(|e| e.eval(sel)),
            Expr::Or(es) => es.iter().any(|e| e.eval(sel)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    And,
    Or,
    Not,
    Of,
    Them,
    All,
    One,
    Open,
    Close,
    Ident(&'a str),
}

/// Parses `text`, resolving identifiers against `names` (the detection's search identifiers).
/// Errors are human-readable reasons with the 1-based column.
pub(crate) fn parse(text: &str, names: &[String]) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("empty condition".into());
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        names,
        text_len: text.len(),
        depth: 0,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(expr),
        Some((col, tok)) => Err(format!("unexpected {} at column {col}", describe(tok))),
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token<'_>)>, String> {
    let mut tokens = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some(&(start, c)) = rest.peek() {
        let col = text[..start].chars().count() + 1;
        match c {
            c if c.is_whitespace() => {
                rest.next();
            }
            '(' | ')' => {
                rest.next();
                tokens.push((col, if c == '(' { Token::Open } else { Token::Close }));
            }
            '|' => {
                return Err(format!(
                    "aggregation expressions ('|' at column {col}) are not supported; \
                     use a correlation rule"
                ))
            }
            _ => {
                let mut end = start;
                while let Some(&(i, c)) = rest.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '|') {
                        break;
                    }
                    end = i + c.len_utf8();
                    rest.next();
                }
                let word = &text[start..end];
                let token = match word.to_ascii_lowercase().as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    "of" => Token::Of,
                    "them" => Token::Them,
                    "all" => Token::All,
                    "1" | "any" => Token::One,
                    _ => Token::Ident(word),
                };
                tokens.push((col, token));
            }
        }
    }
    Ok(tokens)
}

fn describe(tok: &Token<'_>) -> String {
    match tok {
        Token::And => "'and'".into(),
        Token::Or => "'or'".into(),
        Token::Not => "'not'".into(),
        Token::Of => "'of'".into(),
        Token::Them => "'them'".into(),
        Token::All => "'all'".into(),
        Token::One => "'1'".into(),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::Ident(s) => format!("identifier '{s}'"),
    }
}

/// Deepest nesting of parentheses and `not` accepted (the parser is recursive).
const MAX_DEPTH: usize = 64;

struct Parser<'t, 'n> {
    tokens: Vec<(usize, Token<'t>)>,
    pos: usize,
    names: &'n [String],
    text_len: usize,
    depth: usize,
}

impl<'t> Parser<'t, '_> {
    fn peek(&self) -> Option<&Token<'t>> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Result<(usize, Token<'t>), String> {
        let tok = self.tokens.get(self.pos).cloned().ok_or_else(|| {
            format!(
                "unexpected end of condition at column {}",
                self.text_len + 1
            )
        })?;
        self.pos += 1;
        Ok(tok)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut operands = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            operands.push(self.and()?);
        }
        Ok(flatten(operands, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut operands = vec![self.not()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            operands.push(self.not()?);
        }
        Ok(flatten(operands, Expr::And))
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            let inner = self.nested(Parser::not)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    /// Runs `parse` one nesting level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self, parse: fn(&mut Self) -> Result<Expr, String>) -> Result<Expr, String> {
        if self.depth >= MAX_DEPTH {
            let col = self
                .tokens
                .get(self.pos)
                .map_or(self.text_len + 1, |(c, _)| *c);
            return Err(format!(
                "nested more than {MAX_DEPTH} levels deep at column {col}"
            ));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let (col, tok) = self.next()?;
        match tok {
            Token::Open => {
                let inner = self.nested(Parser::or)?;
                match self.next()? {
                    (_, Token::Close) => Ok(inner),
                    (col, other) => Err(format!(
                        "expected ')' at column {col}, found {}",
                        describe(&other)
                    )),
                }
            }
            Token::One | Token::All => {
                let all = tok == Token::All;
                match self.next()? {
                    (_, Token::Of) => {}
                    (col, other) => {
                        return Err(format!(
                            "expected 'of' at column {col}, found {}",
                            describe(&other)
                        ))
                    }
                }
                let (col, target) = self.next()?;
                let selected: Vec<Expr> = match target {
                    Token::Them => self
                        .names
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| !n.starts_with('_'))
                        .map(|(i, _)| Expr::Sel(i))
                        .collect(),
                    Token::Ident(pattern) => self
                        .names
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| wildcard_match(pattern, n))
                        .map(|(i, _)| Expr::Sel(i))
                        .collect(),
                    other => {
                        return Err(format!(
                        "expected a search identifier pattern or 'them' at column {col}, found {}",
                        describe(&other)
                    ))
                    }
                };
                if selected.is_empty() {
                    return Err(format!(
                        "'{}' at column {col} matches no search identifier",
                        describe_target(&target)
                    ));
                }
                Ok(if all {
                    flatten(selected, Expr::And)
                } else {
                    flatten(selected, Expr::Or)
                })
            }
            Token::Ident(name) => self
                .names
                .iter()
                .position(|n| n == name)
                .map(Expr::Sel)
                .ok_or_else(|| format!("unknown search identifier '{name}' at column {col}")),
            other => Err(format!("unexpected {} at column {col}", describe(&other))),
        }
    }
}

fn describe_target(tok: &Token<'_>) -> String {
    match tok {
        Token::Ident(s) => (*s).to_string(),
        other => describe(other),
    }
}

fn flatten(mut operands: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if operands.len() == 1 {
        operands.remove(0)
    } else {
        make(operands)
    }
}

/// Matches a search-identifier pattern where `*` stands for any run of characters.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or_default();
    for piece in pieces {
        match remaining.find(piece) {
            Some(i) => remaining = &remaining[i + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn p(text: &str, list: &[&str]) -> Expr {
        parse(text, &names(list)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Evaluates `text` with the identifiers whose names are in `truthy` true.
    fn eval(text: &str, list: &[&str], truthy: &[&str]) -> bool {
        let n = names(list);
        let expr = parse(text, &n).unwrap();
        expr.eval(&|i| truthy.contains(&n[i].as_str()))
    }

    use Expr::*;

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            p("a or b and c", &["a", "b", "c"]),
            Or(vec![Sel(0), And(vec![Sel(1), Sel(2)])])
        );
        assert_eq!(
            p("a and b or c", &["a", "b", "c"]),
            Or(vec![And(vec![Sel(0), Sel(1)]), Sel(2)])
        );
        assert!(eval("a or b and c", &["a", "b", "c"], &["a"]));
        assert!(!eval("a and b or c", &["a", "b", "c"], &["a"]));
    }

    #[test]
    fn not_binds_tighter_than_and() {
        assert_eq!(
            p("not a and b", &["a", "b"]),
            And(vec![Not(Box::new(Sel(0))), Sel(1)])
        );
        assert!(eval("not a and b", &["a", "b"], &["b"]));
        assert!(!eval("not a and b", &["a", "b"], &["a", "b"]));
        assert!(!eval("not a and b", &["a", "b"], &[]));
    }

    #[test]
    fn parentheses_override_precedence() {
        assert_eq!(
            p("(a or b) and c", &["a", "b", "c"]),
            And(vec![Or(vec![Sel(0), Sel(1)]), Sel(2)])
        );
        assert!(!eval("(a or b) and c", &["a", "b", "c"], &["a"]));
        assert!(eval("not (a and b)", &["a", "b"], &["a"]));
        assert!(!eval("not (a and b)", &["a", "b"], &["a", "b"]));
    }

    #[test]
    fn one_of_pattern_is_an_or_of_matching_identifiers() {
        let list = ["selection_img", "selection_cli", "filter_main"];
        assert_eq!(p("1 of selection_*", &list), Or(vec![Sel(0), Sel(1)]));
        assert!(eval("1 of selection_*", &list, &["selection_cli"]));
        assert!(!eval("1 of selection_*", &list, &["filter_main"]));
    }

    #[test]
    fn all_of_pattern_is_an_and_of_matching_identifiers() {
        let list = ["selection_img", "selection_cli", "filter_main"];
        assert!(!eval("all of selection_*", &list, &["selection_cli"]));
        assert!(eval(
            "all of selection_*",
            &list,
            &["selection_cli", "selection_img"]
        ));
    }

    #[test]
    fn of_binds_tighter_than_not() {
        let list = ["sel", "filter_a", "filter_b"];
        assert_eq!(
            p("sel and not 1 of filter_*", &list),
            And(vec![Sel(0), Not(Box::new(Or(vec![Sel(1), Sel(2)])))])
        );
        assert!(eval("sel and not 1 of filter_*", &list, &["sel"]));
        assert!(!eval(
            "sel and not 1 of filter_*",
            &list,
            &["sel", "filter_b"]
        ));
    }

    #[test]
    fn them_covers_identifiers_without_leading_underscore() {
        let list = ["a", "b", "_helper"];
        assert_eq!(p("all of them", &list), And(vec![Sel(0), Sel(1)]));
        assert_eq!(p("1 of them", &list), Or(vec![Sel(0), Sel(1)]));
        assert!(eval("all of them", &list, &["a", "b"]));
        assert!(!eval("1 of them", &list, &["_helper"]));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            p("a AND NOT b", &["a", "b"]),
            And(vec![Sel(0), Not(Box::new(Sel(1)))])
        );
    }

    #[test]
    fn unknown_identifier_is_reported_with_column() {
        let err = parse("selection and filtr", &names(&["selection", "filter"])).unwrap_err();
        assert_eq!(err, "unknown search identifier 'filtr' at column 15");
    }

    #[test]
    fn pattern_matching_nothing_is_an_error() {
        let err = parse("1 of filter_*", &names(&["selection"])).unwrap_err();
        assert!(
            err.contains("filter_*") && err.contains("matches no search identifier"),
            "{err}"
        );
    }

    #[test]
    fn malformed_conditions_are_errors() {
        let list = names(&["a", "b"]);
        for bad in [
            "",
            "a and",
            "(a or b",
            "a b",
            "1 a",
            "all of",
            "a )",
            "not",
            "a or or b",
        ] {
            assert!(parse(bad, &list).is_err(), "{bad:?} should not parse");
        }
        let err = parse("a | count() > 5", &list).unwrap_err();
        assert!(err.contains("aggregation"), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let list = names(&["a"]);
        let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        let err = parse(&deep, &list).unwrap_err();
        assert!(err.contains("nested more than"), "{err}");
        let nots = format!("{}a", "not ".repeat(100_000));
        assert!(parse(&nots, &list).is_err());
        let ok = format!("{}a{}", "(".repeat(10), ")".repeat(10));
        assert_eq!(parse(&ok, &list), Ok(Expr::Sel(0)));
    }

    #[test]
    fn identifier_patterns_support_inner_wildcards() {
        assert!(wildcard_match("sel*", "selection"));
        assert!(wildcard_match("*_img", "selection_img"));
        assert!(wildcard_match("sel*_*img", "selection_cli_img"));
        assert!(!wildcard_match("sel*_img", "selection_cli"));
        assert!(!wildcard_match("selection", "selection2"));
        assert!(wildcard_match("a*a", "aa"));
        assert!(!wildcard_match("a*a", "a"));
    }
}
