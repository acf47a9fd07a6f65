//! Followed syscalls: `sys_enter_*` keeps the arguments (and, for credential changes, the old
//! credentials) per thread; `sys_exit_*` adds the result, copies strings and kernel facts
//! (socket addresses, new credentials), filters, and emits one `SyscallRecord`. Descriptors
//! (a dirfd, the file an fd-based call acts on) are resolved to paths in user space: walking
//! the dentry tree here made the verifier exceed its instruction budget.
//! Each hook passes its syscall id as a constant, so the compiler keeps only that syscall's
//! branch in each program.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf,
        bpf_probe_read_user_str_bytes,
    },
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use kestrel_ebpf_abi::{
    linux::{
        AF_INET6, AF_PACKET, AT_FDCWD, BPF_ATTR_PROG_NAME, BPF_PROG_LOAD, DNS_PORT,
        IO_URING_PARAMS_FLAGS, MSGHDR_IOV, O_ACCMODE, O_CREAT, O_DIRECTORY, O_TRUNC, SOCK_DGRAM,
    },
    sys::{self, kind_of},
    Aux, CredentialSet, DirectoryId, ProbeConfig, SyscallRecord, KIND_BPF, KIND_CREDENTIAL,
    KIND_FILE, KIND_IO_URING, KIND_MEMFD, KIND_MODULE, KIND_NAMESPACE, KIND_NETWORK, STR_SLOT,
    SYSCALL_FIXED_SIZE, SYS_DIRECTORY_OPEN, SYS_SENSITIVE_READ, SYS_STR0_TRUNCATED,
    SYS_STR1_TRUNCATED,
};

use crate::{
    filter::{is_muted, is_sensitive, wanted},
    kernel::{credentials, current_task, fd_file, header, inode_identity, read_at, Ptr},
    maps::{config, count_drop, current_pid_tgid, EVENTS},
};

/// Offset of the first argument in a `sys_enter_*` record, and of `ret` in `sys_exit_*`.
const ARGS_OFFSET: usize = 16;
/// How far back a file name is looked for (names of sensitive keys are short).
const NAME_SCAN: u32 = 64;

/// What `sys_enter` keeps for `sys_exit`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    args: [u64; 6],
    old_credentials: CredentialSet,
}

/// Calls in flight, by thread. LRU, so a thread that dies inside a call cannot leak an entry.
#[map]
static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(16384, 0);

/// When each directory (device, inode) was last reported by a directory open.
#[map]
static DIRECTORIES_REPORTED: LruHashMap<[u64; 2], u64> = LruHashMap::with_max_entries(32768, 0);

/// How often an open of the same directory is reported again (the agent may have forgotten
/// it in between, or it may have moved).
const DIRECTORY_REPORT_INTERVAL_NS: u64 = 60_000_000_000;

/// The record being built (per CPU: far larger than the stack).
#[map]
static SCRATCH: PerCpuArray<SyscallRecord> = PerCpuArray::with_max_entries(1, 0);

/// `sys_enter_*` for syscall `id`.
#[inline(always)]
pub fn enter(ctx: &TracePointContext, id: u32) -> u32 {
    let config = config();
    let (_, tgid) = current_pid_tgid();
    if !wanted(&config, tgid, kind_of(id)) {
        return 0;
    }
    let mut args = [0u64; 6];
    args[0] = unsafe { ctx.read_at::<u64>(ARGS_OFFSET) }.unwrap_or(0);
    // Receives are the most frequent calls hooked, and nearly all are on streams: decide on
    // the descriptor before reading anything else.
    if (id == sys::RECVFROM || id == sys::RECVMSG) && !is_datagram_socket(&config, args[0]) {
        return 0;
    }
    for (i, arg) in args.iter_mut().enumerate().skip(1) {
        *arg = unsafe { ctx.read_at::<u64>(ARGS_OFFSET + 8 * i) }.unwrap_or(0);
    }
    if !worth_following(id, &args, tgid) {
        return 0;
    }
    let mut pending = Pending {
        args,
        old_credentials: CredentialSet::default(),
    };
    if kind_of(id) == KIND_CREDENTIAL {
        pending.old_credentials = credentials(&config, current_task()).unwrap_or_default();
    }
    if PENDING
        .insert(&bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        // Without its arguments the exit cannot report the call.
        count_drop(kind_of(id));
    }
    0
}

