//! The kernel side of the agent: load and attach the eBPF programs ([`loader`]) with the
//! running kernel's struct layout ([`layout`]), drain the ring buffer ([`reader`]), turn its
//! bytes into typed records ([`decode`]) and account for the records the kernel lost ([`loss`]).

pub mod decode;
pub mod layout;
pub mod loader;
pub mod loss;
pub mod reader;
