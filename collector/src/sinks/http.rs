//! What the HTTP sinks share when they send: one rule for which responses are delivered,
//! retryable or permanent failures (their configuration and client: [`super::endpoint`]).

use std::time::{Duration, SystemTime};

use reqwest::{RequestBuilder, Response, StatusCode};

use super::DeliveryError;
use crate::alert::render::truncate;

/// Longest response body quoted in an error.
const BODY_QUOTE: usize = 200;

/// Sends the request; 2xx is delivered (the body is returned), 408, 429 and 5xx are retryable
/// (honouring `Retry-After`), other statuses are permanent; transport errors are retryable.
pub async fn send(request: RequestBuilder) -> Result<String, DeliveryError> {
    let response = request.send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        DeliveryError::retryable(format!("{what}: {}", crate::report::error_chain(&e)))
    })?;
    classify(response).await
}

async fn classify(response: Response) -> Result<String, DeliveryError> {
    let status = response.status();
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
