//! Generic webhook signed per the Standard Webhooks specification (standardwebhooks.com).
//!
//! `POST url` with body `{"type": "alert.created", "timestamp": RFC 3339, "data": <alert>}` and
//! the headers `webhook-id` (`msg_` + the alert uid: the idempotency key, identical on every
//! retry and replay), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 over `id.timestamp.body`, keyed with the
//! base64-decoded part of the `whsec_` secret). Receivers verify the signature, reject stale
//! timestamps and drop repeated `webhook-id`s.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::future::BoxFuture;
use futures::FutureExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::endpoint::{Endpoint, Http, HttpKind};
use super::{http, Check, DeliveryError, Sink, SinkError, SinkSettings};
use crate::alert::Alert;

/// `kind = "webhook"`: the endpoint keys and its own; `url` and `secret` are required.
pub type Options = Http<Keys>;

/// `kind = "webhook"`: its own keys besides the endpoint's.
#[derive(Deserialize)]
pub struct Keys {
    /// Signing secret ([`SECRET_PREFIX`] + base64): literal, `env:NAME` or `file:PATH`. Required.
    secret: Option<String>,
}

impl HttpKind for Keys {
    fn check(&mut self, endpoint: &Endpoint, check: &mut Check) {
        check.required("url", &endpoint.url);
        check.required_secret("secret", &mut self.secret);
        if let Some(Err(problem)) = self.secret.as_deref().map(decode_secret) {
            check.problem(format!("`secret`: {problem}"));
        }
    }

    fn build(
        &self,
        endpoint: &Endpoint,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, SinkError> {
        let key = decode_secret(self.secret.as_deref().unwrap_or_default())
            .map_err(|message| settings.error(message))?;
        Ok(Arc::new(WebhookSink {
            name: settings.name.clone(),
            target: endpoint.target(settings, endpoint.url(settings, "")?)?,
            key,
        }))
    }
}

/// Prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of a `whsec_…` secret.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("must start with {SECRET_PREFIX:?} followed by base64"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|e| format!("the part after {SECRET_PREFIX:?} is not base64 ({e})"))?;
    if key.len() < 16 {
        return Err(format!(
            "the key is {} bytes; use at least 16 (24 to 64 recommended)",
            key.len()
        ));
    }
    Ok(key)
}

/// `webhook-signature` value for one message: `v1,` + base64(HMAC-SHA256(key, id.ts.body)).
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A Standard Webhooks sink.
pub struct WebhookSink {
    name: String,
    target: http::Target,
    key: Vec<u8>,
}

impl WebhookSink {
    async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "type": if alert.is_system() { "alert.system" } else { "alert.created" },
            "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "data": alert,
        }))
        .map_err(|e| DeliveryError::Permanent {
            message: format!("serializing the alert: {e}"),
        })?;
        let id = format!("msg_{}", alert.uid());
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = sign(&self.key, &id, timestamp, &body);
        let request = self
            .target
            .post()
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        self.target.send(request).await.map(drop)
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        self.send(alert).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks reference libraries' test suite.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_without_the_prefix_or_base64_are_refused() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_err()
            .contains("whsec_"));
        assert!(decode_secret("whsec_not base64!")
            .unwrap_err()
            .contains("base64"));
    }
}
