//! The collector's configuration file (`serve --config F`, TOML).
//!
//! Every key is optional and has a default; unknown keys are errors. [`load`] reads, parses and
//! validates in one go and reports every problem it finds at once, each naming the key:
//!
//! ```toml
//! log_format = "json"         # text (default) | json; serve --log-format overrides
//!
//! [alerts]
//! dedup_window = "10m"        # repeats of a fingerprint within this fold into one alert
//! rate_limit_per_rule = 100   # alerts per rule and host per window; the rest are held
//! rate_limit_window = "1m"
//!
//! [alerts.losses]             # lost events and tampering (alerting::losses has every key)
//! kernel_drop_threshold = 100 # kernel drops per Gap above this raise an alert
//! window = "10m"              # repeats of one condition on one host fold into one alert
//!
//! [delivery]
//! initial_backoff = "1s"      # first retry delay; doubles per attempt, with jitter
//! max_backoff = "5m"
//! max_age = "24h"             # undelivered for longer: dead letter
//! timeout = "10s"             # per HTTP request
//! poll_interval = "1s"        # how often the outbox is checked for replayed/due rows
//! meta_alert_after = 5        # consecutive failures of a sink before a meta-alert
//!
//! [ingress]                   # what one agent may send and hold (see ingress::limits)
//! max_message_bytes = 4194304 # largest decoded message
//! max_batch_events = 2048     # events per batch (the agent sends 512; at most 16384)
//! hello_timeout = "10s"
//! idle_heartbeats = 3         # silent for this many heartbeat intervals: stream closed
//!
//! [enrolment]                # the collector issues node certificates (see enrolment::config)
//! listen = "0.0.0.0:50052"
//! ca_cert = "/etc/kestrel/issuing-ca.pem"
//! ca_key = "/etc/kestrel/issuing-ca-key.pem"
//! certificate_lifetime = "24h"
//!
//! [[sinks]]
//! kind = "webhook"            # jsonl | gitlab | pagerduty | slack | webhook | splunk_hec
//! name = "sirt-webhook"       # default: the kind; unique
//! url = "https://hooks.example/kestrel"
//! secret = "env:KESTREL_WEBHOOK_SECRET"   # literal, env:NAME or file:PATH
//! min_level = "medium"        # informational | low | medium | high | critical
//! tags = ["attack.credential-access"]     # any of these (empty: every alert)
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::alerting::losses::{LossAlertsConfig, LossSettings};
use crate::enrolment::config::{EnrolmentConfig, EnrolmentSettings};
use crate::ingress::limits::IngressLimits;
use crate::sinks::{self, SinkConfig, SinkSettings};
use kestrel_service::logging::LogFormat;

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type, …).
    #[error("config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Values are invalid; every problem is listed.
    #[error("config {}: {} problem(s):\n  - {}", path.display(), problems.len(), problems.join("\n  - "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem, each naming the key.
        problems: Vec<String>,
    },
}

/// The configuration file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Deduplication and rate limiting of alerts.
    pub alerts: AlertsConfig,
    /// Outbox delivery: retries, backoff, dead letters.
    pub delivery: DeliveryConfig,
    /// Where alerts go (`[[sinks]]` tables). Default: none.
    pub sinks: Vec<SinkConfig>,
    /// Limits on what agents may send and hold.
    pub ingress: IngressConfig,
    /// Log lines as `text` (default) or `json` (`serve --log-format` overrides).
    pub log_format: LogFormat,
    /// `[enrolment]`: the collector issues node certificates. Default: off.
    pub enrolment: Option<EnrolmentConfig>,
}

/// `[ingress]`: the operator-tunable limits of [`IngressLimits`] (same names, same defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Largest decoded agent message: bytes, or a size such as `"4MiB"`. Default 4 MiB.
    pub max_message_bytes: bytesize::ByteSize,
    /// Most events in one batch. Default 2048.
    pub max_batch_events: usize,
    /// Events of one agent waiting for the store writer. Default 16384.
    pub max_events_in_flight_per_agent: usize,
    /// Concurrent HTTP/2 streams per connection. Default 2.
    pub max_streams_per_connection: u32,
    /// Connections of one agent identity at a time. Default 4.
    pub max_connections_per_agent: usize,
    /// Authenticated connections at a time. Default 4096.
    pub max_connections: usize,
    /// TLS handshakes in progress from one source address. Default 64.
    pub max_handshakes_per_address: usize,
    /// TLS handshakes in progress in total. Default 1024.
    pub max_handshakes: usize,
    /// Time allowed for the TLS handshake. Default `10s`.
    pub handshake_timeout: String,
    /// Time allowed between opening a stream and its Hello. Default `10s`.
    pub hello_timeout: String,
    /// Heartbeat intervals of silence after which a stream is closed. Default 3.
    pub idle_heartbeats: u32,
    /// A connection without a stream for this long is closed. Default `60s`.
    pub idle_connection_timeout: String,
}

