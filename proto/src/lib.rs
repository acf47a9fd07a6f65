//! Kestrel's wire protocol: the protobuf messages and tonic service shared by agent and collector.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

/// Version 1 of the protocol (`package kestrel.v1`).
pub mod v1 {
    tonic::include_proto!("kestrel.v1");
}

pub use v1::*;

impl v1::Event {
    /// The event kind as a stable lower-case name (`exec`, `file`, `network`, ...; `unknown`
    /// without a payload), used in storage, logs and loss accounting.
    pub fn kind_name(&self) -> &'static str {
        use v1::event::Payload;
        match &self.payload {
            Some(Payload::Exec(_)) => "exec",
            Some(Payload::Fork(_)) => "fork",
            Some(Payload::Exit(_)) => "exit",
            Some(Payload::File(_)) => "file",
            Some(Payload::Network(_)) => "network",
            Some(Payload::Credential(_)) => "credential",
            Some(Payload::Ptrace(_)) => "ptrace",
            Some(Payload::Signal(_)) => "signal",
            Some(Payload::Module(_)) => "module",
            Some(Payload::Bpf(_)) => "bpf",
            Some(Payload::Memfd(_)) => "memfd",
            Some(Payload::Namespace(_)) => "namespace",
            Some(Payload::IoUring(_)) => "io_uring",
            None => "unknown",
        }
    }
}
