//! Log source routing: which Sigma `category` each event kind belongs to.
//!
//! Sigma's Linux categories `process_creation`, `file_event`, `file_change`, `file_delete`,
//! `file_rename` and `network_connection` keep their Sysmon-for-Linux meaning. Kestrel adds its
//! own categories for the other event kinds (see [`Category`]). One event can belong to several
//! categories (a rename is a `file_rename` and, for its destination, a `file_event`).

use kestrel_proto::event::Payload;
use kestrel_proto::{Event, FileOp, NetworkOp};

/// A Sigma log source category that Kestrel evaluates (always with `product: linux`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// `process_creation`: an exec.
    ProcessCreation,
    /// `process_fork` (Kestrel): a new process (fork/clone without exec).
    ProcessFork,
    /// `process_termination`: a process exited.
    ProcessTermination,
    /// `file_event`: a file was created or written: an open for writing, creating or
    /// truncating, a truncate, a rename or link destination, a new symlink.
    FileEvent,
    /// `file_change`: a file's metadata changed: chmod, chown, utimes (timestomping).
    FileChange,
    /// `file_delete`: unlink or rmdir.
    FileDelete,
    /// `file_rename`: a rename (`SourceFilename` -> `TargetFilename`).
    FileRename,
    /// `file_access` (Kestrel, the Windows category's meaning): any open the agent reports,
    /// including read-only opens of sensitive files (shadow, sudoers, SSH keys).
    FileAccess,
    /// `file_link` (Kestrel): a hard link or symlink was created.
    FileLink,
    /// `mount` (Kestrel): mount or umount.
    Mount,
    /// `network_connection`: connect, accept, or a UDP send with a destination.
    NetworkConnection,
    /// `network_listen` (Kestrel): bind or listen.
    NetworkListen,
    /// `packet_socket` (Kestrel): an AF_PACKET socket (sniffing or injection).
    PacketSocket,
    /// `credential_change` (Kestrel): setuid/setgid family, capset.
    CredentialChange,
    /// `process_access`: ptrace or process_vm_writev on another process.
    ProcessAccess,
    /// `process_signal` (Kestrel): a signal sent to another process.
    ProcessSignal,
    /// `kernel_module_load` (Kestrel): init_module / finit_module.
    KernelModuleLoad,
    /// `bpf_program_load` (Kestrel): bpf(BPF_PROG_LOAD).
    BpfProgramLoad,
    /// `memfd_create` (Kestrel): an anonymous memory file.
    MemfdCreate,
    /// `namespace_change` (Kestrel): setns or unshare.
    NamespaceChange,
    /// `io_uring` (Kestrel): io_uring setup or submitted operations.
    IoUring,
    /// `dns_query` (the Windows category's meaning): a DNS answer a process received, with the
    /// name asked for and the addresses it resolved to.
    DnsQuery,
    /// `process_rename` (Kestrel): a process renamed itself (`prctl(PR_SET_NAME)` by its main
    /// thread).
    ProcessRename,
}

/// Every category, in the order of their bit positions.
pub const CATEGORIES: [Category; 23] = [
    Category::ProcessCreation,
    Category::ProcessFork,
    Category::ProcessTermination,
    Category::FileEvent,
    Category::FileChange,
    Category::FileDelete,
    Category::FileRename,
    Category::FileAccess,
    Category::FileLink,
    Category::Mount,
    Category::NetworkConnection,
    Category::NetworkListen,
    Category::PacketSocket,
    Category::CredentialChange,
    Category::ProcessAccess,
    Category::ProcessSignal,
    Category::KernelModuleLoad,
    Category::BpfProgramLoad,
    Category::MemfdCreate,
    Category::NamespaceChange,
    Category::IoUring,
    Category::DnsQuery,
    Category::ProcessRename,
];

/// Number of categories.
pub const CATEGORY_COUNT: usize = CATEGORIES.len();

impl Category {
    /// The Sigma `category` name.
    pub fn name(self) -> &'static str {
        match self {
            Category::ProcessCreation => "process_creation",
            Category::ProcessFork => "process_fork",
            Category::ProcessTermination => "process_termination",
            Category::FileEvent => "file_event",
            Category::FileChange => "file_change",
            Category::FileDelete => "file_delete",
            Category::FileRename => "file_rename",
            Category::FileAccess => "file_access",
            Category::FileLink => "file_link",
            Category::Mount => "mount",
            Category::NetworkConnection => "network_connection",
            Category::NetworkListen => "network_listen",
            Category::PacketSocket => "packet_socket",
            Category::CredentialChange => "credential_change",
            Category::ProcessAccess => "process_access",
            Category::ProcessSignal => "process_signal",
            Category::KernelModuleLoad => "kernel_module_load",
            Category::BpfProgramLoad => "bpf_program_load",
            Category::MemfdCreate => "memfd_create",
            Category::NamespaceChange => "namespace_change",
            Category::IoUring => "io_uring",
            Category::DnsQuery => "dns_query",
            Category::ProcessRename => "process_rename",
        }
    }

    /// The category with this Sigma name.
    pub fn from_name(name: &str) -> Option<Category> {
        CATEGORIES.into_iter().find(|c| c.name() == name)
    }

    /// Position of this category in [`CATEGORIES`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// This category as a one-bit [`CategorySet`].
    pub const fn bit(self) -> CategorySet {
        CategorySet(1 << self as u32)
    }
}

/// A set of categories as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CategorySet(pub u32);