/// Calls whose arguments already say they are not interesting.
#[inline(always)]
fn worth_following(id: u32, args: &[u64; 6], tgid: u32) -> bool {
    match id {
        sys::SOCKET => args[0] == AF_PACKET,
        sys::SENDTO => args[4] != 0,
        sys::BPF => args[0] == BPF_PROG_LOAD,
        sys::KILL | sys::TGKILL => args[0] as u32 != tgid,
        _ => true,
    }
}

/// The `struct sock *` behind descriptor `fd` of `task` (meaningful only when `fd` is a
/// socket; the callers check what they read from it).
#[inline(always)]
fn fd_sock(config: &ProbeConfig, task: Ptr, fd: u64) -> Result<Ptr, i64> {
    let file = fd_file(config, task, fd)?;
    let socket: u64 = read_at(file, config.file_private)?;
    read_at(socket, config.socket_sk)
}

/// The descriptor is a `SOCK_DGRAM` socket.
#[inline(always)]
fn is_datagram_socket(config: &ProbeConfig, fd: u64) -> bool {
    let Ok(sk) = fd_sock(config, current_task(), fd) else {
        return false;
    };
    matches!(read_at::<u16>(sk, config.sk_type), Ok(t) if t as u64 == SOCK_DGRAM)
}

/// `sys_exit_*` for syscall `id`.
#[inline(always)]
pub fn exit(ctx: &TracePointContext, id: u32) -> u32 {
    let key = bpf_get_current_pid_tgid();
    let Some(pending) = (unsafe { PENDING.get(&key) }).copied() else {
        return 0;
    };
    let _ = PENDING.remove(&key);
    let result: i64 = unsafe { ctx.read_at(ARGS_OFFSET) }.unwrap_or(0);
    if (id == sys::RECVFROM || id == sys::RECVMSG)
        && (result <= 0 || !from_dns_port(&config(), id, &pending.args))
    {
        return 0;
    }
    emit(id, &pending.args, &pending.old_credentials, result);
    0
}

/// A datagram just received came from port 53: by the sender address the call returned, else
/// by the peer of the (connected) socket. Cheap, so that other datagrams cost little.
#[inline(always)]
fn from_dns_port(config: &ProbeConfig, id: u32, args: &[u64; 6]) -> bool {
    let sender = if id == sys::RECVFROM {
        args[4]
    } else {
        unsafe { bpf_probe_read_user(args[1] as *const u64) }.unwrap_or(0)
    };
    if sender != 0 {
        // sockaddr_in and sockaddr_in6 both start with the family, then the port.
        if let Ok(head) = unsafe { bpf_probe_read_user(sender as *const [u8; 4]) } {
            let port = u16::from_be_bytes([head[2], head[3]]) as u64;
            if port != 0 {
                return port == DNS_PORT;
            }
        }
    }
    let Ok(sk) = fd_sock(config, current_task(), args[0]) else {
        return false;
    };
    matches!(read_at::<u16>(sk, config.skc[2]), Ok(port) if u16::from_be(port) as u64 == DNS_PORT)
}

/// Builds, filters and sends the record for a finished call; a record lost on the way (no
/// scratch space, a failed read it cannot do without, a full ring buffer) is counted as a drop
/// of its kind.
#[inline(always)]
pub fn emit(id: u32, args: &[u64; 6], old_credentials: &CredentialSet, result: i64) {
    if try_emit(id, args, old_credentials, result).is_err() {
        count_drop(kind_of(id));
    }
}

#[inline(always)]
fn try_emit(
    id: u32,
    args: &[u64; 6],
    old_credentials: &CredentialSet,
    result: i64,
) -> Result<(), i64> {
    let config = config();
    let (pid, tgid) = current_pid_tgid();
    let kind = kind_of(id);
    let record = SCRATCH.get_ptr_mut(0).ok_or(-12i64)?;
    let record = unsafe { &mut *record };
    let task = current_task();
    record.header = header(kind, 0, pid, tgid);
    record.syscall = id;
    record.flags = 0;
    record.result = result;
    record.args = *args;
    record.aux = Aux::ZERO;
    record.str_len = [0; 2];
    record.reserved = 0;
    record.euid = credentials(&config, task).map(|c| c.euid).unwrap_or(0);
    let keep = match kind {
        KIND_FILE => file(&config, id, record)?,
        KIND_NETWORK => network(&config, task, id, result, record)?,
        KIND_CREDENTIAL => {
            let new = credentials(&config, task)?;
            let cred = record.aux.cred_mut();
            cred.old = *old_credentials;
            cred.new = new;
            true
        }
        KIND_MODULE => {
            copy_string_args(id, record);
            true
        }
        KIND_BPF => {
            let prog_type: u32 = unsafe { bpf_probe_read_user(args[1] as *const u32) }.unwrap_or(0);
            let name: [u8; 16] =
                unsafe { bpf_probe_read_user((args[1] + BPF_ATTR_PROG_NAME) as *const [u8; 16]) }
                    .unwrap_or([0; 16]);
            let bpf = record.aux.bpf_mut();
            bpf.prog_type = prog_type as u64;
            bpf.prog_name = name;
            true
        }
        KIND_MEMFD => {
            copy_string_args(id, record);
            true
        }
        KIND_NAMESPACE => true,
        KIND_IO_URING => {
            let uring = record.aux.uring_mut();
            if id == sys::IO_URING_SUBMIT {
                uring.opcode = args[0];
            } else {
                let flags: u32 =
                    unsafe { bpf_probe_read_user((args[1] + IO_URING_PARAMS_FLAGS) as *const u32) }
                        .unwrap_or(0);
                uring.entries = args[0];
                uring.flags = flags as u64;
            }
            true
        }
        // ptrace and signals: the arguments say it all.
        _ => true,
    };
    if keep {
        submit(record)?;
    }
    Ok(())
}

