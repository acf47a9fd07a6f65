//! The path one event from an agent takes once a rule matched it, without the network: the
//! ingress limits, the alert record, its JSON, admission into a real SQLite store, the outbox
//! row read back, every sink's rendering, and the delivery recorded. Shared by the seeded test
//! (`alert_records.rs`) and the `alert_record` fuzz target, so both drive the same code.

use std::borrow::Cow;
use std::path::Path;

use kestrel_collector::alert::{render, Alert, Level, MAX_ANCESTORS};
use kestrel_collector::alerting::admit::{admit, Admission, Policy, Route};
use kestrel_collector::ingress::limits::check_event;
use kestrel_collector::sinks::{gitlab, pagerduty, slack};
use kestrel_collector::store::Store;
use kestrel_collector::text::escape_lines;
use kestrel_detect::Rule;
use kestrel_proto::Event;

/// The rule every event is taken to match (the path after detection does not depend on why).
const RULE: &str = r#"title: Any process start
id: 5a0f3c1e-2b7d-4c8e-9f10-a1b2c3d4e5f6
status: test
level: high
tags:
  - attack.execution
  - attack.t1059
logsource:
  category: process_creation
  product: linux
detection:
  selection:
    Image|startswith: /
  condition: selection
"#;

/// The one sink alerts are routed to.
const SINK: &str = "record-path";

/// The collector's clock throughout, ns since the Unix epoch (2027).
const NOW_NS: u64 = 1_800_000_000_000_000_000;

/// What became of one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Over an ingress limit: refused at the door, never an alert.
    Refused,
    /// Stored, read back from the outbox, rendered for every sink and delivered.
    Delivered,
}

/// A store and a rule the events go through, one after another.
pub struct AlertRecordPath {
    store: Store,
    rule: Rule,
    policy: Policy,
    seq: u64,
}

impl AlertRecordPath {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> AlertRecordPath {
        let rule = Rule::from_yaml(Path::new("any-process-start.yml"), RULE)
            .unwrap_or_else(|e| panic!("the path's own rule does not load: {e}"));
        let mut policy = Policy::store_only();
        policy.routes.push(Route {
            sink: SINK.into(),
            min_level: Level::Informational,
            tags: Vec::new(),
        });
        AlertRecordPath {
            store: Store::open(dir).unwrap_or_else(|e| panic!("store in {}: {e}", dir.display())),
            rule,
            policy,
            seq: 0,
        }
    }

    /// Takes `event` as the collector would from an agent whose identity is `host`, and proves
    /// every step of the way; an `Err` names the step that failed.
    pub fn run(&mut self, host: &str, mut event: Event) -> Result<Outcome, String> {
        if check_event(&event).is_err() {
            return Ok(Outcome::Refused);
        }
        // The collector overwrites what the agent says about who and where it is.
        event.host = host.into();
        self.seq += 1;
        event.seq = self.seq;

        let alert = Alert::new(&self.rule, &event, 1);
        if alert.ancestors.len() > MAX_ANCESTORS {
            return Err(format!("{} ancestors kept", alert.ancestors.len()));
        }
        let json = serde_json::to_string(&alert).map_err(|e| format!("alert to JSON: {e}"))?;
        let back: Alert =
            serde_json::from_str(&json).map_err(|e| format!("alert from its own JSON: {e}"))?;
        if back != alert {
            return Err("the alert's JSON does not read back as the same alert".into());
        }

        let admission = self
            .store
            .in_admission_transaction(|tx| admit(tx, &self.policy, alert, NOW_NS, &[]))
            .map_err(|e| format!("admission: {e}"))?;
        let Admission::Created(created) = admission else {
            return Err(format!("admission did not create the alert: {admission:?}"));
        };
        let rows = self
            .store
            .due_deliveries(SINK, NOW_NS, 100)
            .map_err(|e| format!("reading the outbox: {e}"))?;
        let [row] = rows.as_slice() else {
            return Err(format!(
                "{} outbox rows, expected the one alert",
                rows.len()
            ));
        };
        if row.alert.finding_info.uid != created.finding_info.uid {
            return Err("the outbox row holds another alert".into());
        }
        for payload in [
            gitlab::payload(&row.alert),
            pagerduty::event("routing-key", &row.alert),
            slack::message(&row.alert),
        ] {
            if !payload.is_object() {
                return Err(format!("a sink payload is not a JSON object: {payload}"));
            }
        }
        // One line per process, whatever the command lines hold: a newline in a field must not
        // forge processes in the tree a responder reads.
        let tree = render::process_tree(&row.alert);
        let lines = tree.lines().count();
        if !tree.is_empty() && lines != row.alert.ancestors.len() + 1 {
            return Err(format!(
                "the process tree has {lines} lines for {} processes:\n{tree}",
                row.alert.ancestors.len() + 1
            ));
        }
        // The ticket text keeps its own line breaks only: nothing from the agent acts on a
        // terminal or starts a line of its own.
        let description = render::description(&row.alert);
        if !matches!(escape_lines(&description), Cow::Borrowed(_)) {
            return Err(format!(
                "the description carries raw control characters:\n{description}"
            ));
        }
        if !description.contains(&tree) {
            return Err("the description lacks the process tree".into());
        }
        self.store
            .record_delivered(SINK, row, NOW_NS)
            .map_err(|e| format!("recording the delivery: {e}"))?;
        Ok(Outcome::Delivered)
    }
}
