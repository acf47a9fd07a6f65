//! Keeping sink secrets inside the sink. A sink URL may carry a token in its path or query (a
//! Slack or Teams webhook URL is one), other options are tokens outright; none of them may reach
//! a log line, an error stored in the outbox or dead letters, the CLI or another sink's alert.
//! Sinks are shown by name, their address as scheme, host and port only ([`url`]), and every
//! message a delivery produces passes [`Secrets::scrub`] first.

use std::sync::Arc;

/// What stands in for a secret in a message.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not searched for in messages: they would match ordinary words.
const MIN_SCRUBBED: usize = 4;

/// A URL as it may be shown: `scheme://host[:port]/…`, its path, query, fragment and any user
/// or password left out.
pub fn url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    shown.push_str(if bare { "/" } else { "/…" });
    shown
}

/// [`url`] of URL text, or `[redacted]` when it does not parse.
pub fn url_text(text: &str) -> String {
    reqwest::Url::parse(text).map_or_else(|_| REDACTED.to_owned(), |u| url(&u))
}

/// The resolved secrets of one sink (every option its kind reads with `Check::secret`), and for
/// a secret URL its path, query, query values and password too (a receiver or proxy may quote them alone).
#[derive(Clone, Default)]
pub struct Secrets(Arc<[String]>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// The secrets `values`, with the secret parts of those that are URLs.
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut all: Vec<String> = Vec::new();
        for value in values {
            if let Ok(parsed) = reqwest::Url::parse(&value) {
                all.push(parsed.to_string());
                all.push(parsed.path().to_owned());
                all.extend(parsed.query().map(str::to_owned));
                all.extend(parsed.password().map(str::to_owned));
                all.extend(parsed.query_pairs().map(|(_, v)| v.into_owned()));
            }
            all.push(value);
        }
        all.retain(|s| s.chars().count() >= MIN_SCRUBBED);
        // Longest first, so a secret that contains another is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Secrets(all.into())
    }

    /// `text` with every occurrence of a secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in self.0.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_scheme_host_and_port_only() {
        let parse = |s| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            url(&parse("https://hooks.slack.com/services/T0/B0/XXXX")),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            url(&parse("http://user:pw@127.0.0.1:8080/?token=abc")),
            "http://127.0.0.1:8080/…"
        );
        assert_eq!(
            url(&parse("https://events.pagerduty.com/")),
            "https://events.pagerduty.com/"
        );
        assert_eq!(url_text("not a url secret"), REDACTED);
    }

    #[test]
    fn every_secret_part_of_a_url_is_scrubbed() {
        let secrets = Secrets::new([
            "https://hooks.slack.com/services/T0SECRET/B0SECRET/XOXBSECRET?sig=QUERYSECRET"
                .to_owned(),
            "tok-12345".to_owned(),
            "ab".to_owned(),
        ]);
        let scrubbed = secrets.scrub(
            "POST https://hooks.slack.com/services/T0SECRET/B0SECRET/XOXBSECRET?sig=QUERYSECRET \
             said: unknown webhook /services/T0SECRET/B0SECRET/XOXBSECRET (sig QUERYSECRET), \
             token tok-12345, ab",
        );
        for secret in [
            "T0SECRET",
            "B0SECRET",
            "XOXBSECRET",
            "QUERYSECRET",
            "tok-12345",
        ] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert!(scrubbed.ends_with("[redacted], ab"), "{scrubbed}");
    }
}
