//! Turns decoded kernel records into protocol events: keeps the process table current, adds
//! user names, ancestry and wall-clock time, and hands each event to the outputs.

use std::time::Duration;

use kestrel_ebpf_abi::{linux::CLONE_NEWNS, sys, KIND_FILE};
use kestrel_proto::{
    event::Payload, Ancestor, Enrichment, Event, ExecEvent, ExitEvent, ForkEvent, Gap,
    NetworkEvent, Process,
};
use tokio::sync::mpsc;

use crate::{
    clock::BootClock,
    enrich::container::ContainerResolver,
    enrich::directories::Directories,
    enrich::dns::{Place, Resolved},
    enrich::paths::{self, fd_path, proc_link},
    enrich::process_table::{ProcessInfo, ProcessTable},
    enrich::users::UserNames,
    events::{
        file::{self, Bases},
        syscalls,
    },
    kernel::decode::{Exec, Exit, Fork, KernelRecord, Syscall},
    kernel::loss::LossMonitor,
    metrics::figures::figures,
    ship::jsonl::JsonlWriter,
};

/// How often the kernel drop counters are read.
const LOSS_POLL: Duration = Duration::from_millis(500);

/// Where events go after the pipeline.
#[derive(Default)]
pub struct Outputs {
    /// `--events-jsonl`.
    pub jsonl: Option<JsonlWriter>,
    /// The queue into the spool that the shipper sends from (overflow is counted in a Gap).
    pub shipper: Option<crate::ship::spool::SpoolSender>,
    /// Where Gap records (lost events) go besides the JSON-lines file.
    pub gaps: Option<mpsc::Sender<Gap>>,
}

/// The record -> event stage.
pub struct Pipeline {
    table: ProcessTable,
    /// Turns the table's entries into the processes of events.
    describer: Describer,
    outputs: Outputs,
    loss: Option<LossMonitor>,
    containers: Option<ContainerResolver>,
    /// Names of addresses, from the DNS answers seen.
    resolved: Resolved,
    /// Paths of directories opened, for calls relative to a descriptor of one.
    directories: Directories,
    /// Events the shipper queue had no room for.
    pub shipper_overflow: u64,
}

impl Pipeline {
    /// A pipeline starting from `table` (normally [`ProcessTable::from_proc`]).
    pub fn new(table: ProcessTable, outputs: Outputs) -> Self {
        Self {
            table,
            describer: Describer {
                users: UserNames::default(),
                clock: BootClock::now(),
                terminals: crate::enrich::tty::Names::default(),
            },
            outputs,
            loss: None,
            containers: None,
            resolved: Resolved::default(),
            directories: Directories::default(),
            shipper_overflow: 0,
        }
    }

    /// Also turns kernel drops into Gap records.
    pub fn with_loss_monitor(mut self, loss: LossMonitor) -> Self {
        self.loss = Some(loss);
        self
    }

    /// Also adds container context (and the enrichment status) to every event.
    pub fn with_containers(mut self, containers: ContainerResolver) -> Self {
        self.containers = Some(containers);
        self
    }

    /// Wall-clock nanoseconds now.
    fn now_unix_ns(&self) -> u64 {
        self.describer.clock.unix_ns(BootClock::boot_ns_now())
    }

    /// The process table as it stands.
    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    /// Consumes records until the channel closes, flushing the JSON-lines output after each
    /// burst so events reach the file promptly.
    pub async fn run(mut self, mut records: mpsc::Receiver<KernelRecord>) -> anyhow::Result<()> {
        let mut loss_tick = tokio::time::interval(LOSS_POLL);
        loop {
            tokio::select! {
                record = records.recv() => {
                    let Some(record) = record else { break };
                    self.handle(record)?;
                    while let Ok(record) = records.try_recv() {
                        self.handle(record)?;
                    }
                }
                _ = loss_tick.tick() => self.account_losses()?,
            }
            if let Some(jsonl) = &mut self.outputs.jsonl {
                jsonl.flush()?;
            }
        }
        self.account_losses()?;
        if let Some(jsonl) = &mut self.outputs.jsonl {
            jsonl.flush()?;
        }
        Ok(())
    }

