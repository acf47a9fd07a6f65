//! Splunk HTTP Event Collector.
//!
//! `POST <url>/services/collector/event` (the path is added when `url` is only the base) with
//! `Authorization: Splunk <token>` and `{"time", "host", "source": "kestrel", "sourcetype",
//! "index"?, "event": <alert>}`. HEC has no idempotency key on this endpoint; the alert uid is
//! `event.metadata.uid`, so searches can drop the rare duplicate of a retried request.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;

use super::{http, no_checks, DeliveryError, Kind, Sink, SinkError};
use crate::alert::Alert;
use crate::sinks::SinkSettings;

/// The HEC event endpoint path.
pub const EVENT_PATH: &str = "/services/collector/event";
/// Sourcetype when `sourcetype` is not set.
pub const DEFAULT_SOURCETYPE: &str = "kestrel:alert";

/// `kind = "splunk_hec"`.
pub const KIND: Kind = Kind {
    name: "splunk_hec",
    required: &["url", "token"],
    optional: &["index", "sourcetype", "timeout", "ca_file"],
    check: no_checks,
    build,
};

fn build(settings: &SinkSettings) -> Result<Arc<dyn Sink>, SinkError> {
    let mut url = http::url(settings)?;
    if !url.path().starts_with("/services/collector") {
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{EVENT_PATH}"));
    }
    Ok(Arc::new(SplunkHecSink {
        name: settings.name.clone(),
        url,
        client: http::client(settings)?,
        token: settings.raw.token.clone().unwrap_or_default(),
        index: settings.raw.index.clone(),
        sourcetype: settings
            .raw
            .sourcetype
            .clone()
            .unwrap_or_else(|| DEFAULT_SOURCETYPE.into()),
    }))
}

/// A Splunk HEC endpoint.
pub struct SplunkHecSink {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    token: String,
    index: Option<String>,
    sourcetype: String,
}

impl SplunkHecSink {
    /// The HEC event envelope for an alert.
    pub fn envelope(&self, alert: &Alert) -> serde_json::Value {
        let mut envelope = json!({
            "time": alert.time_unix_ns as f64 / 1e9,
            "host": alert.host,
            "source": "kestrel",
            "sourcetype": self.sourcetype,
            "event": alert,
        });
        if let Some(index) = &self.index {
            envelope["index"] = json!(index);
        }
        envelope
    }
}

impl Sink for SplunkHecSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        let request = self
            .client
            .post(self.url.clone())
            .header("authorization", format!("Splunk {}", self.token))
            .json(&self.envelope(alert));
        http::send(request).map(|r| r.map(drop)).boxed()
    }
}
