//! The kind-specific part of a [`SyscallRecord`](crate::SyscallRecord): sixteen words that each
//! record kind reads through its own `#[repr(C)]` view, so that no code on either side indexes
//! slots by hand. Every view is plain integers and byte arrays (valid for any bit pattern) and
//! exactly as large as the words; the offsets are asserted below, so moving a field is a build
//! error rather than a wrong field in an alert.

use core::mem::{offset_of, size_of};

/// Words in [`Aux`].
pub const AUX_WORDS: usize = 16;

/// The kind-specific values of a syscall record, read and written through the view of the
/// record's kind: [`Aux::file`], [`Aux::net`], [`Aux::cred`], [`Aux::bpf`], [`Aux::uring`].
/// Kinds without a view (ptrace, signals, modules, memfd, namespaces) leave it zero.
#[repr(C)]
#[derive(Clone, Copy)]
pub union Aux {
    words: [u64; AUX_WORDS],
    file: FileAux,
    net: NetAux,
    cred: CredAux,
    bpf: BpfAux,
    uring: UringAux,
}

/// The identity of a directory that survives the reuse of its inode number:
/// `i_generation << 32 | s_dev`, then the inode number. All zero: none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirectoryId {
    /// `i_generation << 32 | s_dev`.
    pub generation_dev: u64,
    /// Inode number.
    pub inode: u64,
}

impl From<DirectoryId> for (u64, u64) {
    fn from(id: DirectoryId) -> Self {
        (id.generation_dev, id.inode)
    }
}

/// File calls ([`KIND_FILE`](crate::KIND_FILE)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileAux {
    /// Open flags actually used (openat2's `how.flags`); opens only.
    pub open_flags: u64,
    /// Mode of an open; opens only.
    pub mode: u64,
    /// The directory a [`SYS_DIRECTORY_OPEN`](crate::SYS_DIRECTORY_OPEN) opened.
    pub opened_directory: DirectoryId,
    /// The directory descriptors the relative first and second path are resolved against
    /// (zero when the working directory is); for `fchdir`, its descriptor in the first.
    pub path_directories: [DirectoryId; 2],
    /// `mount`'s file-system type, NUL-terminated unless it fills the array.
    pub fs_type: [u8; 32],
    /// Unused, zero.
    pub unused: [u64; 4],
}

/// Network calls ([`KIND_NETWORK`](crate::KIND_NETWORK)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetAux {
    /// Socket family (`AF_*`, see [`linux`](crate::linux)).
    pub family: u64,
    /// Socket protocol.
    pub protocol: u64,
    /// Socket type (`SOCK_*`).
    pub socket_type: u64,
    /// The socket's local address in network order (IPv4 in the first 4 bytes).
    pub local_address: [u8; 16],
    /// The socket's local port.
    pub local_port: u64,
    /// The socket's remote address in network order (IPv4 in the first 4 bytes).
    pub remote_address: [u8; 16],
    /// The socket's remote port.
    pub remote_port: u64,
    /// The `sockaddr` the caller passed (up to 32 bytes); for a receive, the sender's address
    /// the call returned.
    pub sockaddr: [u8; 32],
    /// Unused, zero.
    pub unused: [u64; 3],
}

/// One set of credentials: the ids and the three capability sets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredentialSet {
    /// Real user id.
    pub ruid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Saved user id.
    pub suid: u32,
    /// File-system user id.
    pub fsuid: u32,
    /// Real group id.
    pub rgid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Saved group id.
    pub sgid: u32,
    /// File-system group id.
    pub fsgid: u32,
    /// Effective capabilities.
    pub cap_effective: u64,
    /// Permitted capabilities.
    pub cap_permitted: u64,
    /// Inheritable capabilities.
    pub cap_inheritable: u64,
}

/// Credential changes ([`KIND_CREDENTIAL`](crate::KIND_CREDENTIAL)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredAux {
    /// The credentials before the call.
    pub old: CredentialSet,
    /// Unused, zero.
    pub unused_after_old: u64,
    /// The credentials after the call.
    pub new: CredentialSet,
    /// Unused, zero.
    pub unused_after_new: u64,
}

/// `bpf(BPF_PROG_LOAD)` ([`KIND_BPF`](crate::KIND_BPF)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfAux {
    /// Program type.
    pub prog_type: u64,
    /// Program name, NUL-terminated unless it fills the array.
    pub prog_name: [u8; 16],
    /// Unused, zero.
    pub unused: [u64; 13],
}