impl CategorySet {
    /// No category.
    pub const EMPTY: CategorySet = CategorySet(0);
    /// Every category.
    pub const ALL: CategorySet = CategorySet((1 << CATEGORY_COUNT as u32) - 1);

    /// The union of both sets.
    pub const fn or(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 | other.0)
    }

    /// True when `category` is in the set.
    pub fn contains(self, category: Category) -> bool {
        self.0 & category.bit().0 != 0
    }

    /// True when the set has no category.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The categories in the set, in [`CATEGORIES`] order.
    pub fn iter(self) -> impl Iterator<Item = Category> {
        CATEGORIES.into_iter().filter(move |c| self.contains(*c))
    }
}

/// The categories `event` belongs to (empty for events no rule can see, e.g. without payload).
pub fn categories_of(event: &Event) -> CategorySet {
    use Category as C;
    let Some(payload) = &event.payload else {
        return CategorySet::EMPTY;
    };
    match payload {
        Payload::Exec(_) => C::ProcessCreation.bit(),
        Payload::Fork(_) => C::ProcessFork.bit(),
        Payload::Exit(_) => C::ProcessTermination.bit(),
        Payload::File(file) => match FileOp::try_from(file.op).unwrap_or(FileOp::Unspecified) {
            FileOp::FileOpen => C::FileEvent.bit().or(C::FileAccess.bit()),
            FileOp::FileReadSensitive => C::FileAccess.bit(),
            FileOp::FileTruncate => C::FileEvent.bit(),
            FileOp::FileRename => C::FileRename.bit().or(C::FileEvent.bit()),
            FileOp::FileUnlink | FileOp::FileRmdir => C::FileDelete.bit(),
            FileOp::FileChmod | FileOp::FileChown | FileOp::FileUtimes => C::FileChange.bit(),
            FileOp::FileLink | FileOp::FileSymlink => C::FileLink.bit().or(C::FileEvent.bit()),
            FileOp::FileMount | FileOp::FileUmount => C::Mount.bit(),
            FileOp::Unspecified => CategorySet::EMPTY,
        },
        Payload::Network(net) => {
            match NetworkOp::try_from(net.op).unwrap_or(NetworkOp::Unspecified) {
                NetworkOp::NetworkConnect | NetworkOp::NetworkAccept | NetworkOp::NetworkSend => {
                    C::NetworkConnection.bit()
                }
                NetworkOp::NetworkListen | NetworkOp::NetworkBind => C::NetworkListen.bit(),
                NetworkOp::NetworkPacketSocket => C::PacketSocket.bit(),
                NetworkOp::NetworkDnsAnswer => C::DnsQuery.bit(),
                NetworkOp::Unspecified => CategorySet::EMPTY,
            }
        }
        Payload::Credential(_) => C::CredentialChange.bit(),
        Payload::Ptrace(_) => C::ProcessAccess.bit(),
        Payload::Signal(_) => C::ProcessSignal.bit(),
        Payload::Module(_) => C::KernelModuleLoad.bit(),
        Payload::Bpf(_) => C::BpfProgramLoad.bit(),
        Payload::Memfd(_) => C::MemfdCreate.bit(),
        Payload::Namespace(_) => C::NamespaceChange.bit(),
        Payload::IoUring(_) => C::IoUring.bit(),
        Payload::ProcessRename(_) => C::ProcessRename.bit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_proto::{FileEvent, NetworkEvent};

    #[test]
    fn names_round_trip() {
        for c in CATEGORIES {
            assert_eq!(Category::from_name(c.name()), Some(c));
            assert_eq!(CATEGORIES[c.index()], c);
        }
        assert_eq!(Category::from_name("registry_set"), None);
    }

    fn file(op: FileOp) -> Event {
        Event {
            payload: Some(Payload::File(FileEvent {
                op: op as i32,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn file_operations_route_to_sysmon_categories() {
        let names = |e: &Event| {
            categories_of(e)
                .iter()
                .map(Category::name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&file(FileOp::FileOpen)),
            ["file_event", "file_access"]
        );
        assert_eq!(
            names(&file(FileOp::FileRename)),
            ["file_event", "file_rename"]
        );
        assert_eq!(names(&file(FileOp::FileUnlink)), ["file_delete"]);
        assert_eq!(names(&file(FileOp::FileRmdir)), ["file_delete"]);
        assert_eq!(names(&file(FileOp::FileChmod)), ["file_change"]);
        assert_eq!(names(&file(FileOp::FileUtimes)), ["file_change"]);
        assert_eq!(names(&file(FileOp::FileReadSensitive)), ["file_access"]);
        assert!(categories_of(&file(FileOp::Unspecified)).is_empty());
    }

    #[test]
    fn network_operations_route_by_direction() {
        let net = |op: NetworkOp| Event {
            payload: Some(Payload::Network(NetworkEvent {
                op: op as i32,
                ..Default::default()
            })),
            ..Default::default()
        };
        let connect = categories_of(&net(NetworkOp::NetworkConnect));
        assert!(connect.contains(Category::NetworkConnection));
        assert!(categories_of(&net(NetworkOp::NetworkAccept)).contains(Category::NetworkConnection));
        assert!(categories_of(&net(NetworkOp::NetworkListen)).contains(Category::NetworkListen));
        assert!(
            categories_of(&net(NetworkOp::NetworkPacketSocket)).contains(Category::PacketSocket)
        );
        assert_eq!(
            categories_of(&net(NetworkOp::NetworkDnsAnswer)),
            Category::DnsQuery.bit(),
            "a DNS answer is not a network connection"
        );
        assert!(categories_of(&Event::default()).is_empty());
    }
}