/// Sends the used prefix of the record (an error when the ring buffer is full).
#[inline(always)]
fn submit(record: &mut SyscallRecord) -> Result<(), i64> {
    let used = if record.str_len[1] > 0 {
        STR_SLOT + record.str_len[1] as usize + 1
    } else if record.str_len[0] > 0 {
        record.str_len[0] as usize + 1
    } else {
        0
    };
    let mut size = SYSCALL_FIXED_SIZE + used;
    if size > core::mem::size_of::<SyscallRecord>() {
        size = core::mem::size_of::<SyscallRecord>();
    }
    record.header.size = size as u32;
    let bytes =
        unsafe { core::slice::from_raw_parts(record as *const SyscallRecord as *const u8, size) };
    EVENTS.output::<[u8]>(bytes, 0).map_err(|e| e as i64)
}

/// Copies the arguments the syscall table names for the string slots (the paths, a name,
/// parameters) into them.
#[inline(always)]
fn copy_string_args(id: u32, record: &mut SyscallRecord) {
    let [first, second] = sys::string_args(id);
    let arg = |i: usize| record.args.get(i).copied().unwrap_or(0);
    let (first, second) = (arg(first), arg(second));
    copy_user_str(first, record, 0);
    copy_user_str(second, record, 1);
}

/// Copies a NUL-terminated user string into string slot `slot` (0 or 1).
#[inline(always)]
fn copy_user_str(address: u64, record: &mut SyscallRecord, slot: usize) {
    if address == 0 {
        return;
    }
    let start = if slot == 0 { 0 } else { STR_SLOT };
    let dst = &mut record.strings[start..start + STR_SLOT];
    if let Ok(bytes) = unsafe { bpf_probe_read_user_str_bytes(address as *const u8, dst) } {
        let len = bytes.len() as u32;
        record.str_len[slot & 1] = len;
        if len as usize >= STR_SLOT - 1 {
            record.flags |= if slot == 0 {
                SYS_STR0_TRUNCATED
            } else {
                SYS_STR1_TRUNCATED
            };
        }
    }
}

/// The path in slot 0, with the offset of its last component and whether it is absolute
/// (relative paths are made absolute in user space).
#[inline(always)]
fn first_path(record: &SyscallRecord) -> Option<(*const u8, u32, u32, bool)> {
    let len = record.str_len[0];
    if len == 0 {
        return None;
    }
    let absolute = record.strings[0] == b'/';
    Some((
        record.strings.as_ptr(),
        len,
        basename_start(record, len),
        absolute,
    ))
}

/// Offset just after the last `/` in slot 0, or 0 for a path that is one name (looking back
/// at most `NAME_SCAN` bytes; a longer file name is not matched by name).
#[inline(always)]
fn basename_start(record: &SyscallRecord, len: u32) -> u32 {
    for back in 1..NAME_SCAN {
        if back > len {
            return 0;
        }
        let at = (len - back) as usize & (STR_SLOT - 1);
        if record.strings[at] == b'/' {
            return at as u32 + 1;
        }
    }
    len
}

