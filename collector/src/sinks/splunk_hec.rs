//! Splunk HTTP Event Collector.
//!
//! `POST <url>/services/collector/event` (the path is added when `url` is only the base) with
//! `Authorization: Splunk <token>` and `{"time", "host", "source": "kestrel", "sourcetype",
//! "index"?, "event": <alert>}`. HEC has no idempotency key on this endpoint; the alert uid is
//! `event.metadata.uid`, so searches can drop the rare duplicate of a retried request.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::endpoint::{Endpoint, Http, HttpKind};
use super::{http, Check, DeliveryError, Sink, SinkError, SinkSettings};
use crate::alert::Alert;

/// The HEC event endpoint path.
pub const EVENT_PATH: &str = "/services/collector/event";
/// Sourcetype when `sourcetype` is not set.
pub const DEFAULT_SOURCETYPE: &str = "kestrel:alert";

/// `kind = "splunk_hec"`: the endpoint keys and its own; `url` (the HEC base URL or the event
/// endpoint) and `token` are required.
pub type Options = Http<Keys>;

/// `kind = "splunk_hec"`: its own keys besides the endpoint's.
#[derive(Deserialize)]
pub struct Keys {
    /// HEC token: literal, `env:NAME` or `file:PATH`. Required.
    token: Option<String>,
    /// Target index. Default: the token's default index.
    index: Option<String>,
    /// Sourcetype. Default [`DEFAULT_SOURCETYPE`].
    sourcetype: Option<String>,
}

impl HttpKind for Keys {
    fn check(&mut self, endpoint: &Endpoint, check: &mut Check) {
        check.required("url", &endpoint.url);
        check.required_secret("token", &mut self.token);
    }

    fn build(
        &self,
        endpoint: &Endpoint,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, SinkError> {
        let mut url = endpoint.url(settings, "")?;
        if !url.path().starts_with("/services/collector") {
            let base = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base}{EVENT_PATH}"));
        }
        Ok(Arc::new(SplunkHecSink {
            name: settings.name.clone(),
            target: endpoint.target(settings, url)?,
            token: self.token.clone().unwrap_or_default(),
            index: self.index.clone(),
            sourcetype: self
                .sourcetype
                .clone()
                .unwrap_or_else(|| DEFAULT_SOURCETYPE.into()),
        }))
    }
}

/// A Splunk HEC endpoint.
pub struct SplunkHecSink {
    name: String,
    target: http::Target,
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
            .target
            .post()
            .header("authorization", format!("Splunk {}", self.token))
            .json(&self.envelope(alert));
        self.target.send(request).map(|r| r.map(drop)).boxed()
    }
}
