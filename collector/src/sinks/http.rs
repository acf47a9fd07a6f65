//! What the HTTP sinks share when they send: where to ([`Target`]), and one rule for which
//! responses are delivered, retryable or permanent failures (their configuration and client:
//! [`super::endpoint`]). Failure messages name the endpoint by scheme and host only and never
//! quote the sink's secrets ([`super::redact`]).

use std::time::{Duration, SystemTime};

use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};

use super::redact::{self, Secrets};
use super::DeliveryError;
use crate::alert::render::truncate;

/// Longest response body quoted in an error.
const BODY_QUOTE: usize = 200;

/// Where an HTTP sink posts: its URL (a secret), its client, and the secrets its failure
/// messages must not show.
pub struct Target {
    url: Url,
    client: Client,
    secrets: Secrets,
}

impl Target {
    /// The target `url` reached with `client`; `secrets` are scrubbed from every message.
    pub fn new(url: Url, client: Client, secrets: Secrets) -> Target {
        Target {
            url,
            client,
            secrets,
        }
    }

    /// A POST to the URL.
    pub fn post(&self) -> RequestBuilder {
        self.client.post(self.url.clone())
    }

    /// Sends `request` (made by [`Target::post`]); see [`send`].
    pub async fn send(&self, request: RequestBuilder) -> Result<String, DeliveryError> {
        send(request, &self.secrets).await
    }
}

/// Sends the request; 2xx is delivered (the body is returned), 408, 429 and 5xx are retryable
/// (honouring `Retry-After`), a redirect not followed and other statuses are permanent;
/// transport errors are retryable. No message quotes `secrets` or the URL beyond its host.
pub async fn send(request: RequestBuilder, secrets: &Secrets) -> Result<String, DeliveryError> {
    let response = request.send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect to"
        } else if e.is_redirect() {
            "too many redirects from"
        } else {
            "request failed to"
        };
        let to = e.url().map(redact::url).unwrap_or_default();
        // reqwest's message quotes the whole URL: drop it, keep the causes.
        let cause = crate::report::error_chain(&e.without_url());
        DeliveryError::retryable(secrets.scrub(&format!("{what} {to}: {cause}")))
    })?;
    classify(response).await.map_err(|e| match e {
        DeliveryError::Retryable {
            message,
            retry_after,
        } => DeliveryError::Retryable {
            message: secrets.scrub(&message),
            retry_after,
        },
        DeliveryError::Permanent { message } => DeliveryError::Permanent {
            message: secrets.scrub(&message),
        },
    })
}

async fn classify(response: Response) -> Result<String, DeliveryError> {
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|location| response.url().join(location).ok())
            .map_or_else(|| "nowhere".to_owned(), |u| redact::url(&u));
        return Err(DeliveryError::Permanent {
            message: format!(
                "HTTP {status}: redirect to {to} not followed (set `follow_redirects = true` \
                 on the sink to follow it)"
            ),
        });
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    let message = format!("HTTP {status}: {}", truncate(body.trim(), BODY_QUOTE));
    if retryable(status) {
        Err(DeliveryError::Retryable {
            message,
            retry_after,
        })
    } else {
        Err(DeliveryError::Permanent { message })
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let parsed = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn throttling_timeouts_and_server_errors_are_retryable() {
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::REQUEST_TIMEOUT));
        assert!(!retryable(StatusCode::BAD_REQUEST));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
    }
}