/// File calls: which arguments are paths, file descriptors and directory descriptors.
#[inline(always)]
fn file(config: &ProbeConfig, id: u32, record: &mut SyscallRecord) -> Result<bool, i64> {
    let a = record.args;
    copy_string_args(id, record);
    // Every successful change of directory, muted or not: relative paths are resolved against
    // the directory user space follows from them.
    if matches!(id, sys::CHDIR | sys::FCHDIR) {
        relative_bases(config, id, record);
        return Ok(record.result == 0);
    }
    let is_open = matches!(id, sys::OPEN | sys::OPENAT | sys::OPENAT2 | sys::CREAT);
    let mut write_like = true;
    if is_open {
        let (flags, mode) = match id {
            sys::OPEN => (a[1], a[2]),
            sys::OPENAT => (a[2], a[3]),
            sys::OPENAT2 => {
                let how: [u64; 2] =
                    unsafe { bpf_probe_read_user(a[2] as *const [u64; 2]) }.unwrap_or([0; 2]);
                (how[0], how[1])
            }
            _ => (O_CREAT | O_TRUNC | 1, a[1]),
        };
        let file = record.aux.file_mut();
        file.open_flags = flags;
        file.mode = mode;
        write_like = flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0;
    }
    if id == sys::MOUNT {
        let fs_type = &mut record.aux.file_mut().fs_type;
        let _ = unsafe { bpf_probe_read_user_str_bytes(a[2] as *const u8, fs_type) };
    }
    let Some((path, len, leaf, absolute)) = first_path(record) else {
        return Ok(write_like);
    };
    // Muted prefixes are absolute; a relative path is only known in user space.
    if absolute && is_muted(config, path, len) {
        return Ok(false);
    }
    if !write_like {
        if record.aux.file().open_flags & O_DIRECTORY != 0 && record.result >= 0 {
            let opened = directory_identity(config, record.result as u64);
            record.aux.file_mut().opened_directory = opened;
            if !directory_worth_reporting(opened) {
                return Ok(false);
            }
            record.flags |= SYS_DIRECTORY_OPEN;
            relative_bases(config, id, record);
            return Ok(true);
        }
        // A relative read is caught by its file name (sensitive prefixes are absolute).
        if !is_sensitive(config, path, len, leaf) {
            return Ok(false);
        }
        record.flags |= SYS_SENSITIVE_READ;
    }
    relative_bases(config, id, record);
    Ok(true)
}

/// For a record that is sent: which directory each relative path is relative to, by identity
/// (user space knows the paths of directories from their opens, also once the descriptor is
/// closed or the process gone).
#[inline(always)]
fn relative_bases(config: &ProbeConfig, id: u32, record: &mut SyscallRecord) {
    let (first, second) = directory_fds(id, &record.args);
    if id == sys::FCHDIR || (record.str_len[0] > 0 && record.strings[0] != b'/') {
        record.aux.file_mut().path_directories[0] = directory_identity(config, first);
    }
    if record.str_len[1] > 0 && record.strings[STR_SLOT] != b'/' {
        record.aux.file_mut().path_directories[1] = directory_identity(config, second);
    }
}

