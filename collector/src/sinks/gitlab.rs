//! GitLab's HTTP endpoint alert integration (Monitor > Alerts).
//!
//! `POST url` with `Authorization: Bearer <token>` and GitLab's generic alert payload:
//! `title`, `description`, `start_time`, `severity` (critical/high/medium/low/info),
//! `fingerprint`, `hosts`, `monitoring_tool`, `service`, plus Kestrel keys GitLab keeps as the
//! alert's payload. Idempotency: GitLab folds alerts with the same open `fingerprint` into one
//! (its count goes up); the alert uid is in `kestrel_alert_uid`.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::endpoint::{Endpoint, Http, HttpKind};
use super::{http, Check, DeliveryError, Sink, SinkError, SinkSettings};
use crate::alert::render;
use crate::alert::{Alert, Level};

/// `kind = "gitlab"`: the endpoint keys and its own; `url` and `token` are required.
pub type Options = Http<Keys>;

/// `kind = "gitlab"`: its own keys besides the endpoint's.
#[derive(Deserialize)]
pub struct Keys {
    /// Bearer token: literal, `env:NAME` or `file:PATH`. Required.
    token: Option<String>,
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
        Ok(Arc::new(GitlabSink {
            name: settings.name.clone(),
            target: endpoint.target(settings, endpoint.url(settings, "")?)?,
            token: self.token.clone().unwrap_or_default(),
        }))
    }
}

/// GitLab severity for a level.
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::High => "high",
        Level::Medium => "medium",
        Level::Low => "low",
        Level::Informational => "info",
    }
}

/// The GitLab alert payload of an alert.
pub fn payload(alert: &Alert) -> serde_json::Value {
    json!({
        "title": render::truncate(&format!("{} on {}", alert.rule.title, alert.host), 200),
        "description": render::description(alert),
        "start_time": alert.finding_info.first_seen_time_dt,
        "severity": severity(alert.level()),
        "fingerprint": alert.fingerprint(),
        "hosts": [alert.host],
        "monitoring_tool": "Kestrel",
        "service": "kestrel",
        "kestrel_alert_uid": alert.uid(),
        "rule": alert.rule,
        "process": alert.process,
        "ancestors": alert.ancestors,
        "container": alert.container,
        "count": alert.count,
    })
}

/// A GitLab alert endpoint.
pub struct GitlabSink {
    name: String,
    target: http::Target,
    token: String,
}

impl Sink for GitlabSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        let request = self
            .target
            .post()
            .bearer_auth(&self.token)
            .json(&payload(alert));
        self.target.send(request).map(|r| r.map(drop)).boxed()
    }
}
