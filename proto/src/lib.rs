//! Kestrel's wire protocol: the protobuf messages and tonic service shared by agent and collector.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

/// Version 1 of the protocol (`package kestrel.v1`).
pub mod v1 {
    tonic::include_proto!("kestrel.v1");
}

pub use v1::*;
