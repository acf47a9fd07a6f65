//! Kestrel collector library: everything `kestrel-collector` does, in stages along the data flow
//! (authenticate, store, detect through `kestrel-detect`, alert), so tests and benchmarks can
//! drive each stage directly.

pub mod agents;
pub mod agents_cli;
pub mod alert;
pub mod alerting;
pub mod alerts_cli;
pub mod cli;
pub mod clock;
pub mod config;
pub mod denylist;
pub mod event;
pub mod events_cli;
pub mod heartbeat;
pub mod identity;
pub mod ingest;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod report;
pub mod rules_cli;
pub mod serve;
pub mod sessions;
pub mod sinks;
pub mod store;
pub mod tls;
pub mod watch;
