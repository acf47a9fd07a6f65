//! Process sessions, learned from the event stream, for `SessionExecId`.
//!
//! A session is the subtree of processes started from one *session root*: the process just
//! below a *session boundary* in its ancestry. Boundaries are pid 0/1/2 and the programs that
//! start sessions or services: `sshd`, `sshd-session`, `login`, `systemd`, `init`, `cron`/`crond`,
//! `atd`, `agetty`/`getty`, `tmux`, `screen`, `containerd-shim*`, `conmon`, `runc`, `tini`,
//! `dumb-init`, `docker-init`. So an SSH login shell and everything it runs (downloads, chmod,
//! the executed file) share one `SessionExecId`: the shell's exec id; a web server started by
//! systemd is the root of the session of everything it spawns.
//!
//! Exec events carry the ancestry, so each exec records `exec_id -> session`; forks inherit
//! the parent's session; any other event looks its process up. A process keeps its session
//! across its own execs: when a session root replaces itself (`bash -c '...; ./x'` runs its
//! last command in place, as `ssh host 'curl ...; ./x'` does), the new image stays in the
//! session unless the image it replaces was a boundary program (an sshd or cron child becoming
//! the login shell starts a session, as before). For that the table also remembers, per
//! process id, the session of its current image when that image is not a boundary. A process seen for the first
//! time through a non-exec event inherits its parent's session when that is known. Exit
//! events forget the process. Memory is bounded: two generations of at most `capacity / 2`
//! entries each; when the current one fills up, the older one is dropped (least recently
//! learned processes are forgotten first), counted in [`SessionStats::forgotten`].

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use foldhash::fast::RandomState;

use kestrel_proto::event::Payload;
use kestrel_proto::{Ancestor, Event};

/// Default number of processes remembered.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// Programs whose children start a new session.
const BOUNDARY_PROGRAMS: &[&str] = &[
    "sshd",
    "sshd-session",
    "login",
    "systemd",
    "init",
    "cron",
    "crond",
    "atd",
    "agetty",
    "getty",
    "tmux",
    "screen",
    "conmon",
    "runc",
    "crun",
    "tini",
    "dumb-init",
    "docker-init",
];

/// Counters of the session table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Processes remembered now.
    pub processes: usize,
    /// Processes forgotten because the table was full (not because they exited).
    pub forgotten: u64,
}

/// Keys are already (seeded) hashes: the table uses them as they are.
#[derive(Debug, Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, Arc<str>, BuildHasherDefault<IdentityHasher>>;

/// The session table.
#[derive(Debug)]
pub(crate) struct Sessions {
    current: Table,
    previous: Table,
    generation_cap: usize,
    hasher: RandomState,
    forgotten: u64,
}

impl Sessions {
    /// A table remembering up to about `capacity` processes.
    pub(crate) fn new(capacity: usize) -> Sessions {
        Sessions {
            current: Table::default(),
            previous: Table::default(),
            generation_cap: (capacity / 2).max(1),
            hasher: RandomState::default(),
            forgotten: 0,
        }
    }

    /// Learns from `event` and returns the session of its process, when known.
    pub(crate) fn observe(&mut self, event: &Event) -> Option<Arc<str>> {
        let process = event.process.as_ref()?;
        if process.exec_id.is_empty() {
            return None;
        }
        let key = self.key(&event.host, &process.exec_id);
        let pid_key = self.pid_key(&event.host, process.tgid);
        let boundary_image = is_boundary_name(&process.exe);
        match &event.payload {
            Some(Payload::Exec(exec)) => {
                // The same process before this exec, when its image was not a boundary.
                let kept = pid_key.and_then(|k| self.get(k));
                let session = match kept {
                    Some(session) => session,
                    None => self.session_of_exec(&event.host, &process.exec_id, &exec.ancestors),
                };
                self.insert(key, session.clone());
                self.remember_pid(pid_key, boundary_image, &session);
                Some(session)
            }
            _ => {
                if let Some(session) = self.get(key) {
                    return Some(session);
                }
                let parent = (!process.parent_exec_id.is_empty())
                    .then(|| self.key(&event.host, &process.parent_exec_id))
                    .and_then(|k| self.get(k))?;
                self.insert(key, parent.clone());
                self.remember_pid(pid_key, boundary_image, &parent);
                Some(parent)
            }
        }
    }

    /// Remembers the session of process `pid_key`'s current image, or forgets it when the
    /// image is a boundary (its next exec starts a session).
    fn remember_pid(&mut self, pid_key: Option<u64>, boundary_image: bool, session: &Arc<str>) {
        let Some(k) = pid_key else { return };
        if boundary_image {
            self.current.remove(&k);
            self.previous.remove(&k);
        } else {
            self.insert(k, session.clone());
        }
    }

