//! Alert sinks: one trait, one file per kind, the retry/outbox layer underneath
//! ([`crate::alerting`]).
//!
//! A sink turns one [`Alert`] into one delivery attempt and says whether a failure is worth
//! retrying. It keeps no queue of its own: the outbox in SQLite is the queue, so an alert
//! survives a restart whatever the sink. Adding a sink kind means one file here with its
//! [`Options`] type and one line in [`KINDS`].

pub mod endpoint;
pub mod gitlab;
pub mod http;
pub mod jsonl;
pub mod pagerduty;
pub mod redact;
pub mod settings;
pub mod slack;
pub mod splunk_hec;
pub mod webhook;

use std::time::Duration;

use futures::future::BoxFuture;

use crate::alert::Alert;
pub use settings::{Build, Check, Options, ReadOptions, SinkConfig, SinkSettings};

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying (timeout, connection refused, HTTP 408/429/5xx).
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// How long the receiver asked us to wait (HTTP `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (HTTP 4xx other than 408/429, an unusable payload): dead letter.
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
    },
}

impl DeliveryError {
    /// A retryable error without a `Retry-After`.
    pub fn retryable(message: impl Into<String>) -> DeliveryError {
        DeliveryError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A sink could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("sink {name}: {message}")]
pub struct SinkError {
    /// The sink's name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// A destination for alerts.
pub trait Sink: Send + Sync {
    /// The sink's configured name.
    fn name(&self) -> &str;

    /// Delivers one alert once. Deliveries of the same alert (retries, replays) carry the same
    /// idempotency key, documented per sink.
    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// A sink kind: its name and how to read its own keys of a `[[sinks]]` table.
pub struct Kind {
    /// The `kind` value.
    pub name: &'static str,
    /// Reads and checks the kind's own keys (given the kind's name); one message per problem.
    pub read: fn(&'static str, &toml::Table) -> ReadOptions,
}

impl Kind {
    /// The kind `name` whose own keys are the options type `T`.
    pub const fn of<T: Options>(name: &'static str) -> Kind {
        Kind {
            name,
            read: settings::read_options::<T>,
        }
    }
}

/// Every sink kind.
pub const KINDS: &[Kind] = &[
    Kind::of::<jsonl::Options>("jsonl"),
    Kind::of::<gitlab::Options>("gitlab"),
    Kind::of::<pagerduty::Options>("pagerduty"),
    Kind::of::<slack::Options>("slack"),
    Kind::of::<webhook::Options>("webhook"),
    Kind::of::<splunk_hec::Options>("splunk_hec"),
];

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kind names, for messages.
pub fn kind_names() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}
