//! `*` / `?` wildcard matching for suppression matchers.

/// True when `text` matches `pattern`: `*` any run of characters, `?` one character, the rest
/// literally (case-sensitive).
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(matches("/usr/bin/*", "/usr/bin/cat"));
        assert!(matches("*cat", "/usr/bin/cat"));
        assert!(matches("c?t", "cat"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(!matches("/usr/bin/*", "/bin/cat"));
        assert!(!matches("Cat", "cat"));
    }
}
