//! Kernel records to protocol events: the [`pipeline`] stage keeps the process table current
//! and builds each event, [`syscalls`] turns a syscall record into its payload.

pub mod pipeline;
pub mod syscalls;