    /// Emits a Gap for every kernel drop counter that rose since the last look.
    fn account_losses(&mut self) -> anyhow::Result<()> {
        let now = self.now_unix_ns();
        let Some(loss) = &mut self.loss else {
            return Ok(());
        };
        for gap in loss.poll(now)? {
            tracing::warn!(kind = %gap.kind, cpu = gap.cpu, count = gap.count, "kernel ring buffer full: events lost");
            figures().lost(static_kind_name(&gap.kind), "kernel", gap.count);
            if let Some(jsonl) = &mut self.outputs.jsonl {
                jsonl.write_gap(&gap)?;
            }
            if let Some(gaps) = &self.outputs.gaps {
                let _ = gaps.try_send(gap);
            }
        }
        Ok(())
    }

    fn handle(&mut self, record: KernelRecord) -> anyhow::Result<()> {
        let Some(event) = self.event_for(record) else {
            return Ok(());
        };
        figures().event(event.kind_name());
        if let Some(jsonl) = &mut self.outputs.jsonl {
            jsonl.write(&event)?;
        }
        if let Some(shipper) = &self.outputs.shipper {
            if shipper.try_send(event).is_err() {
                self.shipper_overflow += 1;
                if self.shipper_overflow.is_power_of_two() {
                    tracing::warn!(
                        lost = self.shipper_overflow,
                        "collector queue full: events not shipped"
                    );
                }
            }
        }
        Ok(())
    }

    /// Updates the process table with `record` and builds its event; `None` for a record that
    /// only tells the agent where things are (a change of working directory, a directory's
    /// open).
    pub fn event_for(&mut self, record: KernelRecord) -> Option<Event> {
        Some(match record {
            KernelRecord::Exec(exec) => self.exec_event(exec),
            KernelRecord::Fork(fork) => self.fork_event(fork),
            KernelRecord::Exit(exit) => self.exit_event(exit),
            KernelRecord::Syscall(syscall)
                if matches!(syscall.syscall, sys::CHDIR | sys::FCHDIR) =>
            {
                self.change_directory(&syscall);
                return None;
            }
            KernelRecord::Syscall(syscall) if syscall.directory_open => {
                self.learn_directory(&syscall);
                return None;
            }
            KernelRecord::Syscall(syscall) => self.syscall_event(&syscall),
        })
    }

    /// Follows a successful `chdir` or `fchdir`, so that the process's relative paths, and the
    /// working directory of what it runs next, are right even when it is gone by the time its
    /// events are read (when /proc could no longer say). Lexical, as the shell's `cd` is: a
    /// `..` after a symbolic link goes back to where the link was.
    fn change_directory(&mut self, syscall: &Syscall) {
        let tgid = syscall.common.tgid;
        let known = self.table.get(tgid).map(|p| p.cwd.as_str()).unwrap_or("");
        let path = &syscall.path;
        let followed = match syscall.syscall {
            sys::CHDIR if syscall.path_truncated => None,
            sys::CHDIR if path.starts_with('/') => Some(paths::normalize(path)),
            sys::CHDIR if !known.is_empty() => Some(paths::join(known, path)),
            sys::FCHDIR => {
                let [known_directory, _] = self.known_directories(syscall);
                known_directory.or_else(|| fd_path(tgid, syscall.args[0] as i32))
            }
            _ => None,
        };
        // Failing all else, the live process says where it is now (which may be later still).
        let cwd = followed
            .or_else(|| proc_link(tgid, "cwd"))
            .unwrap_or_default();
        self.table.set_cwd(tgid, cwd);
    }

    /// Learns the addresses of a DNS answer; names the remote address of a connection from the
    /// answers seen before it in the same network namespace (one container's answers never
    /// name another's connections).
    fn name_remote_host(&mut self, syscall: &Syscall, network: &mut NetworkEvent) {
        let place = || {
            let common = &syscall.common;
            Place::of(common.tgid, common.pid, common.cgroup_id)
        };
        if let Some(answer) = &network.dns {
            if !answer.answers.is_empty() {
                self.resolved.learn(place(), answer);
            }
        } else if !network.remote_ip.is_empty() {
            if let Some(name) = self.resolved.name_of(place(), &network.remote_ip) {
                network.remote_hostname = name.to_owned();
            }
        }
    }

