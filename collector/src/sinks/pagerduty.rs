//! PagerDuty Events API v2.
//!
//! `POST url` (default `https://events.pagerduty.com/v2/enqueue`) with a `trigger` event whose
//! `dedup_key` is the alert fingerprint: PagerDuty folds repeats into the open incident, which is
//! the idempotency key for retries and replays too.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::endpoint::{Endpoint, Http, HttpKind};
use super::{http, Check, DeliveryError, Sink, SinkError, SinkSettings};
use crate::alert::render::truncate;
use crate::alert::{Alert, Level};

/// The Events API v2 endpoint used when `url` is not set.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `kind = "pagerduty"`: the endpoint keys and its own; `routing_key` is required; `url` defaults
/// to [`DEFAULT_URL`].
pub type Options = Http<Keys>;

/// `kind = "pagerduty"`: its own keys besides the endpoint's.
#[derive(Deserialize)]
pub struct Keys {
    /// Integration (routing) key: literal, `env:NAME` or `file:PATH`. Required.
    routing_key: Option<String>,
}

impl HttpKind for Keys {
    fn check(&mut self, _: &Endpoint, check: &mut Check) {
        check.required_secret("routing_key", &mut self.routing_key);
    }

    fn build(
        &self,
        endpoint: &Endpoint,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(PagerDutySink {
            name: settings.name.clone(),
            target: endpoint.target(settings, endpoint.url(settings, DEFAULT_URL)?)?,
            routing_key: self.routing_key.clone().unwrap_or_default(),
        }))
    }
}

/// PagerDuty severity for a level.
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::High => "error",
        Level::Medium => "warning",
        Level::Low | Level::Informational => "info",
    }
}

/// The Events API v2 `trigger` event for an alert.
pub fn event(routing_key: &str, alert: &Alert) -> serde_json::Value {
    let subject = if alert.process.command_line.is_empty() {
        alert.group.clone().unwrap_or_default()
    } else {
        alert.process.command_line.clone()
    };
    let summary = format!(
        "[{}] {} on {}{}",
        alert.rule.level,
        alert.rule.title,
        alert.host,
        if subject.is_empty() {
            String::new()
        } else {
            format!(": {subject}")
        }
    );
    let class = alert
        .finding_info
        .attacks
        .first()
        .and_then(|a| a.tactic.as_ref())
        .map_or_else(|| alert.finding_info.types.join(","), |t| t.name.clone());
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint(),
        "client": "Kestrel",
        "payload": {
            "summary": truncate(&summary, 1024),
            "source": alert.host,
            "severity": severity(alert.level()),
            "timestamp": alert.finding_info.first_seen_time_dt,
            "component": alert.process.exe,
            "group": alert.rule.id,
            "class": class,
            "custom_details": {
                "rule": alert.rule,
                "process": alert.process,
                "ancestors": alert.ancestors,
                "container": alert.container,
                "attacks": alert.finding_info.attacks,
                "count": alert.count,
                "alert_uid": alert.uid(),
            },
        },
    })
}

/// A PagerDuty service integration.
pub struct PagerDutySink {
    name: String,
    target: http::Target,
    routing_key: String,
}

impl Sink for PagerDutySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        let request = self.target.post().json(&event(&self.routing_key, alert));
        self.target.send(request).map(|r| r.map(drop)).boxed()
    }
}