    /// The key of a process id on a host (distinct from exec id keys); `None` for pids 0-2,
    /// which are boundaries (and 0 is unknown).
    fn pid_key(&self, host: &str, tgid: u32) -> Option<u64> {
        (tgid > 2).then(|| {
            let mut h = self.hasher.build_hasher();
            host.hash(&mut h);
            0xffu8.hash(&mut h);
            tgid.hash(&mut h);
            h.finish()
        })
    }

    /// Forgets the process of an exit event (call after the event was evaluated).
    pub(crate) fn after(&mut self, event: &Event) {
        if let (Some(Payload::Exit(_)), Some(process)) = (&event.payload, &event.process) {
            let key = self.key(&event.host, &process.exec_id);
            self.current.remove(&key);
            self.previous.remove(&key);
            if let Some(k) = self.pid_key(&event.host, process.tgid) {
                self.current.remove(&k);
                self.previous.remove(&k);
            }
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> SessionStats {
        SessionStats {
            processes: self.current.len() + self.previous.len(),
            forgotten: self.forgotten,
        }
    }

    /// Approximate heap bytes used: the tables, plus one session id string per entry at most
    /// (ids are shared between the processes of a session).
    pub(crate) fn heap_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(u64, Arc<str>)>() + 1;
        let tables = (self.current.capacity() + self.previous.capacity()) * per_entry;
        let mut seen = std::collections::HashSet::new();
        let ids: usize = self
            .current
            .values()
            .chain(self.previous.values())
            .filter(|s| seen.insert(Arc::as_ptr(s)))
            .map(|s| s.len() + 2 * std::mem::size_of::<usize>())
            .sum();
        tables + ids
    }

    fn session_of_exec(&mut self, host: &str, exec_id: &str, ancestors: &[Ancestor]) -> Arc<str> {
        let Some(parent) = ancestors.first() else {
            return Arc::from(exec_id);
        };
        if is_boundary(parent) {
            return Arc::from(exec_id);
        }
        if !parent.exec_id.is_empty() {
            let key = self.key(host, &parent.exec_id);
            if let Some(session) = self.get(key) {
                return session;
            }
        }
        // Unknown parent: the ancestor just below the nearest boundary, or the oldest known.
        let root = match ancestors.iter().position(is_boundary) {
            Some(b) => &ancestors[b - 1],
            None => ancestors.last().expect("non-empty"),
        };
        if root.exec_id.is_empty() {
            Arc::from(exec_id)
        } else {
            Arc::from(root.exec_id.as_str())
        }
    }

    fn key(&self, host: &str, exec_id: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        host.hash(&mut h);
        exec_id.hash(&mut h);
        h.finish()
    }

    fn get(&mut self, key: u64) -> Option<Arc<str>> {
        if let Some(s) = self.current.get(&key) {
            return Some(s.clone());
        }
        let s = self.previous.remove(&key)?;
        self.insert(key, s.clone());
        Some(s)
    }

    fn insert(&mut self, key: u64, session: Arc<str>) {
        if self.current.len() >= self.generation_cap && !self.current.contains_key(&key) {
            self.forgotten += self.previous.len() as u64;
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, session);
    }
}

/// True when `a` starts sessions for its children.
fn is_boundary(a: &Ancestor) -> bool {
    a.pid <= 2 || is_boundary_name(&a.exe)
}

/// True when the program `exe` starts sessions for its children.
fn is_boundary_name(exe: &str) -> bool {
    let exe = exe.as_bytes();
    let name = match memchr::memrchr(b'/', exe) {
        Some(slash) => &exe[slash + 1..],
        None => exe,
    };
    // Checked on every exec: compare lengths before bytes.
    BOUNDARY_PROGRAMS
        .iter()
        .any(|p| p.len() == name.len() && p.as_bytes() == name)
        || name.starts_with(b"containerd-shim")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_proto::{ExecEvent, ExitEvent, FileEvent, ForkEvent, Process};

    fn ancestor(pid: u32, exe: &str, exec_id: &str) -> Ancestor {
        Ancestor {
            pid,
            exe: exe.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        }
    }

    fn exec(exec_id: &str, ancestors: Vec<Ancestor>) -> Event {
        Event {
            host: "h".into(),
            process: Some(Process {
                exec_id: exec_id.into(),
                parent_exec_id: ancestors
                    .first()
                    .map(|a| a.exec_id.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            payload: Some(Payload::Exec(ExecEvent {
                ancestors,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn other(exec_id: &str, parent: &str, payload: Payload) -> Event {
        Event {
            host: "h".into(),
            process: Some(Process {
                exec_id: exec_id.into(),
                parent_exec_id: parent.into(),
                ..Default::default()
            }),
            payload: Some(payload),
            ..Default::default()
        }
    }

    fn sshd_chain() -> Vec<Ancestor> {
        vec![
            ancestor(100, "/usr/bin/bash", "bash"),
            ancestor(90, "/usr/sbin/sshd", "sshd"),
            ancestor(1, "/usr/lib/systemd/systemd", "init"),
        ]
    }

    #[test]
    fn login_shell_and_its_children_share_the_shells_session() {
        let mut s = Sessions::new(1024);
        let shell = exec("bash", sshd_chain()[1..].to_vec());
        assert_eq!(s.observe(&shell).as_deref(), Some("bash"));
        let curl = exec("curl", sshd_chain());
        assert_eq!(s.observe(&curl).as_deref(), Some("bash"));
        let write = other("curl", "bash", Payload::File(FileEvent::default()));
        assert_eq!(s.observe(&write).as_deref(), Some("bash"));
        let mut nested = sshd_chain();
        nested.insert(0, ancestor(150, "/usr/bin/sh", "sh"));
        let payload = exec("payload", nested);
        assert_eq!(s.observe(&payload).as_deref(), Some("bash"));
    }

    #[test]
    fn unknown_parent_uses_the_ancestor_below_the_boundary() {
        let mut s = Sessions::new(1024);
        let mut chain = sshd_chain();
        chain.insert(0, ancestor(150, "/usr/bin/python3", "py"));
        assert_eq!(s.observe(&exec("x", chain)).as_deref(), Some("bash"));
        let no_boundary = vec![ancestor(50, "/a", "a"), ancestor(40, "/b", "b")];
        assert_eq!(s.observe(&exec("y", no_boundary)).as_deref(), Some("b"));
        assert_eq!(s.observe(&exec("z", Vec::new())).as_deref(), Some("z"));
    }

    #[test]
    fn forks_inherit_and_exits_forget() {
        let mut s = Sessions::new(1024);
        s.observe(&exec("bash", sshd_chain()[1..].to_vec()));
        let fork = other("child", "bash", Payload::Fork(ForkEvent::default()));
        assert_eq!(s.observe(&fork).as_deref(), Some("bash"));
        let exit = other("child", "bash", Payload::Exit(ExitEvent::default()));
        assert_eq!(s.observe(&exit).as_deref(), Some("bash"));
        s.after(&exit);
        let unknown = other("child", "gone", Payload::File(FileEvent::default()));
        assert_eq!(s.observe(&unknown), None);
    }

    fn with_pid(mut event: Event, tgid: u32, exe: &str) -> Event {
        let p = event.process.as_mut().unwrap();
        p.tgid = tgid;
        p.exe = exe.into();
        event
    }

    #[test]
    fn a_session_root_that_execs_in_place_keeps_its_session() {
        let mut s = Sessions::new(1024);
        // ssh host 'curl ...; ./x': sshd's child becomes bash -c (a new session), whose last
        // command replaces it in place: same pid, new exec id, parent still sshd.
        let sshd_child = other("sshd-child", "sshd", Payload::Fork(ForkEvent::default()));
        s.observe(&with_pid(sshd_child, 100, "/usr/sbin/sshd"));
        let shell = with_pid(
            exec("bash", sshd_chain()[1..].to_vec()),
            100,
            "/usr/bin/bash",
        );
        assert_eq!(
            s.observe(&shell).as_deref(),
            Some("bash"),
            "sshd's child starts one"
        );
        let replaced = with_pid(exec("x", sshd_chain()[1..].to_vec()), 100, "/tmp/x");
        assert_eq!(
            s.observe(&replaced).as_deref(),
            Some("bash"),
            "kept across exec"
        );
        // Once it exits, a new process with the same pid starts afresh.
        s.after(&with_pid(
            other("x", "sshd", Payload::Exit(ExitEvent::default())),
            100,
            "/tmp/x",
        ));
        let reused = with_pid(
            exec("bash2", sshd_chain()[1..].to_vec()),
            100,
            "/usr/bin/bash",
        );
        assert_eq!(s.observe(&reused).as_deref(), Some("bash2"));
    }

    #[test]
    fn sessions_are_per_host() {
        let mut s = Sessions::new(1024);
        s.observe(&exec("bash", sshd_chain()[1..].to_vec()));
        let mut elsewhere = other("bash", "", Payload::File(FileEvent::default()));
        elsewhere.host = "other".into();
        assert_eq!(s.observe(&elsewhere), None);
    }

    #[test]
    fn memory_is_bounded_and_forgetting_is_counted() {
        let mut s = Sessions::new(100);
        for i in 0..1000 {
            s.observe(&exec(&format!("p{i}"), Vec::new()));
        }
        let stats = s.stats();
        assert!(stats.processes <= 100, "{stats:?}");
        assert!(stats.forgotten >= 850, "{stats:?}");
    }
}
