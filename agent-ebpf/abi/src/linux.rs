//! Linux constants that both sides read records by (the uapi values, the same on every
//! architecture Kestrel runs on), named once so that neither side compares against bare numbers.

/// `O_ACCMODE`: the access-mode bits of open flags (0: read-only).
pub const O_ACCMODE: u64 = 3;
/// `O_CREAT`.
pub const O_CREAT: u64 = 0o100;
/// `O_TRUNC`.
pub const O_TRUNC: u64 = 0o1000;
/// `O_DIRECTORY`.
pub const O_DIRECTORY: u64 = 0o200000;
/// `AT_FDCWD`: a path relative to the working directory.
pub const AT_FDCWD: i32 = -100;
/// `AT_REMOVEDIR`: `unlinkat` removes a directory.
pub const AT_REMOVEDIR: u64 = 0x200;
/// `AF_INET`.
pub const AF_INET: u64 = 2;
/// `AF_INET6`.
pub const AF_INET6: u64 = 10;
/// `AF_PACKET`.
pub const AF_PACKET: u64 = 17;
/// `SOCK_DGRAM`.
pub const SOCK_DGRAM: u64 = 2;
/// `CLONE_NEWNS`: a mount namespace.
pub const CLONE_NEWNS: u64 = 0x0002_0000;
/// `BPF_PROG_LOAD`: the `bpf` command that loads a program.
pub const BPF_PROG_LOAD: u64 = 5;
/// Offset of `prog_name` in `union bpf_attr` for `BPF_PROG_LOAD`.
pub const BPF_ATTR_PROG_NAME: u64 = 48;
/// Offset of `flags` in `struct io_uring_params`.
pub const IO_URING_PARAMS_FLAGS: u64 = 8;
/// Offset of `msg_iov` in `struct msghdr` (`msg_name` is at 0).
pub const MSGHDR_IOV: u64 = 16;
/// The DNS port.
pub const DNS_PORT: u64 = 53;
/// `PR_SET_NAME`: the `prctl` option that sets the calling thread's name (`comm`).
pub const PR_SET_NAME: u64 = 15;
