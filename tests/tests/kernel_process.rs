//! Kernel tests: load the real eBPF programs, trigger process activity, assert the decoded records.

use std::{process::Command, time::Duration};

use kestrel_agent::kernel::decode::{Exec, KernelRecord};
use kestrel_testkit::kernel::{everything, load, Kernel};
use kestrel_testkit::pty::{without_terminal, Pty};

/// Loads the programs (reporting `agent_tgid` as the agent) and starts a reader.
fn start(agent_tgid: u32) -> Option<Kernel> {
    let mut options = everything();
    options.agent_tgid = agent_tgid;
    load(options)
}

/// Receives records until `want` matches one.
async fn expect_record(
    kernel: &mut Kernel,
    what: &str,
    want: impl Fn(&KernelRecord) -> bool,
) -> KernelRecord {
    kernel.expect(what, want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_of_a_known_binary_is_decoded_with_argv_parent_and_uid() {
    let Some(mut rx) = start(0) else {
        return;
    };
    let marker = format!("marker-{}", std::process::id());
    let status = Command::new("/bin/echo")
        .args(["kestrel kernel test", &marker, "-n"])
        .output()
        .expect("run echo");
    assert!(status.status.success());
    let record = expect_record(
        &mut rx,
        "exec of /bin/echo",
        |r| matches!(r, KernelRecord::Exec(e) if e.argv.iter().any(|a| a == &marker)),
    )
    .await;
    let KernelRecord::Exec(exec) = record else {
        unreachable!()
    };
    assert_eq!(exec.filename, "/bin/echo");
    assert_eq!(
        exec.argv,
        ["/bin/echo", "kestrel kernel test", &marker, "-n"]
    );
    assert_eq!(exec.ppid, std::process::id(), "parent is this test process");
    assert_eq!(exec.uid, nix::unistd::getuid().as_raw());
    assert_eq!(exec.gid, nix::unistd::getgid().as_raw());
    assert_eq!(exec.comm, "echo");
    assert!(!exec.argv_truncated && !exec.argv_unreadable && !exec.filename_truncated);
    assert_eq!(exec.common.pid, exec.common.tgid);
    assert!(exec.common.cgroup_id != 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_argument_vectors_are_cut_and_flagged() {
    let Some(mut rx) = start(0) else {
        return;
    };
    let long = "x".repeat(3000);
    let marker = format!("long-{}", std::process::id());
    Command::new("/bin/true")
        .args([marker.as_str(), &long])
        .status()
        .expect("run true");
    let record = expect_record(
        &mut rx,
        "exec with the long argv",
        |r| matches!(r, KernelRecord::Exec(e) if e.argv.get(1) == Some(&marker)),
    )
    .await;
    let KernelRecord::Exec(exec) = record else {
        unreachable!()
    };
    assert!(
        exec.argv_truncated,
        "argv of 3000+ bytes must be flagged truncated"
    );
    assert_eq!(exec.argv.len(), 3);
    assert!(exec.argv[2].len() < long.len() && exec.argv[2].chars().all(|c| c == 'x'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_and_exit_carry_child_and_exit_status() {
    let Some(mut rx) = start(0) else {
        return;
    };
    let child = Command::new("/bin/sh")
        .args(["-c", "exit 7"])
        .spawn()
        .expect("run sh");
    let child_pid = child.id();
    let status = child.wait_with_output().expect("wait").status;
    assert_eq!(status.code(), Some(7));
    let me = std::process::id();
    let fork = expect_record(
        &mut rx,
        "fork of the child",
        |r| matches!(r, KernelRecord::Fork(f) if f.child_tgid == child_pid),
    )
    .await;
    let KernelRecord::Fork(fork) = fork else {
        unreachable!()
    };
    assert_eq!(fork.common.tgid, me);
    assert_eq!(fork.child_pid, child_pid);
    let exit = expect_record(
        &mut rx,
        "exit of the child",
        |r| matches!(r, KernelRecord::Exit(x) if x.common.tgid == child_pid),
    )
    .await;
    let KernelRecord::Exit(exit) = exit else {
        unreachable!()
    };
    assert_eq!((exit.code, exit.signal), (7, 0));
    assert_eq!(exit.ppid, me);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_own_process_is_not_reported() {
    let me = std::process::id();
    let Some(mut rx) = start(me) else {
        return;
    };
    let marker = format!("own-{me}");
    Command::new("/bin/echo")
        .arg(&marker)
        .output()
        .expect("run echo");
    // The child's exec is another process and is reported ...
    expect_record(
        &mut rx,
        "exec of the child",
        |r| matches!(r, KernelRecord::Exec(e) if e.argv.get(1) == Some(&marker)),
    )
    .await;
    // ... but nothing before it came from this process (the fork that made the child).
    Command::new("/bin/echo")
        .arg("end-marker")
        .output()
        .expect("run echo");
    let mut from_me = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(record)) = tokio::time::timeout_at(deadline, rx.records.recv()).await {
        if matches!(&record, KernelRecord::Exec(e) if e.argv.get(1).is_some_and(|a| a == "end-marker"))
        {
            break;
        }
        if record.common().tgid == me {
            from_me.push(record);
        }
    }
    assert!(
        from_me.is_empty(),
        "records from the agent's own process: {from_me:?}"
    );
}

/// The next `n` exec records whose first argument is `marker`.
async fn marked_execs(kernel: &mut Kernel, marker: &str, n: usize) -> Vec<Exec> {
    let mut execs = Vec::new();
    while execs.len() < n {
        let record = expect_record(kernel, &format!("{n} execs marked {marker}"), |r| {
            matches!(r, KernelRecord::Exec(e) if e.argv.get(1).map(String::as_str) == Some(marker))
        })
        .await;
        let KernelRecord::Exec(exec) = record else {
            unreachable!()
        };
        execs.push(exec);
    }
    execs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_names_the_controlling_terminal() {
    let Some(mut rx) = start(0) else {
        return;
    };
    let pty = Pty::open();
    assert!(pty.name.starts_with("pts/"), "{}", pty.name);
    let marker = format!("tty-marker-{}", std::process::id());
    // One child in a new session with the pty as its controlling terminal, one in a new
    // session without any.
    for terminal in [true, false] {
        let mut child = Command::new("/bin/echo");
        child.args([marker.as_str(), if terminal { "with" } else { "without" }]);
        if terminal {
            pty.make_controlling(&mut child);
        } else {
            without_terminal(&mut child);
        }
        assert!(child.output().expect("run echo").status.success());
    }
    let seen: std::collections::BTreeMap<_, _> = marked_execs(&mut rx, &marker, 2)
        .await
        .into_iter()
        .map(|exec| {
            (
                exec.argv[2].clone(),
                kestrel_agent::enrich::tty::name(exec.tty),
            )
        })
        .collect();
    assert_eq!(seen["with"].as_deref(), Some(pty.name.as_str()), "{seen:?}");
    assert_eq!(seen["without"], None, "{seen:?}");
}

/// An overlay mount (a container's root, in miniature), unmounted on drop.
struct Overlay {
    dir: tempfile::TempDir,
}

impl Overlay {
    /// Lower layer holding `image-true` (a copy of /bin/true), mounted at `merged`.
    fn mount() -> Overlay {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::copy("/bin/true", dir.path().join("lower/image-true")).unwrap();
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let options = format!(
            "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
            dir.path().display()
        );
        let target = c(&dir.path().join("merged").display().to_string());
        let mounted = unsafe {
            libc::mount(
                c("overlay").as_ptr(),
                target.as_ptr(),
                c("overlay").as_ptr(),
                0,
                c(&options).as_ptr().cast(),
            )
        };
        assert_eq!(
            mounted,
            0,
            "mount overlay: {}",
            std::io::Error::last_os_error()
        );
        Overlay { dir }
    }

    fn merged(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("merged").join(name)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.merged("").display().to_string()).unwrap();
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_of_a_file_written_into_an_overlay_is_flagged_as_upper_layer() {
    let Some(mut rx) = start(0) else {
        return;
    };
    let overlay = Overlay::mount();
    // Dropped into the running "container": it lands in the writable upper layer.
    std::fs::copy("/bin/true", overlay.merged("dropped-true")).unwrap();
    let marker = format!("overlay-marker-{}", std::process::id());
    for name in ["image-true", "dropped-true"] {
        let status = Command::new(overlay.merged(name))
            .arg(&marker)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let seen: std::collections::BTreeMap<_, _> = marked_execs(&mut rx, &marker, 2)
        .await
        .into_iter()
        .map(|exec| {
            let name = exec.filename.rsplit('/').next().unwrap().to_owned();
            (name, exec.exe_upper_layer)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("dropped-true".to_owned(), true),
            ("image-true".to_owned(), false)
        ]
        .into(),
        "only the file written after the mount is in the upper layer"
    );
}

/// The audit login identity as `/proc/PID/loginuid` and `sessionid` hold it for `pid`.
fn proc_login(pid: u32) -> (u32, u32) {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{name}"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/{name}: {e}"))
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    (read("loginuid"), read("sessionid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_carries_the_audit_login_uid_and_session_a_login_set() {
    let Some(mut rx) = start(0) else {
        return;
    };
    let marker = format!("login-marker-{}", std::process::id());
    // A login as pam_loginuid makes one: the shell sets its loginuid (root may, once per
    // process), which opens a new audit session, then runs a command that outlives the check.
    let mut shell = Command::new("/bin/sh")
        .args([
            "-c",
            "echo 4242 > /proc/self/loginuid && exec /bin/sleep 30",
            &marker,
        ])
        .spawn()
        .expect("run sh");
    let record = expect_record(&mut rx, "exec of sleep with its login", |r| {
        matches!(r, KernelRecord::Exec(e) if e.common.tgid == shell.id() && e.filename == "/bin/sleep")
    })
    .await;
    let KernelRecord::Exec(exec) = record else {
        unreachable!()
    };
    let (loginuid, sessionid) = proc_login(shell.id());
    let _ = shell.kill();
    let _ = shell.wait();
    assert_eq!(loginuid, 4242, "the shell could set its loginuid");
    assert_eq!(exec.login.uid, Some(4242));
    assert_eq!(exec.login.session, Some(sessionid));
    assert_ne!(sessionid, u32::MAX, "setting loginuid opened a session");

    // Any other process has the test's own (none at all in CI, where nothing logged in).
    let (own_uid, own_session) = proc_login(std::process::id());
    let status = Command::new("/bin/echo")
        .args([marker.as_str(), "outside"])
        .output()
        .expect("run echo");
    assert!(status.status.success());
    let outside = marked_execs(&mut rx, &marker, 1).await.remove(0);
    let set = |id: u32| (id != u32::MAX).then_some(id);
    assert_eq!(outside.login.uid, set(own_uid));
    assert_eq!(outside.login.session, set(own_session));
}