    /// Where the directory a read-only `O_DIRECTORY` open opened is, for later calls relative
    /// to a descriptor of it.
    fn learn_directory(&mut self, syscall: &Syscall) {
        let cwd = self
            .table
            .get(syscall.common.tgid)
            .map(|p| p.cwd.clone())
            .unwrap_or_default();
        let path = file::first_path(syscall, &self.bases(syscall, &cwd));
        self.directories
            .learn(syscall.aux.file().opened_directory.into(), path);
    }

    /// What the relative paths of `syscall` are resolved against: the followed working
    /// directory `cwd` and the directories its descriptors name, where known.
    fn bases<'a>(&mut self, syscall: &Syscall, cwd: &'a str) -> Bases<'a> {
        Bases {
            cwd,
            directories: self.known_directories(syscall),
        }
    }

    /// The paths of the directories a file call's descriptors name (first and second path;
    /// for `fchdir`, its descriptor), from the identities the kernel put in the file view's
    /// `path_directories`. Other kinds use those bytes for other things.
    fn known_directories(&mut self, syscall: &Syscall) -> [Option<String>; 2] {
        if syscall.kind != KIND_FILE {
            return [None, None];
        }
        syscall
            .aux
            .file()
            .path_directories
            .map(|identity| self.directories.path_of(identity.into()).map(str::to_owned))
    }

    /// After a successful `setns`: joining a mount namespace moves the working directory to
    /// its root; a descriptor of unknown type (`nstype` 0) may have done so.
    fn join_namespace(&mut self, tgid: u32, nstype: u64) {
        if nstype & CLONE_NEWNS != 0 {
            self.table.set_cwd(tgid, "/".to_owned());
        } else if nstype == 0 {
            self.table.set_cwd(tgid, String::new());
        }
    }

    fn syscall_event(&mut self, syscall: &Syscall) -> Event {
        let tgid = syscall.common.tgid;
        let directories = self.known_directories(syscall);
        // Borrowed from the table, not cloned: this runs for every file and network event.
        let unknown;
        let info = match self.table.get(tgid) {
            Some(info) => info,
            None => {
                unknown = unknown_process(tgid, 0, "");
                &unknown
            }
        };
        let bases = Bases {
            cwd: &info.cwd,
            directories,
        };
        let mut payload = syscalls::payload_in(syscall, &bases);
        syscalls::name_target(&mut payload, &self.table);
        // The describer and the table are separate fields: `info` stays borrowed from the table.
        let mut process =
            self.describer
                .process(info, syscall.common.pid, syscall.common.cgroup_id);
        process.euid = syscall.euid;
        process.parent_exec_id = self
            .table
            .get(info.ppid)
            .map(|p| p.exec_id.clone())
            .unwrap_or_default();
        if syscall.syscall == sys::SETNS && syscall.result == 0 {
            self.join_namespace(tgid, syscall.args[1]);
        }
        if let Some(Payload::Network(network)) = &mut payload {
            self.name_remote_host(syscall, network);
        }
        // The rename event itself shows the old name; later events the new one.
        if let Some(Payload::ProcessRename(rename)) = &payload {
            if rename.result == 0 {
                self.table.set_comm(tgid, rename.name.clone());
            }
        }
        self.event(syscall.common.boot_ns, process, payload)
    }

    fn exec_event(&mut self, exec: Exec) -> Event {
        let tgid = exec.common.tgid;
        // An exec keeps the working directory: the one followed from fork and chdir, else the
        // live process's.
        let cwd = self
            .table
            .get(tgid)
            .map(|p| p.cwd.clone())
            .filter(|cwd| !cwd.is_empty())
            .or_else(|| proc_link(tgid, "cwd"))
            .unwrap_or_default();
        let exe = absolute_exe(&exec.filename, tgid, &cwd);
        self.table.on_exec(&exec, exe, cwd);
        // Described from the table in place, not from clones of its entries.
        let ancestors: Vec<Ancestor> = self
            .table
            .ancestors(tgid)
            .into_iter()
            .map(|p| self.describer.ancestor(p))
            .collect();
        let info = self.table.get(tgid).expect("just inserted");
        let mut process = self
            .describer
            .process(info, exec.common.pid, exec.common.cgroup_id);
        process.euid = exec.euid;
        process.egid = exec.egid;
        process.parent_exec_id = ancestors
            .first()
            .map(|a| a.exec_id.clone())
            .unwrap_or_default();
        self.event(
            exec.common.boot_ns,
            process,
            Some(Payload::Exec(ExecEvent {
                ancestors,
                filename_truncated: exec.filename_truncated,
                cap_effective: exec.cap_effective,
                exe_dev: exec.exe_dev,
                exe_inode: exec.exe_inode,
                exe_deleted: exec.exe_deleted,
                exe_memfd: exec.exe_memfd,
                exe_upper_layer: exec.exe_upper_layer,
            })),
        )
    }

    fn fork_event(&mut self, fork: Fork) -> Event {
        let info = self.table.on_fork(&fork).clone();
        let mut process = self
            .describer
            .process(&info, fork.child_pid, fork.common.cgroup_id);
        process.parent_exec_id = self
            .table
            .get(fork.common.tgid)
            .map(|p| p.exec_id.clone())
            .unwrap_or_default();
        self.event(
            fork.common.boot_ns,
            process,
            Some(Payload::Fork(ForkEvent {
                parent_tgid: fork.common.tgid,
            })),
        )
    }

    fn exit_event(&mut self, exit: Exit) -> Event {
        let tgid = exit.common.tgid;
        let info = self
            .table
            .on_exit(tgid)
            .unwrap_or_else(|| unknown_process(tgid, exit.ppid, &exit.comm));
        let process = self
            .describer
            .process(&info, exit.common.pid, exit.common.cgroup_id);
        self.event(
            exit.common.boot_ns,
            process,
            Some(Payload::Exit(ExitEvent {
                code: exit.code,
                signal: exit.signal,
                core_dumped: exit.core_dumped,
            })),
        )
    }

    fn event(&mut self, boot_ns: u64, mut process: Process, payload: Option<Payload>) -> Event {
        let (container, enrichment) = match &mut self.containers {
            Some(containers) => containers.resolve(process.cgroup_id, process.tgid),
            None => (None, Enrichment::None),
        };
        if let Some(container) = &container {
            process.container_id = container.id.clone();
        }
        Event {
            time_unix_ns: self.describer.clock.unix_ns(boot_ns),
            host: String::new(),
            seq: 0,
            process: Some(process),
            container,
            enrichment: enrichment as i32,
            payload,
        }
    }
}

