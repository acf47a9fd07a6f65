//! What the agent knows about each live process: image, arguments, parent, user and the exec id
//! of its current execution. Seeded from `/proc` at start, so processes that existed before the
//! agent still have an exe, argv and parent; then kept current by fork, exec and exit records.

use std::collections::HashMap;

use crate::kernel::decode::{bounded_argv, Exec, Fork, LoginIds};

/// How many ancestors an event carries at most.
pub const MAX_ANCESTORS: usize = 16;

/// One live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub tgid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Executable path.
    pub exe: String,
    /// Arguments.
    pub argv: Vec<String>,
    /// The argument vector was cut to the kernel bound.
    pub argv_truncated: bool,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Task name.
    pub comm: String,
    /// Working directory: read from /proc for processes seeded at start, then inherited at
    /// fork and followed through chdir and fchdir (empty when unknown).
    pub cwd: String,
    /// Unique id of this execution on this host: `{tgid}-{start boot ns}`.
    pub exec_id: String,
    /// When this execution (or, for processes seeded from `/proc`, the process) started,
    /// nanoseconds since boot.
    pub start_boot_ns: u64,
    /// Controlling terminal when the image started, as `/proc/PID/stat`'s `tty_nr` (0: none).
    pub tty: u32,
    /// Audit login uid and session id, as at the exec (a child inherits its parent's).
    pub login: LoginIds,
}

/// The audit login ids `/proc/PID/loginuid` and `/proc/PID/sessionid` show (absent without
/// audit, or when unset: both files then read 4294967295).
fn login_ids_from_proc(tgid: u32) -> LoginIds {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/{tgid}/{name}"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .unwrap_or(kestrel_ebpf_abi::NO_LOGIN_ID)
    };
    LoginIds::from_kernel(read("loginuid"), read("sessionid"))
}

/// Exec id for a process image started at `start_boot_ns`.
pub fn exec_id(tgid: u32, start_boot_ns: u64) -> String {
    format!("{tgid}-{start_boot_ns}")
}

/// All live processes by process id.
#[derive(Debug, Default)]
pub struct ProcessTable {
    processes: HashMap<u32, ProcessInfo>,
}