impl Default for IngressConfig {
    fn default() -> Self {
        let d = IngressLimits::default();
        let text = |d: Duration| humantime::format_duration(d).to_string();
        IngressConfig {
            max_message_bytes: bytesize::ByteSize::b(d.max_message_bytes as u64),
            max_batch_events: d.max_batch_events,
            max_events_in_flight_per_agent: d.max_events_in_flight_per_agent,
            max_streams_per_connection: d.max_streams_per_connection,
            max_connections_per_agent: d.max_connections_per_agent,
            max_connections: d.max_connections,
            max_handshakes_per_address: d.max_handshakes_per_address,
            max_handshakes: d.max_handshakes,
            handshake_timeout: text(d.handshake_timeout),
            hello_timeout: text(d.hello_timeout),
            idle_heartbeats: d.idle_heartbeats,
            idle_connection_timeout: text(d.idle_connection_timeout),
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Repeats of the same fingerprint within this window (from its first occurrence) are
    /// counted on one alert instead of raising new ones. Default `10m`; `0s` disables.
    pub dedup_window: String,
    /// Alerts of one rule on one host delivered per `rate_limit_window`; beyond it alerts are
    /// stored with their delivery held, and one `kestrel.system.rate-limited` alert per window
    /// says so. Default 100; 0 means no limit.
    pub rate_limit_per_rule: u32,
    /// The rate-limit window. Default `1m`.
    pub rate_limit_window: String,
    /// `[alerts.losses]`: alerts for lost events and tampering with the agent.
    pub losses: LossAlertsConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            dedup_window: "10m".into(),
            rate_limit_per_rule: 100,
            rate_limit_window: "1m".into(),
            losses: LossAlertsConfig::default(),
        }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Delay before the first retry; doubles per attempt (with ±50% jitter). Default `1s`.
    pub initial_backoff: String,
    /// Longest delay between retries. Default `5m`.
    pub max_backoff: String,
    /// An alert undelivered for this long goes to the dead-letter table. Default `24h`.
    pub max_age: String,
    /// Timeout of one HTTP request. Default `10s`.
    pub timeout: String,
    /// How often each sink looks at the outbox when nothing woke it. Default `1s`.
    pub poll_interval: String,
    /// Consecutive failed attempts of one sink before a meta-alert goes to the other sinks.
    /// Default 5; 0 disables.
    pub meta_alert_after: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            initial_backoff: "1s".into(),
            max_backoff: "5m".into(),
            max_age: "24h".into(),
            timeout: "10s".into(),
            poll_interval: "1s".into(),
            meta_alert_after: 5,
        }
    }
}

/// Validated alerting settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Dedup window; zero disables deduplication.
    pub dedup_window: Duration,
    /// New alerts per rule per window; 0 = unlimited.
    pub rate_limit_per_rule: u32,
    /// Rate-limit window.
    pub rate_limit_window: Duration,
    /// Alerts for lost events and tampering.
    pub losses: LossSettings,
}

