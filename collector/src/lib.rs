//! Kestrel collector library: everything `kestrel-collector` does, in stages along the data flow
//! (authenticate, store, detect, alert), so tests and benchmarks can drive each stage directly.

pub mod alert;
pub mod cli;
pub mod detect;
pub mod event;
pub mod identity;
pub mod ingest;
pub mod listener;
pub mod pipeline;
pub mod serve;
pub mod store;
pub mod tls;