/// What turns a table entry into the `Process` or `Ancestor` of an event: user names, the
/// boot clock and terminal names, each cached.
struct Describer {
    users: UserNames,
    clock: BootClock,
    terminals: crate::enrich::tty::Names,
}

impl Describer {
    /// The `Process` of an event by thread `pid` of the process `info` describes.
    fn process(&mut self, info: &ProcessInfo, pid: u32, cgroup_id: u64) -> Process {
        Process {
            pid,
            tgid: info.tgid,
            ppid: info.ppid,
            uid: info.uid,
            gid: info.gid,
            user: self.users.name(info.uid).to_owned(),
            exe: info.exe.clone(),
            comm: info.comm.clone(),
            argv: info.argv.clone(),
            argv_truncated: info.argv_truncated,
            cwd: info.cwd.clone(),
            exec_id: info.exec_id.clone(),
            parent_exec_id: String::new(),
            cgroup_id,
            container_id: String::new(),
            start_time_unix_ns: self.clock.unix_ns(info.start_boot_ns),
            tty: self.terminals.get(info.tty).unwrap_or_default().to_owned(),
            login_uid: info.login.uid,
            login_user: info
                .login
                .uid
                .map(|uid| self.users.name(uid).to_owned())
                .unwrap_or_default(),
            audit_session_id: info.login.session,
            ..Process::default()
        }
    }

