//! Kestrel agent library: the stages from kernel to collector, in data-flow order.
//!
//! [`loader`] loads and attaches the eBPF programs; [`reader`] drains the ring buffer;
//! [`decode`] turns bytes into records; [`process_table`] keeps what is known about each live
//! process; [`pipeline`] turns records into protocol events; [`jsonl`] and [`shipper`] send them
//! on (a JSON-lines file, the collector over mutual TLS).

pub mod clock;
pub mod decode;
pub mod jsonl;
pub mod kernel_layout;
pub mod loader;
pub mod pipeline;
pub mod process_table;
pub mod reader;
pub mod shipper;
pub mod tls;
pub mod users;
