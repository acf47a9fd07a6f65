//! Kernel records to protocol events: the [`pipeline`] stage keeps the process table current
//! and builds each event, [`syscalls`] turns a syscall record into its payload ([`file`] and
//! [`network`] calls in files of their own).

pub mod file;
pub mod network;
pub mod pipeline;
pub mod syscalls;
