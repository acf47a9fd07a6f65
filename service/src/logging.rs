//! Where a Kestrel binary's log goes and in which shape: stderr, as text or as one JSON object per
//! line (`--log-format`, or `log_format` in the configuration file), with colour only when
//! stderr is a terminal (never into a file, a pipe or journald). `RUST_LOG` sets the level
//! (default `info`).

use std::io::IsTerminal;

use serde::Deserialize;

/// The shape of each log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `spans`), for log
    /// collectors.
    Json,
}

/// Installs the global logger writing `format` to stderr. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}
