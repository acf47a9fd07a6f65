//! Kestrel's wire protocol: the protobuf messages and tonic service shared by agent and collector.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

pub mod codec;
pub mod encoded;
pub mod limits;
pub mod wire;

/// Version 1 of the protocol (`package kestrel.v1`).
pub mod v1 {
    tonic::include_proto!("kestrel.v1");
}

pub use v1::*;

impl v1::Event {
    /// The event kind as the ABI numbers it (`kestrel_ebpf_abi::KIND_*`; 0 without a payload).
    pub fn kind(&self) -> u32 {
        use kestrel_ebpf_abi as abi;
        use v1::event::Payload;
        match &self.payload {
            Some(Payload::Exec(_)) => abi::KIND_EXEC,
            Some(Payload::Fork(_)) => abi::KIND_FORK,
            Some(Payload::Exit(_)) => abi::KIND_EXIT,
            Some(Payload::File(_)) => abi::KIND_FILE,
            Some(Payload::Network(_)) => abi::KIND_NETWORK,
            Some(Payload::Credential(_)) => abi::KIND_CREDENTIAL,
            Some(Payload::Ptrace(_)) => abi::KIND_PTRACE,
            Some(Payload::Signal(_)) => abi::KIND_SIGNAL,
            Some(Payload::Module(_)) => abi::KIND_MODULE,
            Some(Payload::Bpf(_)) => abi::KIND_BPF,
            Some(Payload::Memfd(_)) => abi::KIND_MEMFD,
            Some(Payload::Namespace(_)) => abi::KIND_NAMESPACE,
            Some(Payload::IoUring(_)) => abi::KIND_IO_URING,
            Some(Payload::ProcessRename(_)) => abi::KIND_PROCESS_RENAME,
            None => 0,
        }
    }

    /// The event kind as a stable lower-case name (`exec`, `file`, `network`, ...; `unknown`
    /// without a payload), used in storage, logs and loss accounting: the ABI's name of
    /// [`Event::kind`].
    pub fn kind_name(&self) -> &'static str {
        kestrel_ebpf_abi::kind_name(self.kind())
    }
}

impl From<v1::agent_message::Msg> for v1::AgentMessage {
    fn from(msg: v1::agent_message::Msg) -> Self {
        v1::AgentMessage { msg: Some(msg) }
    }
}
