//! The only place that turns ring-buffer bytes into typed records: one function per kind, every
//! length checked against the bytes actually received.

use kestrel_ebpf_abi::{
    Aux, ExecRecord, ExitRecord, ForkRecord, RecordHeader, SyscallRecord, ARGV_MAX,
    EXEC_ARGV_TRUNCATED, EXEC_ARGV_UNREADABLE, EXEC_FILENAME_TRUNCATED, EXEC_MEMFD,
    EXEC_UPPER_LAYER, FILENAME_MAX, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_PROCESS_RENAME,
    KIND_SLOTS, STR_SLOT, SYSCALL_FIXED_SIZE, SYS_DIRECTORY_OPEN, SYS_SENSITIVE_READ,
    SYS_STR0_TRUNCATED, SYS_STR1_TRUNCATED,
};

/// A record that cannot be decoded. The reader logs it, counts it and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the record kind needs.
    #[error("record of kind {kind}: {len} bytes, need {need}")]
    Truncated { kind: u32, len: usize, need: usize },
    /// A kind this agent does not know.
    #[error("unknown record kind {kind} ({len} bytes)")]
    UnknownKind { kind: u32, len: usize },
    /// A length field larger than its buffer.
    #[error("record of kind {kind}: field {field} length {value} exceeds {max}")]
    BadLength {
        kind: u32,
        field: &'static str,
        value: u32,
        max: usize,
    },
}

/// Fields every record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Nanoseconds since boot.
    pub boot_ns: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
}

/// A decoded kernel record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelRecord {
    /// A successful exec.
    Exec(Exec),
    /// A new process.
    Fork(Fork),
    /// A process ended.
    Exit(Exit),
    /// A followed syscall (file, network, credential, ... kinds).
    Syscall(Box<Syscall>),
}

/// A followed syscall, decoded: raw arguments and kind-specific values (see
/// `kestrel_ebpf_abi::SyscallRecord`) plus its strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    pub common: Common,
    /// `KIND_*`.
    pub kind: u32,
    /// Id from `kestrel_ebpf_abi::sys`.
    pub syscall: u32,
    pub result: i64,
    pub args: [u64; 6],
    pub aux: Aux,
    pub euid: u32,
    /// First path argument (as the caller passed it).
    pub path: String,
    pub path_truncated: bool,
    /// Second path argument.
    pub second_path: String,
    pub second_path_truncated: bool,
    /// A read-only open reported because its path is sensitive.
    pub sensitive_read: bool,
    /// A read-only open of a directory, reported only so that the agent learns its path
    /// (`aux.file().opened_directory` identifies it).
    pub directory_open: bool,
    /// The bytes received, for a DNS answer (`recvfrom`, `recvmsg`); empty otherwise.
    pub received: Vec<u8>,
}

/// A successful exec, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub common: Common,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    /// Executable path as the kernel saw it.
    pub filename: String,
    pub filename_truncated: bool,
    /// Arguments; lossy UTF-8.
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// The kernel could not read the argument vector.
    pub argv_unreadable: bool,
    pub euid: u32,
    pub egid: u32,
    pub cap_effective: u64,
    pub exe_dev: u64,
    pub exe_inode: u64,
    /// The executed file had no link left (deleted, or never linked).
    pub exe_deleted: bool,
    /// The executed file is a memfd.
    pub exe_memfd: bool,
    /// The executed file is in an overlay file system's writable upper layer.
    pub exe_upper_layer: bool,
    /// Controlling terminal as `/proc/PID/stat`'s `tty_nr` (0: none).
    pub tty: u32,
    /// Audit login uid and session id (None: not set, or no audit in this kernel).
    pub login: LoginIds,
}

/// A process's audit login identity: who logged in, and which login session it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginIds {
    /// `loginuid`.
    pub uid: Option<u32>,
    /// `sessionid`.
    pub session: Option<u32>,
}

impl LoginIds {
    /// From the kernel's values, where `u32::MAX` ([`kestrel_ebpf_abi::NO_LOGIN_ID`]) is unset.
    pub fn from_kernel(uid: u32, session: u32) -> LoginIds {
        let set = |id| (id != kestrel_ebpf_abi::NO_LOGIN_ID).then_some(id);
        LoginIds {
            uid: set(uid),
            session: set(session),
        }
    }
}