impl ProcessTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A table holding every process visible in `/proc` now.
    pub fn from_proc() -> Self {
        let mut table = Self::new();
        let ticks = procfs::ticks_per_second().max(1);
        let Ok(all) = procfs::process::all_processes() else {
            return table;
        };
        for process in all.flatten() {
            let Ok(stat) = process.stat() else { continue };
            let status = process.status().ok();
            let start_boot_ns = stat.starttime * (1_000_000_000 / ticks);
            let tgid = stat.pid as u32;
            let cmdline = std::fs::read(format!("/proc/{tgid}/cmdline")).unwrap_or_default();
            let (argv, argv_truncated) = bounded_argv(&cmdline);
            table.processes.insert(
                tgid,
                ProcessInfo {
                    tgid,
                    ppid: stat.ppid as u32,
                    exe: process
                        .exe()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    argv,
                    argv_truncated,
                    uid: status.as_ref().map(|s| s.ruid).unwrap_or_default(),
                    gid: status.as_ref().map(|s| s.rgid).unwrap_or_default(),
                    comm: stat.comm.clone(),
                    cwd: process
                        .cwd()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    exec_id: exec_id(tgid, start_boot_ns),
                    start_boot_ns,
                    tty: stat.tty_nr as u32,
                    login: login_ids_from_proc(tgid),
                },
            );
        }
        table
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// True when no process is known.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// The process with this id.
    pub fn get(&self, tgid: u32) -> Option<&ProcessInfo> {
        self.processes.get(&tgid)
    }

    /// Records a new image for `exec.common.tgid`; `cwd` is best effort (empty if unknown).
    pub fn on_exec(&mut self, exec: &Exec, exe: String, cwd: String) -> &ProcessInfo {
        let tgid = exec.common.tgid;
        let info = ProcessInfo {
            tgid,
            ppid: exec.ppid,
            exe,
            argv: exec.argv.clone(),
            argv_truncated: exec.argv_truncated,
            uid: exec.uid,
            gid: exec.gid,
            comm: exec.comm.clone(),
            cwd,
            exec_id: exec_id(tgid, exec.common.boot_ns),
            start_boot_ns: exec.common.boot_ns,
            tty: exec.tty,
            login: exec.login,
        };
        self.processes.insert(tgid, info);
        &self.processes[&tgid]
    }

    /// Records a new process: it runs its parent's image until it execs.
    pub fn on_fork(&mut self, fork: &Fork) -> &ProcessInfo {
        let parent = self.processes.get(&fork.common.tgid);
        let child = ProcessInfo {
            tgid: fork.child_tgid,
            ppid: fork.common.tgid,
            exe: parent.map(|p| p.exe.clone()).unwrap_or_default(),
            argv: parent.map(|p| p.argv.clone()).unwrap_or_default(),
            argv_truncated: parent.is_some_and(|p| p.argv_truncated),
            uid: fork.uid,
            gid: fork.gid,
            comm: fork.comm.clone(),
            cwd: parent.map(|p| p.cwd.clone()).unwrap_or_default(),
            exec_id: exec_id(fork.child_tgid, fork.common.boot_ns),
            start_boot_ns: fork.common.boot_ns,
            tty: parent.map_or(0, |p| p.tty),
            login: parent.map(|p| p.login).unwrap_or_default(),
        };
        self.processes.insert(fork.child_tgid, child);
        &self.processes[&fork.child_tgid]
    }

    /// The process's working directory from now on (empty: unknown).
    pub fn set_cwd(&mut self, tgid: u32, cwd: String) {
        if let Some(process) = self.processes.get_mut(&tgid) {
            process.cwd = cwd;
        }
    }

    /// The process's task name from now on (it renamed itself with `prctl(PR_SET_NAME)`).
    pub fn set_comm(&mut self, tgid: u32, comm: String) {
        if let Some(process) = self.processes.get_mut(&tgid) {
            process.comm = comm;
        }
    }

    /// Forgets a process that ended, returning what was known of it.
    pub fn on_exit(&mut self, tgid: u32) -> Option<ProcessInfo> {
        self.processes.remove(&tgid)
    }

    /// Parent, grandparent, ... of `tgid`, nearest first, at most [`MAX_ANCESTORS`], stopping at
    /// an unknown process or a loop.
    pub fn ancestors(&self, tgid: u32) -> Vec<&ProcessInfo> {
        let mut chain = Vec::new();
        let mut current = self.processes.get(&tgid).map(|p| p.ppid);
        while let Some(ppid) = current {
            if ppid == 0 || chain.len() >= MAX_ANCESTORS || ppid == tgid {
                break;
            }
            let Some(parent) = self.processes.get(&ppid) else {
                break;
            };
            if chain.iter().any(|p: &&ProcessInfo| p.tgid == ppid) {
                break;
            }
            chain.push(parent);
            current = Some(parent.ppid);
        }
        chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::decode::Common;

    fn exec(tgid: u32, ppid: u32, argv: &[&str], boot_ns: u64) -> Exec {
        Exec {
            common: Common {
                boot_ns,
                pid: tgid,
                tgid,
                cgroup_id: 1,
            },
            ppid,
            uid: 0,
            gid: 0,
            comm: "x".into(),
            filename: argv[0].into(),
            filename_truncated: false,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            argv_truncated: false,
            argv_unreadable: false,
            euid: 0,
            egid: 0,
            cap_effective: 0,
            exe_dev: 0,
            exe_inode: 0,
            exe_deleted: false,
            exe_memfd: false,
            exe_upper_layer: false,
            tty: 0,
            login: LoginIds::default(),
        }
    }

    #[test]
    fn a_long_command_line_from_proc_is_cut_to_the_kernel_bound() {
        let long = "x".repeat(3 * kestrel_ebpf_abi::ARGV_MAX);
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30", &long])
            .spawn()
            .unwrap();
        let cmdline = format!("/proc/{}/cmdline", child.id());
        while !std::fs::read(&cmdline)
            .unwrap()
            .starts_with(b"/bin/sh\0-c\0")
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let table = ProcessTable::from_proc();
        let _ = child.kill();
        let _ = child.wait();
        let seeded = table.get(child.id()).expect("the child is in /proc");
        assert!(seeded.argv_truncated);
        assert_eq!(seeded.argv[..3], ["/bin/sh", "-c", "sleep 30"]);
        let bytes: usize = seeded.argv.iter().map(|a| a.len() + 1).sum();
        assert_eq!(bytes, kestrel_ebpf_abi::ARGV_MAX + 1, "{:?}", seeded.argv);
    }

    #[test]
    fn processes_running_before_the_agent_have_exe_argv_and_parent() {
        let table = ProcessTable::from_proc();
        let me = table
            .get(std::process::id())
            .expect("the test process is in /proc");
        assert_eq!(
            me.exe,
            std::env::current_exe().unwrap().display().to_string()
        );
        assert!(!me.argv.is_empty());
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw() as u32);
        assert!(!table.ancestors(std::process::id()).is_empty());
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let tty_nr: u32 = stat
            .rsplit(") ")
            .next()
            .unwrap()
            .split(' ')
            .nth(4)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(me.tty, tty_nr);
        let proc_id = |name: &str| {
            std::fs::read_to_string(format!("/proc/self/{name}"))
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap()
        };
        let set = |id: u32| (id != u32::MAX).then_some(id);
        assert_eq!(me.login.uid, set(proc_id("loginuid")));
        assert_eq!(me.login.session, set(proc_id("sessionid")));
    }

    #[test]
    fn each_exec_gets_a_new_exec_id_and_ancestors_follow_parents() {
        let mut table = ProcessTable::new();
        let pts0 = 136 << 8;
        let login = LoginIds {
            uid: Some(1000),
            session: Some(7),
        };
        table.on_exec(
            &Exec {
                tty: pts0,
                login,
                ..exec(10, 1, &["/bin/bash"], 100)
            },
            "/bin/bash".into(),
            "/".into(),
        );
        table.on_fork(&Fork {
            common: Common {
                boot_ns: 200,
                pid: 10,
                tgid: 10,
                cgroup_id: 1,
            },
            child_pid: 11,
            child_tgid: 11,
            uid: 0,
            gid: 0,
            comm: "bash".into(),
        });
        let forked = table.get(11).unwrap().clone();
        assert_eq!(forked.exe, "/bin/bash");
        assert_eq!(forked.tty, pts0, "a child keeps its parent's terminal");
        assert_eq!(forked.login, login, "and its login");
        let first = table
            .on_exec(
                &exec(11, 10, &["/bin/sh", "-c", "x"], 300),
                "/bin/sh".into(),
                "/".into(),
            )
            .exec_id
            .clone();
        let second = table
            .on_exec(
                &exec(11, 10, &["/bin/cat"], 400),
                "/bin/cat".into(),
                "/".into(),
            )
            .exec_id
            .clone();
        assert_ne!(first, second);
        assert_ne!(forked.exec_id, first);
        let ancestors: Vec<u32> = table.ancestors(11).iter().map(|p| p.tgid).collect();
        assert_eq!(ancestors, [10]);
        assert_eq!(table.on_exit(11).unwrap().exe, "/bin/cat");
        assert!(table.get(11).is_none());
    }

    #[test]
    fn ancestor_walk_stops_at_a_loop() {
        let mut table = ProcessTable::new();
        table.on_exec(&exec(5, 6, &["/a"], 1), "/a".into(), String::new());
        table.on_exec(&exec(6, 5, &["/b"], 2), "/b".into(), String::new());
        assert_eq!(table.ancestors(5).len(), 1);
    }
}
