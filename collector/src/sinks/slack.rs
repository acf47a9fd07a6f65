//! Slack incoming webhook: a Block Kit message a responder can read at a glance (severity and
//! title, host and user, the process tree, ATT&CK, fingerprint). Slack answers 429 with
//! `Retry-After`, which the retry layer honours. Slack has no idempotency key: a request that
//! timed out after Slack posted it is posted again on retry.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::endpoint::{Endpoint, Http, HttpKind};
use super::{http, Check, DeliveryError, Sink, SinkError, SinkSettings};
use crate::alert::render;
use crate::alert::render::truncate;
use crate::alert::{Alert, Level};

/// `kind = "slack"`: the endpoint keys and its own; `url` (the webhook URL, a secret) is required.
pub type Options = Http<Keys>;

/// `kind = "slack"`: its own keys besides the endpoint's.
#[derive(Deserialize)]
pub struct Keys {}

impl HttpKind for Keys {
    fn check(&mut self, endpoint: &Endpoint, check: &mut Check) {
        check.required("url", &endpoint.url);
    }

    fn build(
        &self,
        endpoint: &Endpoint,
        settings: &SinkSettings,
    ) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(SlackSink {
            name: settings.name.clone(),
            target: endpoint.target(settings, endpoint.url(settings, "")?)?,
        }))
    }
}

fn emoji(level: Level) -> &'static str {
    match level {
        Level::Critical => ":rotating_light:",
        Level::High => ":red_circle:",
        Level::Medium => ":large_orange_circle:",
        Level::Low => ":large_yellow_circle:",
        Level::Informational => ":information_source:",
    }
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{value}"), 2000)})
}

/// The Block Kit message for an alert.
pub fn message(alert: &Alert) -> Value {
    let level = alert.level();
    let headline = format!("{} {}: {}", emoji(level), level.caption(), alert.rule.title);
    let mut fields = vec![
        field("Host", &format!("`{}`", alert.host)),
        field("Rule", &format!("`{}`", alert.rule.id)),
    ];
    if !alert.process.user.is_empty() {
        fields.push(field("User", &alert.process.user));
    }
    let attack = render::attack_summary(alert);
    if !attack.is_empty() {
        fields.push(field("ATT&CK", &attack));
    }
    if let Some(c) = &alert.container {
        fields.push(field("Container", &format!("{} ({})", c.name, c.image)));
    }
    if alert.count > 1 {
        fields.push(field("Occurrences", &alert.count.to_string()));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&headline, 150), "emoji": true}}),
    ];
    if !alert.rule.description.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&alert.rule.description, 3000)}}));
    }
    blocks.push(json!({"type": "section", "fields": fields}));
    let tree = render::process_tree(alert);
    if !tree.is_empty() {
        let tree = truncate(&tree.replace("```", "'''"), 2900);
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Process tree*\n```{tree}```")}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
        "{} · fingerprint `{}` · alert `{}`", alert.finding_info.first_seen_time_dt, alert.fingerprint(), alert.uid()
    )}]}));
    json!({
        "text": truncate(&format!("{} {} on {}", level.caption(), alert.rule.title, alert.host), 3000),
        "blocks": blocks,
    })
}

/// A Slack incoming webhook.
pub struct SlackSink {
    name: String,
    target: http::Target,
}

impl Sink for SlackSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        let request = self.target.post().json(&message(alert));
        self.target.send(request).map(|r| r.map(drop)).boxed()
    }
}