/// A new process, decoded. `common` describes the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    pub common: Common,
    pub child_pid: u32,
    pub child_tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
}

/// A process exit, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub common: Common,
    pub ppid: u32,
    /// Exit status when the process exited normally.
    pub code: i32,
    /// Terminating signal, 0 for a normal exit.
    pub signal: i32,
    pub core_dumped: bool,
    pub comm: String,
}

impl KernelRecord {
    /// The fields common to every kind.
    pub fn common(&self) -> &Common {
        match self {
            KernelRecord::Exec(e) => &e.common,
            KernelRecord::Fork(f) => &f.common,
            KernelRecord::Exit(x) => &x.common,
            KernelRecord::Syscall(s) => &s.common,
        }
    }
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelRecord, DecodeError> {
    let header: RecordHeader = read(bytes, 0)?;
    match header.kind {
        KIND_EXEC => decode_exec(bytes).map(KernelRecord::Exec),
        KIND_FORK => decode_fork(bytes).map(KernelRecord::Fork),
        KIND_EXIT => decode_exit(bytes).map(KernelRecord::Exit),
        kind if (KIND_EXIT + 1..=KIND_PROCESS_RENAME).contains(&kind) && kind < KIND_SLOTS => {
            decode_syscall(bytes).map(|s| KernelRecord::Syscall(Box::new(s)))
        }
        kind => Err(DecodeError::UnknownKind {
            kind,
            len: bytes.len(),
        }),
    }
}

fn decode_exec(bytes: &[u8]) -> Result<Exec, DecodeError> {
    let r: ExecRecord = read(bytes, KIND_EXEC)?;
    let filename_len = checked_len(KIND_EXEC, "filename_len", r.filename_len, FILENAME_MAX)?;
    let argv_len = checked_len(KIND_EXEC, "argv_len", r.argv_len, ARGV_MAX)?;
    Ok(Exec {
        common: common(&r.header),
        ppid: r.ppid,
        uid: r.uid,
        gid: r.gid,
        comm: c_string(&r.comm),
        filename: String::from_utf8_lossy(&r.filename[..filename_len]).into_owned(),
        filename_truncated: r.flags & EXEC_FILENAME_TRUNCATED != 0,
        argv: split_argv(&r.argv[..argv_len]),
        argv_truncated: r.flags & EXEC_ARGV_TRUNCATED != 0,
        argv_unreadable: r.flags & EXEC_ARGV_UNREADABLE != 0,
        euid: r.euid,
        egid: r.egid,
        cap_effective: r.cap_effective,
        exe_dev: r.exe_dev,
        exe_inode: r.exe_inode,
        exe_deleted: r.exe_inode != 0 && r.exe_nlink == 0,
        exe_memfd: r.flags & EXEC_MEMFD != 0,
        exe_upper_layer: r.flags & EXEC_UPPER_LAYER != 0,
        tty: r.tty,
        login: LoginIds::from_kernel(r.loginuid, r.sessionid),
    })
}

fn decode_syscall(bytes: &[u8]) -> Result<Syscall, DecodeError> {
    let kind = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"));
    if bytes.len() < SYSCALL_FIXED_SIZE {
        return Err(DecodeError::Truncated {
            kind,
            len: bytes.len(),
            need: SYSCALL_FIXED_SIZE,
        });
    }
    // Only the used prefix was sent: copy what arrived into a full-size record.
    let mut full = vec![0u8; std::mem::size_of::<SyscallRecord>()];
    let len = bytes.len().min(full.len());
    full[..len].copy_from_slice(&bytes[..len]);
    let r: SyscallRecord = read(&full, kind)?;
    let slot = |field: &'static str, index: usize, start: usize| -> Result<&[u8], DecodeError> {
        let used = checked_len(kind, field, r.str_len[index], STR_SLOT - 1)?;
        if used > 0 && start + used > len.saturating_sub(SYSCALL_FIXED_SIZE) {
            return Err(DecodeError::Truncated {
                kind,
                len: bytes.len(),
                need: SYSCALL_FIXED_SIZE + start + used,
            });
        }
        Ok(&r.strings[start..start + used])
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let first = slot("str_len[0]", 0, 0)?;
    let received = if matches!(
        r.syscall,
        kestrel_ebpf_abi::sys::RECVFROM | kestrel_ebpf_abi::sys::RECVMSG
    ) {
        first.to_vec()
    } else {
        Vec::new()
    };
    Ok(Syscall {
        common: common(&r.header),
        kind,
        syscall: r.syscall,
        result: r.result,
        args: r.args,
        aux: r.aux,
        euid: r.euid,
        path: text(first),
        path_truncated: r.flags & SYS_STR0_TRUNCATED != 0,
        second_path: text(slot("str_len[1]", 1, STR_SLOT)?),
        second_path_truncated: r.flags & SYS_STR1_TRUNCATED != 0,
        sensitive_read: r.flags & SYS_SENSITIVE_READ != 0,
        directory_open: r.flags & SYS_DIRECTORY_OPEN != 0,
        received,
    })
}

fn decode_fork(bytes: &[u8]) -> Result<Fork, DecodeError> {
    let r: ForkRecord = read(bytes, KIND_FORK)?;
    Ok(Fork {
        common: common(&r.header),
        child_pid: r.child_pid,
        child_tgid: r.child_tgid,
        uid: r.uid,
        gid: r.gid,
        comm: c_string(&r.comm),
    })
}

fn decode_exit(bytes: &[u8]) -> Result<Exit, DecodeError> {
    let r: ExitRecord = read(bytes, KIND_EXIT)?;
    Ok(Exit {
        common: common(&r.header),
        ppid: r.ppid,
        code: ((r.exit_code >> 8) & 0xff) as i32,
        signal: (r.exit_code & 0x7f) as i32,
        core_dumped: r.exit_code & 0x80 != 0,
        comm: c_string(&r.comm),
    })
}

fn common(h: &RecordHeader) -> Common {
    Common {
        boot_ns: h.boot_ns,
        pid: h.pid,
        tgid: h.tgid,
        cgroup_id: h.cgroup_id,
    }
}

/// Copies a `#[repr(C)]` record of plain integers out of `bytes` after checking its length.
fn read<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Truncated {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: the length is checked above and the abi records are plain integers and byte
    // arrays, valid for any bit pattern; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn checked_len(
    kind: u32,
    field: &'static str,
    value: u32,
    max: usize,
) -> Result<usize, DecodeError> {
    let len = value as usize;
    if len > max {
        return Err(DecodeError::BadLength {
            kind,
            field,
            value,
            max,
        });
    }
    Ok(len)
}

/// The text before the first NUL (lossy UTF-8): a task name, a file-system type, a program
/// name.
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// An argument area (`/proc/PID/cmdline`) bounded as the exec hook bounds it: the first
/// [`ARGV_MAX`] bytes as arguments, and whether anything past them was cut. Processes seeded
/// from `/proc` then cost no more in every event that names them as an ancestor than those
/// the kernel reported.
pub fn bounded_argv(area: &[u8]) -> (Vec<String>, bool) {
    let cut = area.len() > ARGV_MAX;
    (split_argv(&area[..area.len().min(ARGV_MAX)]), cut)
}

/// Splits the kernel's NUL-separated argument area into arguments. A final argument cut by
/// truncation has no trailing NUL and is kept as it is.
fn split_argv(area: &[u8]) -> Vec<String> {
    let area = area.strip_suffix(&[0]).unwrap_or(area);
    if area.is_empty() {
        return Vec::new();
    }
    area.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use kestrel_ebpf_abi::COMM_LEN;

    use super::*;

    fn as_bytes<T>(record: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain #[repr(C)] record.
        unsafe {
            std::slice::from_raw_parts((record as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn exec_record(argv: &[u8], filename: &str) -> ExecRecord {
        let mut r = ExecRecord {
            header: RecordHeader {
                kind: KIND_EXEC,
                size: std::mem::size_of::<ExecRecord>() as u32,
                boot_ns: 7,
                pid: 10,
                tgid: 10,
                cgroup_id: 99,
            },
            ppid: 1,
            uid: 1000,
            gid: 100,
            flags: 0,
            filename_len: filename.len() as u32,
            argv_len: argv.len() as u32,
            comm: [0; COMM_LEN],
            filename: [0; FILENAME_MAX],
            argv: [0; ARGV_MAX],
            euid: 0,
            egid: 0,
            cap_effective: 0,
            exe_dev: 0,
            exe_inode: 0,
            exe_nlink: 1,
            tty: 0,
            loginuid: 1000,
            sessionid: kestrel_ebpf_abi::NO_LOGIN_ID,
        };
        r.comm[..2].copy_from_slice(b"ls");
        r.filename[..filename.len()].copy_from_slice(filename.as_bytes());
        r.argv[..argv.len()].copy_from_slice(argv);
        r
    }

    #[test]
    fn exec_record_decodes_path_and_arguments() {
        let bytes = as_bytes(&exec_record(b"ls\0-l\0/tmp dir\0", "/usr/bin/ls"));
        let KernelRecord::Exec(e) = decode(&bytes).unwrap() else {
            panic!("not an exec")
        };
        assert_eq!(e.filename, "/usr/bin/ls");
        assert_eq!(e.argv, ["ls", "-l", "/tmp dir"]);
        assert_eq!(
            e.login,
            LoginIds {
                uid: Some(1000),
                session: None
            },
            "an unset id (u32::MAX) is absent"
        );
        assert_eq!(
            (e.common.pid, e.ppid, e.uid, e.gid, e.common.cgroup_id),
            (10, 1, 1000, 100, 99)
        );
        assert_eq!(e.comm, "ls");
        assert!(!e.argv_truncated && !e.filename_truncated);
    }

    #[test]
    fn truncated_argument_area_keeps_the_partial_last_argument() {
        let mut r = exec_record(b"echo\0abc", "/bin/echo");
        r.flags = EXEC_ARGV_TRUNCATED;
        let KernelRecord::Exec(e) = decode(&as_bytes(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(e.argv, ["echo", "abc"]);
        assert!(e.argv_truncated);
    }

    #[test]
    fn short_buffer_is_a_truncation_error_naming_the_kind() {
        let bytes = as_bytes(&exec_record(b"x\0", "/x"));
        let err = decode(&bytes[..100]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                kind: KIND_EXEC,
                len: 100,
                need: bytes.len()
            }
        );
        assert!(matches!(
            decode(&bytes[..10]),
            Err(DecodeError::Truncated { kind: 0, .. })
        ));
    }

    #[test]
    fn oversized_length_field_is_rejected() {
        let mut r = exec_record(b"x\0", "/x");
        r.argv_len = ARGV_MAX as u32 + 1;
        assert!(matches!(
            decode(&as_bytes(&r)),
            Err(DecodeError::BadLength {
                field: "argv_len",
                ..
            })
        ));
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let mut r = exec_record(b"", "");
        r.header.kind = 77;
        assert!(matches!(
            decode(&as_bytes(&r)),
            Err(DecodeError::UnknownKind { kind: 77, .. })
        ));
    }

    #[test]
    fn exit_code_splits_status_and_signal() {
        let mut r = ExitRecord {
            header: RecordHeader {
                kind: KIND_EXIT,
                size: 56,
                boot_ns: 1,
                pid: 5,
                tgid: 5,
                cgroup_id: 1,
            },
            ppid: 1,
            exit_code: 3 << 8,
            comm: [0; COMM_LEN],
        };
        let KernelRecord::Exit(x) = decode(&as_bytes(&r)).unwrap() else {
            panic!()
        };
        assert_eq!((x.code, x.signal, x.core_dumped), (3, 0, false));
        r.exit_code = 9 | 0x80;
        let KernelRecord::Exit(x) = decode(&as_bytes(&r)).unwrap() else {
            panic!()
        };
        assert_eq!((x.code, x.signal, x.core_dumped), (0, 9, true));
    }
}
