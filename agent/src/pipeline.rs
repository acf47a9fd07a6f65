//! Turns decoded kernel records into protocol events: keeps the process table current, adds
//! user names, ancestry and wall-clock time, and hands each event to the outputs.

use kestrel_proto::{event::Payload, Ancestor, Event, ExecEvent, ExitEvent, ForkEvent, Process};
use tokio::sync::mpsc;

use crate::{
    clock::BootClock,
    decode::{Exec, Exit, Fork, KernelRecord},
    jsonl::JsonlWriter,
    process_table::{ProcessInfo, ProcessTable},
    users::UserNames,
};

/// Where events go after the pipeline.
#[derive(Default)]
pub struct Outputs {
    /// `--events-jsonl`.
    pub jsonl: Option<JsonlWriter>,
    /// The collector shipper's queue.
    pub shipper: Option<mpsc::Sender<Event>>,
}

/// The record -> event stage.
pub struct Pipeline {
    table: ProcessTable,
    users: UserNames,
    clock: BootClock,
    outputs: Outputs,
    /// Events the shipper queue had no room for.
    pub shipper_overflow: u64,
}

impl Pipeline {
    /// A pipeline starting from `table` (normally [`ProcessTable::from_proc`]).
    pub fn new(table: ProcessTable, outputs: Outputs) -> Self {
        Self {
            table,
            users: UserNames::default(),
            clock: BootClock::now(),
            outputs,
            shipper_overflow: 0,
        }
    }

    /// The process table as it stands.
    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    /// Consumes records until the channel closes, flushing the JSON-lines output after each
    /// burst so events reach the file promptly.
    pub async fn run(mut self, mut records: mpsc::Receiver<KernelRecord>) -> anyhow::Result<()> {
        while let Some(record) = records.recv().await {
            self.handle(record)?;
            while let Ok(record) = records.try_recv() {
                self.handle(record)?;
            }
            if let Some(jsonl) = &mut self.outputs.jsonl {
                jsonl.flush()?;
            }
        }
        if let Some(jsonl) = &mut self.outputs.jsonl {
            jsonl.flush()?;
        }
        Ok(())
    }

    fn handle(&mut self, record: KernelRecord) -> anyhow::Result<()> {
        let event = self.event_for(record);
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

    /// Updates the process table with `record` and builds its event.
    pub fn event_for(&mut self, record: KernelRecord) -> Event {
        match record {
            KernelRecord::Exec(exec) => self.exec_event(exec),
            KernelRecord::Fork(fork) => self.fork_event(fork),
            KernelRecord::Exit(exit) => self.exit_event(exit),
        }
    }

    fn exec_event(&mut self, exec: Exec) -> Event {
        let tgid = exec.common.tgid;
        let exe = absolute_exe(&exec.filename, tgid);
        let cwd = proc_link(tgid, "cwd").unwrap_or_default();
        self.table.on_exec(&exec, exe, cwd);
        let ancestors: Vec<Ancestor> = self
            .table
            .ancestors(tgid)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| self.ancestor(&p))
            .collect();
        let info = self.table.get(tgid).expect("just inserted").clone();
        let mut process = self.process(&info, exec.common.pid, exec.common.cgroup_id);
        process.parent_exec_id = ancestors
            .first()
            .map(|a| a.exec_id.clone())
            .unwrap_or_default();
        self.event(
            exec.common.boot_ns,
            process,
            Payload::Exec(ExecEvent {
                ancestors,
                filename_truncated: exec.filename_truncated,
                ..ExecEvent::default()
            }),
        )
    }

    fn fork_event(&mut self, fork: Fork) -> Event {
        let info = self.table.on_fork(&fork).clone();
        let mut process = self.process(&info, fork.child_pid, fork.common.cgroup_id);
        process.parent_exec_id = self
            .table
            .get(fork.common.tgid)
            .map(|p| p.exec_id.clone())
            .unwrap_or_default();
        self.event(
            fork.common.boot_ns,
            process,
            Payload::Fork(ForkEvent {
                parent_tgid: fork.common.tgid,
            }),
        )
    }

    fn exit_event(&mut self, exit: Exit) -> Event {
        let tgid = exit.common.tgid;
        let info = self.table.on_exit(tgid).unwrap_or_else(|| ProcessInfo {
            tgid,
            ppid: exit.ppid,
            exe: String::new(),
            argv: Vec::new(),
            argv_truncated: false,
            uid: 0,
            gid: 0,
            comm: exit.comm.clone(),
            cwd: String::new(),
            exec_id: String::new(),
            start_boot_ns: 0,
        });
        let process = self.process(&info, exit.common.pid, exit.common.cgroup_id);
        self.event(
            exit.common.boot_ns,
            process,
            Payload::Exit(ExitEvent {
                code: exit.code,
                signal: exit.signal,
                core_dumped: exit.core_dumped,
            }),
        )
    }

    fn event(&self, boot_ns: u64, process: Process, payload: Payload) -> Event {
        Event {
            time_unix_ns: self.clock.unix_ns(boot_ns),
            host: String::new(),
            seq: 0,
            process: Some(process),
            payload: Some(payload),
            ..Event::default()
        }
    }

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
            ..Process::default()
        }
    }

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

/// The kernel reports the path as passed to exec; a relative one is resolved through /proc.
fn absolute_exe(filename: &str, tgid: u32) -> String {
    if filename.starts_with('/') {
        return filename.to_owned();
    }
    proc_link(tgid, "exe").unwrap_or_else(|| filename.to_owned())
}

/// Target of `/proc/<tgid>/<link>`, if the process still exists.
fn proc_link(tgid: u32, link: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{tgid}/{link}"))
        .ok()
        .map(|p| p.display().to_string())
}