/// A directory open is reported at most once a minute per directory: the agent remembers the
/// path, so `find` or `ls` going over the same directories again costs no records.
#[inline(always)]
fn directory_worth_reporting(identity: DirectoryId) -> bool {
    if identity.inode == 0 {
        return false;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let key = [identity.generation_dev, identity.inode];
    if let Some(&last) = unsafe { DIRECTORIES_REPORTED.get(&key) } {
        if now.wrapping_sub(last) < DIRECTORY_REPORT_INTERVAL_NS {
            return false;
        }
    }
    let _ = DIRECTORIES_REPORTED.insert(&key, &now, 0);
    true
}

/// The directory descriptors of the first and second path arguments (`AT_FDCWD` for calls
/// without one; for `fchdir`, its descriptor).
#[inline(always)]
fn directory_fds(id: u32, a: &[u64; 6]) -> (u64, u64) {
    let [first, second] = sys::directory_args(id);
    let arg = |i: usize| a.get(i).copied().unwrap_or(AT_FDCWD as u64);
    (arg(first), arg(second))
}

/// The identity of directory descriptor `fd`; zero for the working directory or a descriptor
/// that is not open.
#[inline(always)]
fn directory_identity(config: &ProbeConfig, fd: u64) -> DirectoryId {
    if fd as i32 == AT_FDCWD {
        return DirectoryId::default();
    }
    let Ok(file) = fd_file(config, current_task(), fd as u32 as u64) else {
        return DirectoryId::default();
    };
    inode_identity(config, file).unwrap_or_default()
}

/// Network calls: the address passed by the caller and what the socket itself says.
#[inline(always)]
fn network(
    config: &ProbeConfig,
    task: Ptr,
    id: u32,
    result: i64,
    record: &mut SyscallRecord,
) -> Result<bool, i64> {
    let a = record.args;
    let (fd, address, address_len) = match id {
        sys::CONNECT | sys::BIND => (a[0], a[1], a[2]),
        sys::SENDTO => (a[0], a[4], a[5]),
        sys::ACCEPT | sys::ACCEPT4 | sys::SOCKET => {
            if result < 0 {
                return Ok(id == sys::SOCKET);
            }
            (result as u64, 0, 0)
        }
        _ => (a[0], 0, 0),
    };
    if address != 0 && address_len > 0 {
        let len = if address_len > 32 {
            32
        } else {
            address_len as usize
        };
        let dst = &mut record.aux.net_mut().sockaddr;
        let _ = unsafe { bpf_probe_read_user_buf(address as *const u8, &mut dst[..len & 63]) };
    }
    if let Ok(sk) = fd_sock(config, task, fd) {
        let _ = socket_facts(config, sk, record);
    }
    if id == sys::SENDTO && record.aux.net().socket_type != SOCK_DGRAM {
        return Ok(false);
    }
    if id == sys::RECVFROM || id == sys::RECVMSG {
        return Ok(dns_answer(id, result, record));
    }
    Ok(true)
}

/// For a DNS answer received (`result` > 0 bytes from port 53, as `exit` checked with
/// [`from_dns_port`]): its first bytes into string slot 0, the sender into
/// [`NetAux::sockaddr`](kestrel_ebpf_abi::NetAux::sockaddr).
#[inline(always)]
fn dns_answer(id: u32, result: i64, record: &mut SyscallRecord) -> bool {
    let a = record.args;
    // Where the data went (the first buffer), its size, and where the sender was written.
    let (buffer, capacity, sender) = if id == sys::RECVFROM {
        (a[1], a[2], a[4])
    } else {
        // struct msghdr: msg_name at 0; struct iovec: base at 0, len at 8.
        let name: u64 = unsafe { bpf_probe_read_user(a[1] as *const u64) }.unwrap_or(0);
        let iov: u64 =
            unsafe { bpf_probe_read_user((a[1] + MSGHDR_IOV) as *const u64) }.unwrap_or(0);
        let first: [u64; 2] = if iov == 0 {
            [0; 2]
        } else {
            unsafe { bpf_probe_read_user(iov as *const [u64; 2]) }.unwrap_or([0; 2])
        };
        (first[0], first[1], name)
    };
    if sender != 0 {
        let dst = &mut record.aux.net_mut().sockaddr;
        let _ = unsafe { bpf_probe_read_user_buf(sender as *const u8, &mut dst[..28]) };
    }
    if buffer == 0 {
        return false;
    }
    let mut len = result as u64;
    if len > capacity {
        len = capacity;
    }
    if len > (STR_SLOT - 1) as u64 {
        len = (STR_SLOT - 1) as u64;
        record.flags |= SYS_STR0_TRUNCATED;
    }
    let len = len as usize & (STR_SLOT - 1);
    let dst = &mut record.strings[..STR_SLOT];
    if unsafe { bpf_probe_read_user_buf(buffer as *const u8, &mut dst[..len]) }.is_err() {
        return false;
    }
    record.str_len[0] = len as u32;
    true
}

/// Family, protocol, type and both endpoints of socket `sk`.
#[inline(always)]
fn socket_facts(config: &ProbeConfig, sk: Ptr, record: &mut SyscallRecord) -> Result<(), i64> {
    let net = record.aux.net_mut();
    let family: u16 = read_at(sk, config.skc[4])?;
    net.family = family as u64;
    net.protocol = read_at::<u16>(sk, config.sk_protocol)? as u64;
    net.socket_type = read_at::<u16>(sk, config.sk_type)? as u64;
    if family as u64 == AF_INET6 {
        let local = read_at(sk, config.skc[6])?;
        let remote = read_at(sk, config.skc[5])?;
        net.local_address = local;
        net.remote_address = remote;
    } else {
        net.local_address = ipv4_address(read_at(sk, config.skc[1])?);
        net.remote_address = ipv4_address(read_at(sk, config.skc[0])?);
    }
    net.local_port = read_at::<u16>(sk, config.skc[3])? as u64;
    net.remote_port = u16::from_be(read_at::<u16>(sk, config.skc[2])?) as u64;
    Ok(())
}

/// An IPv4 address in the first 4 bytes of a 16-byte address.
#[inline(always)]
fn ipv4_address(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}