    /// The ancestor entry of an exec event for the process `info` describes.
    fn ancestor(&mut self, info: &ProcessInfo) -> Ancestor {
        Ancestor {
            pid: info.tgid,
            exe: info.exe.clone(),
            argv: info.argv.clone(),
            uid: info.uid,
            user: self.users.name(info.uid).to_owned(),
            exec_id: info.exec_id.clone(),
            start_time_unix_ns: self.clock.unix_ns(info.start_boot_ns),
        }
    }
}

/// A process the table does not know (it started before the agent and ended, or its records
/// were lost): what the record itself says.
fn unknown_process(tgid: u32, ppid: u32, comm: &str) -> ProcessInfo {
    ProcessInfo {
        tgid,
        ppid,
        exe: String::new(),
        argv: Vec::new(),
        argv_truncated: false,
        uid: 0,
        gid: 0,
        comm: comm.to_owned(),
        cwd: String::new(),
        exec_id: String::new(),
        start_boot_ns: 0,
        tty: 0,
        login: Default::default(),
    }
}

/// The kernel reports the path as passed to exec; a relative one is resolved against the
/// working directory the kernel walked (or, failing that, through /proc).
fn absolute_exe(filename: &str, tgid: u32, cwd: &str) -> String {
    if filename.starts_with('/') {
        return filename.to_owned();
    }
    if !cwd.is_empty() {
        return paths::join(cwd, filename);
    }
    proc_link(tgid, "exe").unwrap_or_else(|| filename.to_owned())
}

