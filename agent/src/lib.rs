//! Kestrel agent library: the stages from kernel to collector, in data-flow order.
//!
//! [`loader`] loads and attaches the eBPF programs; [`reader`] drains the ring buffer;
//! [`decode`] turns bytes into records; [`loss`] accounts for records the kernel dropped;
//! [`process_table`] keeps what is known about each live process; [`container`] adds container
//! context; [`pipeline`] (with [`syscall_events`]) turns records into protocol events; [`jsonl`],
//! [`spool`] and [`shipper`] send them on (a JSON-lines file, the collector over mutual TLS).

pub mod clock;
pub mod config;
pub mod container;
pub mod decode;
pub mod directories;
pub mod dns;
pub mod jsonl;
pub mod kernel_layout;
pub mod loader;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod process_table;
pub mod reader;
pub mod shipper;
pub mod spool;
pub mod syscall_events;
pub mod tls;
pub mod tty;
pub mod users;
