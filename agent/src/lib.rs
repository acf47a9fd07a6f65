//! Kestrel agent library: the stages from kernel to collector, in data-flow order.
//!
//! [`kernel`] loads the eBPF programs, drains the ring buffer, decodes records and accounts for
//! those the kernel lost; [`enrich`] keeps what is known about processes, directories, hosts,
//! users, terminals and containers; [`events`] turns records into protocol events; [`ship`]
//! sends them on (a JSON-lines file, the collector over mutual TLS through the spool). The
//! [`config`], [`logging`], [`metrics`], [`health`] (with [`endpoint`], which serves both),
//! [`clock`] and [`memory`] modules serve them all.

pub mod clock;
pub mod config;
pub mod endpoint;
pub mod enrich;
pub mod events;
pub mod health;
pub mod kernel;
pub mod memory;
pub mod metrics;
pub mod ship;
