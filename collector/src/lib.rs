//! Kestrel collector library: everything `kestrel-collector` does, in stages along the data flow
//! (authenticate, store, detect through `kestrel-detect`, alert), so tests and benchmarks can
//! drive each stage directly.
//!
//! One module per stage: [`ingress`] (TLS, identity, sessions, the `Ingest` service),
//! [`enrolment`] (node certificates issued against a proof of the node),
//! [`pipeline`] (dedup, detection, group commit), [`store`] (all SQL), [`alerting`] (admission
//! policy and delivery), [`sinks`]; [`cli`] holds the commands. At the root sit what the stages
//! share (the event and alert model, configuration, clock, file watch, error report, owner-only
//! files, text escaping for output) and what runs them (`serve`, rule reload, logging, the
//! metrics and health endpoint).

pub mod alert;
pub mod alerting;
pub mod cli;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod enrolment;
pub mod event;
pub mod health;
pub mod ingress;
pub mod metrics;
pub mod pipeline;
pub mod private_files;
pub mod reload;
pub mod report;
pub mod serve;
pub mod sinks;
pub mod store;
pub mod text;
pub mod watch;