/// The ABI's own name for `kind` (a kind name the agent produced), `unknown` otherwise: a label
/// value from a fixed set.
fn static_kind_name(kind: &str) -> &'static str {
    kestrel_ebpf_abi::KIND_NAMES
        .iter()
        .find(|name| **name == kind)
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use kestrel_ebpf_abi::{sys::kind_of, Aux, DirectoryId};
    use kestrel_proto::FileEvent;

    use super::*;
    use crate::kernel::decode::Common;

    /// No such process: /proc cannot help, only what the records said.
    const TGID: u32 = u32::MAX - 1;

    fn common() -> Common {
        Common {
            boot_ns: 1,
            pid: TGID,
            tgid: TGID,
            cgroup_id: 0,
        }
    }

    fn call(id: u32, path: &str, args: [u64; 6], result: i64) -> KernelRecord {
        KernelRecord::Syscall(Box::new(Syscall {
            common: common(),
            kind: kind_of(id),
            syscall: id,
            result,
            args,
            aux: Aux::ZERO,
            euid: 0,
            path: path.into(),
            path_truncated: false,
            second_path: String::new(),
            second_path_truncated: false,
            sensitive_read: false,
            directory_open: false,
            received: Vec::new(),
        }))
    }

    /// A pipeline that knows the process (forked from a parent it does not know: no cwd yet).
    fn pipeline() -> Pipeline {
        let mut pipeline = Pipeline::new(ProcessTable::new(), Outputs::default());
        pipeline.event_for(KernelRecord::Fork(Fork {
            common: Common {
                tgid: TGID - 1,
                pid: TGID - 1,
                ..common()
            },
            child_pid: TGID,
            child_tgid: TGID,
            uid: 0,
            gid: 0,
            comm: "sh".into(),
        }));
        pipeline
    }

    fn chdir(pipeline: &mut Pipeline, path: &str) {
        assert_eq!(
            pipeline.event_for(call(sys::CHDIR, path, [0; 6], 0)),
            None,
            "a chdir is not an event"
        );
    }

    /// Where `creat(name)` is reported.
    fn created(pipeline: &mut Pipeline, name: &str) -> String {
        let event = pipeline.event_for(call(sys::CREAT, name, [0; 6], 3));
        match event.and_then(|e| e.payload) {
            Some(Payload::File(FileEvent { path, .. })) => path,
            other => panic!("not a file event: {other:?}"),
        }
    }

    #[test]
    fn relative_paths_are_joined_to_the_directory_chdir_went_to() {
        let mut p = pipeline();
        assert_eq!(
            created(&mut p, "x"),
            "x",
            "no known directory: left relative"
        );
        chdir(&mut p, "/srv/app");
        assert_eq!(created(&mut p, "x"), "/srv/app/x");
        chdir(&mut p, "../data/./in");
        assert_eq!(created(&mut p, "y"), "/srv/data/in/y");
        chdir(&mut p, "/");
        assert_eq!(created(&mut p, "etc/cron.d/job"), "/etc/cron.d/job");
    }

    #[test]
    fn joining_a_mount_namespace_moves_to_its_root() {
        let mut p = pipeline();
        chdir(&mut p, "/var/lib/app");
        p.event_for(call(sys::SETNS, "", [5, 0x0002_0000, 0, 0, 0, 0], 0));
        assert_eq!(created(&mut p, "x"), "/x");
        chdir(&mut p, "/home");
        p.event_for(call(sys::SETNS, "", [5, 0x4000_0000, 0, 0, 0, 0], 0));
        assert_eq!(created(&mut p, "x"), "/home/x", "a network namespace");
        p.event_for(call(sys::SETNS, "", [5, 0, 0, 0, 0, 0], 0));
        assert_eq!(created(&mut p, "x"), "x", "a namespace of unknown type");
    }

    /// Which directory identity of a file record a test sets.
    #[derive(Clone, Copy, PartialEq)]
    enum Tag {
        /// The directory a directory open opened.
        Opened,
        /// The directory the first path is relative to (for `fchdir`, its descriptor's).
        FirstPath,
    }

    /// `record` (a syscall) with the directory identity `tag` names set to `identity`.
    fn tagged(record: KernelRecord, tag: Tag, identity: (u64, u64)) -> KernelRecord {
        let KernelRecord::Syscall(mut s) = record else {
            unreachable!()
        };
        let identity = DirectoryId {
            generation_dev: identity.0,
            inode: identity.1,
        };
        let file = s.aux.file_mut();
        match tag {
            Tag::Opened => file.opened_directory = identity,
            Tag::FirstPath => file.path_directories[0] = identity,
        }
        s.directory_open = tag == Tag::Opened;
        KernelRecord::Syscall(s)
    }

    fn path_of(event: Option<Event>) -> String {
        match event.and_then(|e| e.payload) {
            Some(Payload::File(FileEvent { path, .. })) => path,
            other => panic!("not a file event: {other:?}"),
        }
    }

    #[test]
    fn calls_relative_to_a_directory_descriptor_use_the_directory_opened() {
        let mut p = pipeline();
        let audit = (8, 42);
        let opened = call(sys::OPEN, "/var/log/audit", [0, 0o200000, 0, 0, 0, 0], 3);
        assert_eq!(
            p.event_for(tagged(opened, Tag::Opened, audit)),
            None,
            "not an event"
        );
        let unlink = call(sys::UNLINKAT, "audit.log", [3, 0, 0, 0, 0, 0], 0);
        assert_eq!(
            path_of(p.event_for(tagged(unlink.clone(), Tag::FirstPath, audit))),
            "/var/log/audit/audit.log"
        );
        assert_eq!(
            path_of(p.event_for(tagged(unlink, Tag::FirstPath, (8, 43)))),
            "audit.log",
            "a directory never seen opened: left relative"
        );
        // A directory opened relative to another one.
        let nested = call(sys::OPENAT, "old", [3, 0, 0o200000, 0, 0, 0], 4);
        let nested = tagged(tagged(nested, Tag::FirstPath, audit), Tag::Opened, (8, 44));
        assert_eq!(p.event_for(nested), None);
        let fchdir = call(sys::FCHDIR, "", [4, 0, 0, 0, 0, 0], 0);
        assert_eq!(p.event_for(tagged(fchdir, Tag::FirstPath, (8, 44))), None);
        assert_eq!(created(&mut p, "x"), "/var/log/audit/old/x");
    }

    #[test]
    fn a_failed_setns_moves_nothing() {
        let mut p = pipeline();
        chdir(&mut p, "/home");
        p.event_for(call(sys::SETNS, "", [5, 0x0002_0000, 0, 0, 0, 0], -1));
        assert_eq!(created(&mut p, "x"), "/home/x");
    }
}
