//! Where events go: a JSON-lines file ([`jsonl`]), and the collector through the disk
//! [`spool`] and the [`shipper`] (gRPC over mutual TLS, certificates from [`tls`], issued and
//! renewed by the collector through [`enrol`]).

pub mod enrol;
pub mod jsonl;
pub mod shipper;
pub mod spool;
pub mod tls;
