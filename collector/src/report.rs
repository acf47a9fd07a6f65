//! Errors as one line for logs and the terminal.

/// `error` and its causes on one line, skipping causes the line already quotes (many errors
/// repeat their source's message).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_follow_the_error_unless_it_already_quotes_them() {
        let io = std::io::Error::other("disk full");
        let quoted = anyhow::Error::new(io).context("writing x: disk full");
        assert_eq!(error_chain(quoted.as_ref()), "writing x: disk full");
        let io = std::io::Error::other("disk full");
        let plain = anyhow::Error::new(io)
            .context("writing x")
            .context("saving");
        assert_eq!(error_chain(plain.as_ref()), "saving: writing x: disk full");
    }
}