/// io_uring ([`KIND_IO_URING`](crate::KIND_IO_URING)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringAux {
    /// Opcode of a submitted operation.
    pub opcode: u64,
    /// `io_uring_setup`'s entries.
    pub entries: u64,
    /// `io_uring_setup`'s `params.flags`.
    pub flags: u64,
    /// Unused, zero.
    pub unused: [u64; 13],
}

// SAFETY (for every accessor below): each view is `#[repr(C)]` plain integers and byte arrays,
// valid for any bit pattern, and exactly the size of the words (asserted below), so reading any
// field of the union is reading initialized bytes as a valid value.
impl Aux {
    /// All zero: what every record starts with.
    pub const ZERO: Self = Self {
        words: [0; AUX_WORDS],
    };

    /// The file view.
    #[inline(always)]
    pub fn file(&self) -> &FileAux {
        unsafe { &self.file }
    }

    /// The file view, to fill.
    #[inline(always)]
    pub fn file_mut(&mut self) -> &mut FileAux {
        unsafe { &mut self.file }
    }

    /// The network view.
    #[inline(always)]
    pub fn net(&self) -> &NetAux {
        unsafe { &self.net }
    }

    /// The network view, to fill.
    #[inline(always)]
    pub fn net_mut(&mut self) -> &mut NetAux {
        unsafe { &mut self.net }
    }

    /// The credential view.
    #[inline(always)]
    pub fn cred(&self) -> &CredAux {
        unsafe { &self.cred }
    }

    /// The credential view, to fill.
    #[inline(always)]
    pub fn cred_mut(&mut self) -> &mut CredAux {
        unsafe { &mut self.cred }
    }

    /// The bpf view.
    #[inline(always)]
    pub fn bpf(&self) -> &BpfAux {
        unsafe { &self.bpf }
    }

    /// The bpf view, to fill.
    #[inline(always)]
    pub fn bpf_mut(&mut self) -> &mut BpfAux {
        unsafe { &mut self.bpf }
    }

    /// The io_uring view.
    #[inline(always)]
    pub fn uring(&self) -> &UringAux {
        unsafe { &self.uring }
    }

    /// The io_uring view, to fill.
    #[inline(always)]
    pub fn uring_mut(&mut self) -> &mut UringAux {
        unsafe { &mut self.uring }
    }

    fn words(&self) -> &[u64; AUX_WORDS] {
        unsafe { &self.words }
    }
}

impl Default for Aux {
    fn default() -> Self {
        Self::ZERO
    }
}

impl PartialEq for Aux {
    fn eq(&self, other: &Self) -> bool {
        self.words() == other.words()
    }
}

impl Eq for Aux {}

impl core::fmt::Debug for Aux {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Aux").field(self.words()).finish()
    }
}

const WORD: usize = size_of::<u64>();
const _: () = assert!(size_of::<Aux>() == AUX_WORDS * WORD);
const _: () = assert!(size_of::<FileAux>() == size_of::<Aux>());
const _: () = assert!(size_of::<NetAux>() == size_of::<Aux>());
const _: () = assert!(size_of::<CredAux>() == size_of::<Aux>());
const _: () = assert!(size_of::<BpfAux>() == size_of::<Aux>());
const _: () = assert!(size_of::<UringAux>() == size_of::<Aux>());
const _: () = assert!(size_of::<CredentialSet>() == 7 * WORD);
// The slots as the record has always had them (word index * 8).
const _: () = assert!(offset_of!(FileAux, opened_directory) == 2 * WORD);
const _: () = assert!(offset_of!(FileAux, path_directories) == 4 * WORD);
const _: () = assert!(offset_of!(FileAux, fs_type) == 8 * WORD);
const _: () = assert!(offset_of!(NetAux, local_address) == 3 * WORD);
const _: () = assert!(offset_of!(NetAux, local_port) == 5 * WORD);
const _: () = assert!(offset_of!(NetAux, remote_address) == 6 * WORD);
const _: () = assert!(offset_of!(NetAux, remote_port) == 8 * WORD);
const _: () = assert!(offset_of!(NetAux, sockaddr) == 9 * WORD);
const _: () = assert!(offset_of!(CredAux, new) == 8 * WORD);
const _: () = assert!(offset_of!(BpfAux, prog_name) == WORD);
const _: () = assert!(offset_of!(UringAux, flags) == 2 * WORD);