/// Validated delivery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Age after which an undelivered alert is dead-lettered.
    pub max_age: Duration,
    /// HTTP request timeout.
    pub timeout: Duration,
    /// Outbox poll interval.
    pub poll_interval: Duration,
    /// Consecutive failures before a meta-alert (0: never).
    pub meta_alert_after: u32,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[alerts]`.
    pub alerts: AlertSettings,
    /// `[delivery]`.
    pub delivery: DeliverySettings,
    /// `[[sinks]]`, in file order.
    pub sinks: Vec<SinkSettings>,
    /// `[ingress]`.
    pub ingress: IngressLimits,
    /// `log_format`.
    pub log_format: LogFormat,
    /// `[enrolment]`, when the collector issues node certificates.
    pub enrolment: Option<EnrolmentSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        CollectorConfig::default()
            .validate()
            .expect("the defaults are valid")
    }
}

/// Reads, parses and validates the configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        },
        ConfigError::Invalid { problems, .. } => ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        },
        other => other,
    })
}

/// Parses and validates configuration text (errors name the path `<config>`).
pub fn parse(text: &str) -> Result<Settings, ConfigError> {
    let path = PathBuf::from("<config>");
    let config: CollectorConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    config
        .validate()
        .map_err(|problems| ConfigError::Invalid { path, problems })
}

impl CollectorConfig {
    /// Checks every value; returns all problems, each naming its key.
    pub fn validate(&self) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let mut duration = |key: &str, text: &str, allow_zero: bool| -> Duration {
            match humantime::parse_duration(text) {
                Ok(d) if d.is_zero() && !allow_zero => {
                    problems.push(format!("{key}: must be greater than zero"));
                    Duration::from_secs(1)
                }
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!(
                        "{key}: {text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"24h\""
                    ));
                    Duration::from_secs(1)
                }
            }
        };
        let a = &self.alerts;
        let alerts = AlertSettings {
            dedup_window: duration("alerts.dedup_window", &a.dedup_window, true),
            rate_limit_per_rule: a.rate_limit_per_rule,
            rate_limit_window: duration("alerts.rate_limit_window", &a.rate_limit_window, false),
            losses: LossSettings::default(),
        };
        let d = &self.delivery;
        let delivery = DeliverySettings {
            initial_backoff: duration("delivery.initial_backoff", &d.initial_backoff, false),
            max_backoff: duration("delivery.max_backoff", &d.max_backoff, false),
            max_age: duration("delivery.max_age", &d.max_age, false),
            timeout: duration("delivery.timeout", &d.timeout, false),
            poll_interval: duration("delivery.poll_interval", &d.poll_interval, false),
            meta_alert_after: d.meta_alert_after,
        };
        let i = &self.ingress;
        let ingress = IngressLimits {
            max_message_bytes: usize::try_from(i.max_message_bytes.as_u64()).unwrap_or(usize::MAX),
            max_batch_events: i.max_batch_events,
            max_events_in_flight_per_agent: i.max_events_in_flight_per_agent,
            max_streams_per_connection: i.max_streams_per_connection,
            max_connections_per_agent: i.max_connections_per_agent,
            max_connections: i.max_connections,
            max_handshakes_per_address: i.max_handshakes_per_address,
            max_handshakes: i.max_handshakes,
            handshake_timeout: duration("ingress.handshake_timeout", &i.handshake_timeout, false),
            hello_timeout: duration("ingress.hello_timeout", &i.hello_timeout, false),
            idle_heartbeats: i.idle_heartbeats,
            idle_connection_timeout: duration(
                "ingress.idle_connection_timeout",
                &i.idle_connection_timeout,
                false,
            ),
        };
        let mut alerts = alerts;
        if let Some(losses) = a.losses.validate(&mut problems) {
            alerts.losses = losses;
        }
        if delivery.max_backoff < delivery.initial_backoff {
            problems.push(format!(
                "delivery.max_backoff: {} is shorter than delivery.initial_backoff {}",
                d.max_backoff, d.initial_backoff
            ));
        }
        for (key, value) in [
            ("ingress.max_message_bytes", ingress.max_message_bytes),
            ("ingress.max_batch_events", ingress.max_batch_events),
            (
                "ingress.max_events_in_flight_per_agent",
                ingress.max_events_in_flight_per_agent,
            ),
            (
                "ingress.max_streams_per_connection",
                ingress.max_streams_per_connection as usize,
            ),
            (
                "ingress.max_connections_per_agent",
                ingress.max_connections_per_agent,
            ),
            ("ingress.max_connections", ingress.max_connections),
            (
                "ingress.max_handshakes_per_address",
                ingress.max_handshakes_per_address,
            ),
            ("ingress.max_handshakes", ingress.max_handshakes),
            ("ingress.idle_heartbeats", ingress.idle_heartbeats as usize),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be greater than zero"));
            }
        }
        let ceiling = crate::ingress::limits::BATCH_EVENTS_CEILING.max;
        if ingress.max_batch_events > ceiling {
            problems.push(format!(
                "ingress.max_batch_events: {} is above {ceiling}, the most a batch may hold \
                 (counted before decoding)",
                ingress.max_batch_events
            ));
        }
        if ingress.max_events_in_flight_per_agent < ingress.max_batch_events {
            problems.push(format!(
                "ingress.max_events_in_flight_per_agent: {} is below ingress.max_batch_events {}: \
                 a full batch could never be stored",
                ingress.max_events_in_flight_per_agent, ingress.max_batch_events
            ));
        }
        let enrolment = self
            .enrolment
            .as_ref()
            .and_then(|e| e.validate(&mut problems));
        let mut names = HashSet::new();
        let mut sinks = Vec::new();
        for (index, sink) in self.sinks.iter().enumerate() {
            let at = format!("sinks[{index}] ({})", sink.name());
            if let Some(settings) =
                sinks::settings::validate(&at, sink, delivery.timeout, &mut problems)
            {
                if !names.insert(settings.name.clone()) {
                    problems.push(format!(
                        "{at}: name {:?} is used by an earlier sink; give each sink a unique `name`",
                        settings.name
                    ));
                }
                sinks.push(settings);
            }
        }
        if problems.is_empty() {
            Ok(Settings {
                alerts,
                delivery,
                sinks,
                ingress,
                log_format: self.log_format,
                enrolment,
            })
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let settings = parse("").unwrap();
        assert_eq!(settings.alerts.dedup_window, Duration::from_secs(600));
        assert_eq!(settings.alerts.rate_limit_per_rule, 100);
        assert_eq!(settings.delivery.initial_backoff, Duration::from_secs(1));
        assert_eq!(settings.delivery.max_age, Duration::from_secs(86_400));
        assert_eq!(settings.delivery.meta_alert_after, 5);
        assert!(settings.sinks.is_empty());
        assert_eq!(settings.ingress, IngressLimits::default());
    }

    #[test]
    fn ingress_limits_are_read_and_checked() {
        let settings =
            parse("[ingress]\nmax_batch_events = 100\nhello_timeout = \"3s\"\n").unwrap();
        assert_eq!(settings.ingress.max_batch_events, 100);
        assert_eq!(settings.ingress.hello_timeout, Duration::from_secs(3));
        let err = parse("[ingress]\nmax_connections = 0\nmax_events_in_flight_per_agent = 10\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ingress.max_connections: must be greater than zero"),
            "{err}"
        );
        assert!(err.contains("below ingress.max_batch_events"), "{err}");
        let err =
            parse("[ingress]\nmax_batch_events = 20000\nmax_events_in_flight_per_agent = 40000\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("ingress.max_batch_events: 20000 is above 16384"),
            "{err}"
        );
    }

    #[test]
    fn message_size_takes_units_and_a_bad_one_is_named() {
        let settings = parse("[ingress]\nmax_message_bytes = \"2MiB\"\n").unwrap();
        assert_eq!(settings.ingress.max_message_bytes, 2 << 20);
        let settings = parse("[ingress]\nmax_message_bytes = 1048576\n").unwrap();
        assert_eq!(settings.ingress.max_message_bytes, 1 << 20);
        let err = parse("[ingress]\nmax_message_bytes = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_message_bytes") && err.contains("big"),
            "{err}"
        );
    }

    #[test]
    fn loss_alert_settings_are_read_and_a_bad_window_is_named() {
        let settings =
            parse("[alerts.losses]\nkernel_drop_threshold = 5\nshed_level = \"critical\"\n")
                .unwrap();
        assert_eq!(settings.alerts.losses.config.kernel_drop_threshold, 5);
        assert_eq!(
            settings.alerts.losses.config.shed_level,
            crate::alert::Level::Critical
        );
        assert_eq!(settings.alerts.losses.window, Duration::from_secs(600));
        let err = parse("[alerts.losses]\nwindow = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("alerts.losses.window"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = parse("[alerts]\ndedup_windw = \"1m\"\n").unwrap_err();
        assert!(err.to_string().contains("dedup_windw"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_the_key() {
        let text = r#"
            [alerts]
            dedup_window = "soon"
            [[sinks]]
            kind = "slack"
            [[sinks]]
            kind = "carrier-pigeon"
            [[sinks]]
            kind = "webhook"
            url = "ftp://x"
            secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            routing_key = "k"
            min_level = "severe"
        "#;
        let ConfigError::Invalid { problems, .. } = parse(text).unwrap_err() else {
            panic!("not a validation error");
        };
        let all = problems.join("\n");
        assert!(all.contains("alerts.dedup_window"), "{all}");
        assert!(all.contains("sinks[0] (slack): `url` is required"), "{all}");
        assert!(all.contains("unknown kind \"carrier-pigeon\""), "{all}");
        assert!(
            all.contains("sinks[2] (webhook): `routing_key` is not used"),
            "{all}"
        );
        assert!(all.contains("min_level \"severe\""), "{all}");
        assert!(all.contains("scheme \"ftp\""), "{all}");
        assert_eq!(problems.len(), 6, "{all}");
    }

    #[test]
    fn duplicate_sink_names_are_refused() {
        let text = r#"
            [[sinks]]
            kind = "jsonl"
            path = "-"
            [[sinks]]
            kind = "jsonl"
            path = "/tmp/x"
        "#;
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains("name \"jsonl\" is used by an earlier sink"),
            "{err}"
        );
    }
}
