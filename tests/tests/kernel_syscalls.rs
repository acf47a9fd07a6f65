//! Kernel tests for the followed syscalls: each triggers the behaviour for real and asserts the
//! decoded record (and, through the agent's conversion, the protocol payload where it matters).

use std::{
    collections::BTreeMap,
    ffi::CString,
    io::Write,
    net::{TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd, unix::fs::PermissionsExt, unix::process::CommandExt},
    path::Path,
    process::Command,
};

use kestrel_agent::{
    config::AgentConfig,
    enrich::process_table::ProcessTable,
    events::pipeline::{Outputs, Pipeline},
    events::syscalls::payload,
    kernel::decode::{KernelRecord, Syscall},
};
use kestrel_ebpf_abi::{sys, KIND_CREDENTIAL, KIND_FILE};
use kestrel_proto::{event::Payload, FileOp, NetworkOp};
use kestrel_testkit::kernel::{everything, load, only_this_process};

/// The file payload of `s`, for a process whose working directory the agent does not follow
/// (it is read from /proc).
fn file_payload(s: &Syscall) -> kestrel_proto::FileEvent {
    match payload(s, "") {
        Some(Payload::File(f)) => f,
        other => panic!("not a file payload: {other:?}"),
    }
}

fn network_payload(s: &Syscall) -> kestrel_proto::NetworkEvent {
    match payload(s, "") {
        Some(Payload::Network(n)) => n,
        other => panic!("not a network payload: {other:?}"),
    }
}

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kestrel-kt-")
        .tempdir_in("/tmp")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_are_reported_with_absolute_paths() {
    let Some(mut k) = load(only_this_process(AgentConfig::default())) else {
        return;
    };
    let dir = scratch_dir();
    let root = dir.path().canonicalize().unwrap();
    let at = |name: &str| root.join(name).display().to_string();

    // openat relative to a directory fd: the path comes back absolute.
    let dirfd = std::fs::File::open(&root).unwrap();
    let name = CString::new("created.txt").unwrap();
    let fd = unsafe {
        libc::openat(
            dirfd.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o640,
        )
    };
    assert!(fd >= 0);
    unsafe { libc::close(fd) };
    let open = k
        .expect_syscall("openat O_CREAT", sys::OPENAT, |s| s.path == "created.txt")
        .await;
    let event = file_payload(&open);
    assert_eq!(event.op, FileOp::FileOpen as i32);
    assert_eq!(event.path, at("created.txt"));
    assert!(event.created && event.result >= 0);
    assert_eq!(event.mode, 0o640);

    std::fs::rename(at("created.txt"), at("renamed.txt")).unwrap();
    let rename = k
        .expect(
            "rename",
            |r| matches!(r, KernelRecord::Syscall(s) if [sys::RENAME, sys::RENAMEAT, sys::RENAMEAT2].contains(&s.syscall)),
        )
        .await;
    let KernelRecord::Syscall(rename) = rename else {
        unreachable!()
    };
    let rename = file_payload(&rename);
    assert_eq!(
        (rename.path.as_str(), rename.target_path.as_str()),
        (at("created.txt").as_str(), at("renamed.txt").as_str())
    );

    std::fs::set_permissions(at("renamed.txt"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let chmod = k
        .expect_family(
            "chmod",
            &[sys::CHMOD, sys::FCHMODAT, sys::FCHMODAT2],
            "renamed.txt",
        )
        .await;
    let chmod = file_payload(&chmod);
    assert_eq!((chmod.op, chmod.mode), (FileOp::FileChmod as i32, 0o4755));

    std::os::unix::fs::chown(at("renamed.txt"), Some(65534), None).unwrap();
    let chown = k
        .expect_family("chown", &[sys::CHOWN, sys::FCHOWNAT], "renamed.txt")
        .await;
    let chown = file_payload(&chown);
    assert_eq!((chown.uid, chown.gid), (65534, -1));

    std::os::unix::fs::symlink("/etc/passwd", at("link")).unwrap();
    let symlink = k
        .expect_family("symlink", &[sys::SYMLINK, sys::SYMLINKAT], "link")
        .await;
    let symlink = file_payload(&symlink);
    assert_eq!(
        (symlink.path.as_str(), symlink.target_path.as_str()),
        (at("link").as_str(), "/etc/passwd")
    );

    std::fs::hard_link(at("renamed.txt"), at("hard")).unwrap();
    let link = file_payload(
        &k.expect_family("link", &[sys::LINK, sys::LINKAT], "hard")
            .await,
    );
    assert_eq!(
        (link.path.as_str(), link.target_path.as_str()),
        (at("hard").as_str(), at("renamed.txt").as_str())
    );

    // Truncation through a descriptor, and timestamps set by hand (timestomping).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(at("renamed.txt"))
        .unwrap();
    file.set_len(0).unwrap();
    let truncate = file_payload(
        &k.expect_syscall("ftruncate", sys::FTRUNCATE, |_| true)
            .await,
    );
    assert_eq!(
        (truncate.op, truncate.path.as_str()),
        (FileOp::FileTruncate as i32, at("renamed.txt").as_str())
    );
    file.set_modified(std::time::UNIX_EPOCH).unwrap();
    let utimes = file_payload(&k.expect_syscall("futimens", sys::UTIMENSAT, |_| true).await);
    assert_eq!(
        (utimes.op, utimes.path.as_str()),
        (FileOp::FileUtimes as i32, at("renamed.txt").as_str())
    );
    drop(file);

    std::fs::remove_file(at("hard")).unwrap();
    let unlink = file_payload(
        &k.expect_family("unlink", &[sys::UNLINK, sys::UNLINKAT], "hard")
            .await,
    );
    assert_eq!(
        (unlink.op, unlink.path.as_str()),
        (FileOp::FileUnlink as i32, at("hard").as_str())
    );
    std::fs::create_dir(at("sub")).unwrap();
    std::fs::remove_dir(at("sub")).unwrap();
    let rmdir = file_payload(
        &k.expect_family("rmdir", &[sys::RMDIR, sys::UNLINKAT], "sub")
            .await,
    );
    assert_eq!(rmdir.op, FileOp::FileRmdir as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_reads_are_reported_and_ordinary_reads_never_reach_user_space() {
    let Some(mut k) = load(only_this_process(AgentConfig::default())) else {
        return;
    };
    let dir = scratch_dir();
    std::fs::read("/etc/hostname").unwrap();
    std::fs::read("/etc/shadow").unwrap();
    // By a relative path: caught in the kernel by its file name, made absolute in user space.
    let etc = std::fs::File::open("/etc").unwrap();
    let shadow_name = CString::new("shadow").unwrap();
    let fd = unsafe { libc::openat(etc.as_raw_fd(), shadow_name.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    unsafe { libc::close(fd) };
    let marker = dir.path().join("marker");
    std::fs::write(&marker, b"x").unwrap();
    let before_marker = k
        .until("the marker write", |r| matches!(r, KernelRecord::Syscall(s) if s.kind == KIND_FILE && s.path.ends_with("/marker")))
        .await;
    let files: Vec<String> = before_marker
        .iter()
        .filter_map(|r| match r {
            KernelRecord::Syscall(s) if s.kind == KIND_FILE => Some(s.path.clone()),
            _ => None,
        })
        .collect();
    assert!(
        files.contains(&"/etc/shadow".to_string()),
        "shadow read missing: {files:?}"
    );
    assert!(
        !files.iter().any(|f| f == "/etc/hostname"),
        "ordinary read reported: {files:?}"
    );
    let shadow = before_marker
        .iter()
        .find_map(|r| match r {
            KernelRecord::Syscall(s) if s.path == "/etc/shadow" => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert!(shadow.sensitive_read);
    assert_eq!(file_payload(&shadow).op, FileOp::FileReadSensitive as i32);
    let relative = before_marker
        .iter()
        .find_map(|r| match r {
            KernelRecord::Syscall(s) if s.path == "shadow" => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("relative shadow read missing: {files:?}"));
    assert!(relative.sensitive_read);
    let relative = file_payload(&relative);
    assert_eq!(
        (relative.op, relative.path.as_str()),
        (FileOp::FileReadSensitive as i32, "/etc/shadow")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_paths_and_disabled_kinds_are_filtered_in_the_kernel() {
    let dir = scratch_dir();
    let root = dir.path().canonicalize().unwrap();
    let muted = root.join("muted");
    std::fs::create_dir(&muted).unwrap();
    let config = AgentConfig {
        kinds: vec!["file".into()],
        muted_paths: vec![muted.display().to_string()],
        ..AgentConfig::default()
    };
    let Some(mut k) = load(only_this_process(config)) else {
        return;
    };
    std::fs::write(muted.join("quiet"), b"x").unwrap();
    // A disabled kind: a signal to a child.
    let mut child = Command::new("/bin/sleep").arg("5").spawn().unwrap();
    unsafe { libc::kill(child.id() as i32, 0) };
    std::fs::write(root.join("loud"), b"x").unwrap();
    let before = k
        .until(
            "the unmuted write",
            |r| matches!(r, KernelRecord::Syscall(s) if s.path.ends_with("/loud")),
        )
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let leaked: Vec<&KernelRecord> = before
        .iter()
        .filter(|r| match r {
            KernelRecord::Syscall(s) => s.path.contains("/muted/") || s.kind != KIND_FILE,
            _ => true,
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "filtered events reached user space: {leaked:?}"
    );
    // Filtered means never produced, not dropped for lack of room.
    let drops = k.probes.take_drop_counters().unwrap();
    for kind in 0..kestrel_ebpf_abi::KIND_SLOTS {
        assert_eq!(
            drops.get(&kind, 0).unwrap().iter().sum::<u64>(),
            0,
            "drops for kind {kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_over_ipv4_and_ipv6_carry_both_endpoints() {
    let Some(mut k) = load(only_this_process(AgentConfig::default())) else {
        return;
    };
    for host in ["127.0.0.1", "::1"] {
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect((host, port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let (_server, _) = listener.accept().unwrap();

        let listen = network_payload(
            &k.expect_syscall("listen", sys::LISTEN, |s| {
                s.aux.net().local_port == port as u64
            })
            .await,
        );
        assert_eq!(
            (listen.op, listen.local_port, listen.protocol),
            (NetworkOp::NetworkListen as i32, port as u32, 6)
        );
        let connect = network_payload(
            &k.expect_syscall("connect", sys::CONNECT, |s| {
                network_payload(s).remote_port == port as u32
            })
            .await,
        );
        assert_eq!(connect.remote_ip, host);
        assert!(connect.initiated && connect.result == 0);
        assert_eq!(connect.family, if host == "::1" { 10 } else { 2 });
        let accept = network_payload(
            &k.expect_syscall("accept", sys::ACCEPT4, |s| {
                s.aux.net().remote_port == client_port as u64
            })
            .await,
        );
        assert_eq!(
            (accept.local_port, accept.remote_port),
            (port as u32, client_port as u32)
        );
        assert_eq!(accept.remote_ip, host);
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    udp.send_to(b"ping", ("127.0.0.1", target_port)).unwrap();
    let bind = network_payload(
        &k.expect_syscall("bind", sys::BIND, |s| {
            network_payload(s).local_port == target_port as u32
        })
        .await,
    );
    assert_eq!(
        (bind.op, bind.local_ip.as_str()),
        (NetworkOp::NetworkBind as i32, "127.0.0.1")
    );
    let send = network_payload(&k.expect_syscall("sendto", sys::SENDTO, |_| true).await);
    assert_eq!(
        (send.op, send.remote_port, send.protocol),
        (NetworkOp::NetworkSend as i32, target_port as u32, 17)
    );
    // A raw packet socket: capture or injection.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    assert!(fd >= 0);
    unsafe { libc::close(fd) };
    let packet = network_payload(
        &k.expect_syscall("AF_PACKET socket", sys::SOCKET, |_| true)
            .await,
    );
    assert_eq!(
        (packet.op, packet.family),
        (NetworkOp::NetworkPacketSocket as i32, 17)
    );
}

/// Runs `f` in a forked child and returns the child's pid after it exited.
fn in_child(f: impl FnOnce()) -> u32 {
    match unsafe { libc::fork() } {
        0 => {
            f();
            unsafe { libc::_exit(0) }
        }
        pid => {
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            pid as u32
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_changes_carry_old_and_new_ids() {
    let Some(mut k) = load(everything()) else {
        return;
    };
    let child = in_child(|| unsafe {
        libc::setresgid(65534, 65534, 65534);
        libc::setresuid(1000, 65534, 0);
    });
    let change = k
        .expect_syscall("setresuid", sys::SETRESUID, |s| {
            s.common.tgid == child && s.kind == KIND_CREDENTIAL
        })
        .await;
    let Some(Payload::Credential(c)) = payload(&change, "/") else {
        panic!("not a credential payload")
    };
    let (old, new) = (c.old.unwrap(), c.new.unwrap());
    assert_eq!((old.ruid, old.euid, old.suid), (0, 0, 0));
    assert_eq!((new.ruid, new.euid, new.suid), (1000, 65534, 0));
    assert_eq!(new.rgid, 65534, "the earlier setresgid is visible");
    assert_eq!(c.result, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptrace_process_vm_writev_and_kill_name_their_target() {
    let Some(mut k) = load(only_this_process(AgentConfig::default())) else {
        return;
    };
    let mut target = Command::new("/bin/sleep").arg("10").spawn().unwrap();
    let pid = target.id();
    unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid as i32, 0, 0) };
    let seize = k.expect_syscall("ptrace", sys::PTRACE, |_| true).await;
    let Some(Payload::Ptrace(p)) = payload(&seize, "/") else {
        panic!()
    };
    assert_eq!(
        (p.request, p.target_pid, p.result),
        (libc::PTRACE_SEIZE as i64, pid, 0)
    );
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid as i32, 0, 0) };

    let mut byte = [0u8; 1];
    let local = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: 8 as *mut _,
        iov_len: 1,
    };
    unsafe { libc::process_vm_writev(pid as i32, &local, 1, &remote, 1, 0) };
    let write = k
        .expect_syscall("process_vm_writev", sys::PROCESS_VM_WRITEV, |_| true)
        .await;
    let Some(Payload::Ptrace(w)) = payload(&write, "/") else {
        panic!()
    };
    assert_eq!(w.target_pid, pid);
    assert!(w.result < 0, "writing address 8 fails");

    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let kill = k
        .expect_syscall("kill", sys::KILL, |s| s.args[0] as u32 == pid)
        .await;
    let Some(Payload::Signal(sig)) = payload(&kill, "/") else {
        panic!()
    };
    assert_eq!((sig.target_pid, sig.signal), (pid, libc::SIGTERM));
    target.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_bpf_memfd_namespace_and_io_uring_calls_are_reported() {
    let Some(mut k) = load(everything()) else {
        return;
    };
    let me = std::process::id();

    // A module load that the kernel refuses still shows who tried. Kernels built without
    // module support have no such tracepoints: then the hook must say it is unavailable.
    if kestrel_testkit::kernel::tracepoint_exists("sys_enter_finit_module") {
        let null = std::fs::File::open("/dev/null").unwrap();
        let params = CString::new("kestrel=1").unwrap();
        unsafe { libc::syscall(libc::SYS_finit_module, null.as_raw_fd(), params.as_ptr(), 0) };
        let module = k
            .expect_syscall("finit_module", sys::FINIT_MODULE, |s| s.common.tgid == me)
            .await;
        let Some(Payload::Module(m)) = payload(&module, "/") else {
            panic!()
        };
        assert_eq!(
            (m.path.as_str(), m.params.as_str()),
            ("/dev/null", "kestrel=1")
        );
        assert!(m.result < 0);
    } else {
        let hook = k
            .probes
            .hooks
            .iter()
            .find(|h| h.name == "sys_enter_finit_module")
            .unwrap();
        let reason = hook.result.as_ref().unwrap_err();
        assert!(
            reason.contains("sys_enter_finit_module"),
            "the reason names the missing tracepoint: {reason}"
        );
    }

    // bpf(BPF_PROG_LOAD) of a two-instruction socket filter named kestrel_probe.
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095]; // r0 = 0; exit
    let license = CString::new("GPL").unwrap();
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..61].copy_from_slice(b"kestrel_probe");
    let prog = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) };
    // Other tests in this process load programs too: look for this one by name.
    let bpf = k
        .expect_syscall(
            "bpf prog load",
            sys::BPF,
            |s| matches!(payload(s, "/"), Some(Payload::Bpf(b)) if b.prog_name == "kestrel_probe"),
        )
        .await;
    let Some(Payload::Bpf(b)) = payload(&bpf, "/") else {
        panic!()
    };
    assert_eq!(
        (b.prog_type, b.prog_name.as_str(), b.result),
        (1, "kestrel_probe", prog as i64)
    );
    if prog >= 0 {
        unsafe { libc::close(prog as i32) };
    }

    let name = CString::new("kestrel-memfd").unwrap();
    let memfd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    let created = k
        .expect_syscall("memfd_create", sys::MEMFD_CREATE, |s| s.common.tgid == me)
        .await;
    let Some(Payload::Memfd(mf)) = payload(&created, "/") else {
        panic!()
    };
    assert_eq!(
        (mf.name.as_str(), mf.result),
        ("kestrel-memfd", memfd as i64)
    );
    unsafe { libc::close(memfd) };

    let child = in_child(|| unsafe {
        libc::unshare(libc::CLONE_NEWUTS);
    });
    let unshare = k
        .expect_syscall("unshare", sys::UNSHARE, |s| s.common.tgid == child)
        .await;
    let Some(Payload::Namespace(ns)) = payload(&unshare, "/") else {
        panic!()
    };
    assert_eq!((ns.flags, ns.result), (libc::CLONE_NEWUTS as u64, 0));

    let mut params = [0u8; 120];
    let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) };
    let setup = k
        .expect_syscall("io_uring_setup", sys::IO_URING_SETUP, |s| {
            s.common.tgid == me
        })
        .await;
    let Some(Payload::IoUring(u)) = payload(&setup, "/") else {
        panic!()
    };
    assert_eq!(
        (u.op.as_str(), u.entries, u.result),
        ("setup", 4, ring as i64)
    );
    if ring >= 0 {
        unsafe { libc::close(ring as i32) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_cwd_effective_ids_capabilities_and_fileless_images() {
    let Some(mut k) = load(everything()) else {
        return;
    };
    let dir = scratch_dir();
    let cwd = dir.path().canonicalize().unwrap();
    let mut child = Command::new("/bin/sleep")
        .arg("2")
        .current_dir(&cwd)
        .spawn()
        .unwrap();
    let pid = child.id();
    let record = k
        .expect(
            "exec of /bin/sleep",
            |r| matches!(r, KernelRecord::Exec(e) if e.common.tgid == pid),
        )
        .await;
    // The working directory comes from the live process (the kernel side leaves it to user space).
    let event = Pipeline::new(ProcessTable::new(), Outputs::default())
        .event_for(record.clone())
        .expect("an exec event");
    assert_eq!(
        event.process.as_ref().unwrap().cwd,
        cwd.display().to_string()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let KernelRecord::Exec(exec) = record else {
        unreachable!()
    };
    assert_eq!((exec.euid, exec.egid), (0, 0));
    assert_eq!(
        exec.cap_effective & (1 << 21),
        1 << 21,
        "root has CAP_SYS_ADMIN"
    );
    let meta = std::fs::metadata("/bin/sleep").unwrap();
    assert_eq!(exec.exe_inode, std::os::unix::fs::MetadataExt::ino(&meta));
    assert!(!exec.exe_memfd && !exec.exe_deleted);

    // Fileless: /bin/true copied into a memfd and executed from there.
    let name = CString::new("fileless").unwrap();
    let memfd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(memfd) };
    file.write_all(&std::fs::read("/bin/true").unwrap())
        .unwrap();
    let child = Command::new(format!("/proc/self/fd/{memfd}"))
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    let exec = k
        .expect(
            "exec from memfd",
            |r| matches!(r, KernelRecord::Exec(e) if e.common.tgid == pid),
        )
        .await;
    let KernelRecord::Exec(exec) = exec else {
        unreachable!()
    };
    assert!(exec.exe_memfd, "exec from a memfd is flagged: {exec:?}");
    drop(file);

    // A deleted executable: copied, opened, unlinked, then executed through its descriptor.
    let copy = dir.path().join("gone");
    std::fs::copy("/bin/true", &copy).unwrap();
    let kept = std::fs::File::open(&copy).unwrap();
    std::fs::remove_file(&copy).unwrap();
    let child = Command::new(format!("/proc/self/fd/{}", kept.as_raw_fd()))
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    let exec = k
        .expect(
            "exec of a deleted file",
            |r| matches!(r, KernelRecord::Exec(e) if e.common.tgid == pid),
        )
        .await;
    let KernelRecord::Exec(exec) = exec else {
        unreachable!()
    };
    assert!(
        exec.exe_deleted,
        "exec of an unlinked file is flagged: {exec:?}"
    );
    assert!(Path::new("/proc/self").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_follow_chdir_fchdir_and_directory_descriptors_once_the_process_is_gone() {
    let Some(mut k) = load(everything()) else {
        return;
    };
    let dir = scratch_dir();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::create_dir(root.join("e")).unwrap();
    let mut pipeline = Pipeline::new(ProcessTable::from_proc(), Outputs::default());
    // A shell changes directory back and forth, writing by relative paths, and a child it
    // starts inherits where it is. All are gone before any record is read, so /proc cannot help.
    let status = Command::new("/bin/sh")
        .args([
            "-c",
            "cd d && /bin/sh -c ': > in-child'; cd ..; : > sibling; cd d; : > inner",
        ])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success());
    // fchdir through a descriptor closed at once, and a removal by descriptor-relative calls
    // (rm -r opens each directory and unlinks the names in it).
    let e = CString::new(root.join("e").into_os_string().into_encoded_bytes()).unwrap();
    let mut by_fd = Command::new("/bin/sh");
    by_fd.args(["-c", ": > via-fd"]);
    unsafe {
        by_fd.pre_exec(move || {
            let fd = libc::open(e.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            if fd < 0 || libc::fchdir(fd) != 0 || libc::close(fd) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert!(by_fd.status().unwrap().success());
    std::fs::create_dir_all(root.join("t/u")).unwrap();
    for file in ["t/u/f1", "t/u/f2", "t/g"] {
        std::fs::write(root.join(file), b"x").unwrap();
    }
    let status = Command::new("/bin/rm")
        .args(["-r", "t"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success());
    // Opening a directory again within the minute costs no record: the agent knows it.
    for _ in 0..2 {
        std::fs::read_dir(root.join("e")).unwrap().for_each(drop);
    }
    std::fs::write(root.join("done"), b"x").unwrap();

    let names = [
        "in-child", "sibling", "inner", "via-fd", "/f1", "/f2", "/g", "/u", "/t", "done",
    ];
    let e_path = root.join("e").display().to_string();
    let mut opens_of_e = 0;
    let mut paths: BTreeMap<&str, String> = BTreeMap::new();
    let mut child_cwd = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while paths.len() < names.len() || child_cwd.is_none() {
        let Ok(Some(record)) = tokio::time::timeout_at(deadline, k.records.recv()).await else {
            break;
        };
        if matches!(&record, KernelRecord::Syscall(s) if s.directory_open && s.path == e_path) {
            opens_of_e += 1;
        }
        let Some(event) = pipeline.event_for(record) else {
            continue;
        };
        let process = event.process.unwrap_or_default();
        match event.payload {
            Some(Payload::File(file)) => {
                let removal =
                    [FileOp::FileUnlink as i32, FileOp::FileRmdir as i32].contains(&file.op);
                if let Some(name) = names
                    .iter()
                    .find(|n| file.path.ends_with(*n) && (removal == n.starts_with('/')))
                {
                    paths.insert(name, file.path);
                }
            }
            Some(Payload::Exec(_))
                if process.argv.last().map(String::as_str) == Some(": > in-child") =>
            {
                child_cwd = Some(process.cwd);
            }
            _ => {}
        }
    }
    let at = |p: &str| root.join(p).display().to_string();
    let expected: BTreeMap<&str, String> = [
        ("in-child", at("d/in-child")),
        ("sibling", at("sibling")),
        ("inner", at("d/inner")),
        ("via-fd", at("e/via-fd")),
        ("/f1", at("t/u/f1")),
        ("/f2", at("t/u/f2")),
        ("/g", at("t/g")),
        ("/u", at("t/u")),
        ("/t", at("t")),
        ("done", at("done")),
    ]
    .into_iter()
    .collect();
    assert_eq!(paths, expected);
    assert_eq!(opens_of_e, 1, "directory opens reported for {e_path}");
    assert_eq!(
        child_cwd,
        Some(at("d")),
        "the child's working directory at exec"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_a_tiny_ring_buffer_accounts_for_every_event_exactly() {
    const N: u64 = 3000;
    let mut target = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let target_pid = target.id() as i32;
    // The flooding process waits on a pipe until the programs are loaded for it alone.
    let mut go = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
    let flooder = match unsafe { libc::fork() } {
        0 => unsafe {
            let mut byte = 0u8;
            libc::read(go[0], (&mut byte as *mut u8).cast(), 1);
            for _ in 0..N {
                libc::kill(target_pid, 0);
            }
            libc::_exit(0)
        },
        pid => pid,
    };
    let config = AgentConfig {
        kinds: vec!["signal".into()],
        ..AgentConfig::default()
    };
    let options = kestrel_agent::kernel::loader::LoadOptions {
        ring_buffer_bytes: Some(4096),
        agent_tgid: 0,
        only_tgid: flooder as u32,
        config,
        ..Default::default()
    };
    let probes = kestrel_testkit::kernel::load_probes(options);
    let Some(mut probes) = probes else {
        unsafe { libc::kill(flooder, libc::SIGKILL) };
        target.kill().unwrap();
        target.wait().unwrap();
        return;
    };
    let mut ring = probes.take_ring_buffer().unwrap();
    let mut loss =
        kestrel_agent::kernel::loss::LossMonitor::new(probes.take_drop_counters().unwrap(), 0)
            .unwrap();
    // Nobody reads while the flooder runs: the ring fills and the kernel counts the rest.
    unsafe { libc::write(go[1], b"g".as_ptr().cast(), 1) };
    let mut status = 0;
    unsafe { libc::waitpid(flooder, &mut status, 0) };
    let mut received = 0u64;
    while let Some(item) = ring.next() {
        if let Ok(KernelRecord::Syscall(s)) = kestrel_agent::kernel::decode::decode(&item) {
            assert_eq!((s.syscall, s.args[0] as i32), (sys::KILL, target_pid));
            received += 1;
        }
    }
    let gaps = loss.poll(1).unwrap();
    let dropped: u64 = gaps
        .iter()
        .filter(|g| g.kind == "signal")
        .map(|g| g.count)
        .sum();
    target.kill().unwrap();
    target.wait().unwrap();
    eprintln!("generated {N}, received {received}, reported dropped {dropped}");
    assert!(
        received > 0 && dropped > 0,
        "the tiny ring both delivered and overflowed"
    );
    assert_eq!(received + dropped, N, "received + dropped = generated");
    assert!(gaps
        .iter()
        .all(|g| g.reason == "kernel" && g.last_time_unix_ns == 1));
}

/// A DNS response (hand-built, independent of the agent's parser): `name` has the address
/// `address`.
fn dns_response(id: u16, name: &str, address: [u8; 4]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&id.to_be_bytes());
    // Flags: a response, recursion desired and available, no error; one question, one answer.
    bytes.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    for label in name.split('.') {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]); // end of name, type A, class IN
                                               // The answer: a pointer to the question's name, type A, class IN, TTL 60, 4 bytes.
    bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    bytes.extend_from_slice(&address);
    bytes
}

/// Brings the loopback interface of this thread's network namespace up.
fn loopback_up() {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut request: libc::ifreq = std::mem::zeroed();
        for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &request),
            0,
            "lo up: {}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_are_captured_and_name_the_hosts_connected_to_later() {
    let Some(mut k) = load(only_this_process(AgentConfig::default())) else {
        return;
    };
    let name = format!("c2-{}.kestrel-test.example", std::process::id());
    let address = [127, 0, 0, 2];
    let (from_recvfrom, from_recvmsg) = (
        dns_response(1, &name, address),
        dns_response(2, &name, address),
    );
    let answers = (from_recvfrom.clone(), from_recvmsg.clone());
    // In a network namespace of this thread's own, port 53 is ours: a resolver answers twice,
    // the client receives once with recvfrom and once with recvmsg, then connects to the
    // address it was given.
    std::thread::spawn(move || {
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        loopback_up();
        let resolver = UdpSocket::bind("127.0.0.1:53").unwrap();
        let listener = TcpListener::bind("127.0.0.2:8443").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect("127.0.0.1:53").unwrap();
        let mut buffer = [0u8; 512];
        for answer in [&answers.0, &answers.1] {
            client.send(b"query").unwrap();
            let (_, asker) = resolver.recv_from(&mut buffer).unwrap();
            resolver.send_to(answer, asker).unwrap();
        }
        let received = client.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..received], &answers.0[..]);
        let mut iov = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        };
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        let received = unsafe { libc::recvmsg(client.as_raw_fd(), &mut message, 0) };
        assert_eq!(&buffer[..received as usize], &answers.1[..]);
        let _connection = TcpStream::connect("127.0.0.2:8443").unwrap();
        drop(listener);
    })
    .join()
    .unwrap();

    // The resolver's own receive (of a query, from a client port) is not reported: the first
    // receive the kernel reports is the client's answer.
    let first = k.expect_syscall("a receive", sys::RECVFROM, |_| true).await;
    assert_eq!(first.received, from_recvfrom, "the answer's bytes, exactly");
    let by_recvmsg = k.expect_syscall("recvmsg", sys::RECVMSG, |_| true).await;
    assert_eq!(by_recvmsg.received, from_recvmsg);
    let connect = k
        .expect_syscall("the connect", sys::CONNECT, |s| {
            network_payload(s).remote_ip == "127.0.0.2"
        })
        .await;

    // Through the pipeline: the answers are events of their own, and they name the address
    // connected to afterwards.
    let mut pipeline = Pipeline::new(ProcessTable::new(), Outputs::default());
    for record in [first, by_recvmsg] {
        let event = pipeline
            .event_for(KernelRecord::Syscall(Box::new(record)))
            .expect("an answer event");
        let Some(Payload::Network(answer)) = event.payload else {
            panic!("not a network event: {event:?}");
        };
        assert_eq!(answer.op, NetworkOp::NetworkDnsAnswer as i32);
        assert_eq!(
            (answer.remote_ip.as_str(), answer.remote_port),
            ("127.0.0.1", 53)
        );
        let dns = answer.dns.expect("the answer parsed");
        assert_eq!((dns.query.as_str(), dns.rcode), (name.as_str(), 0));
        assert_eq!(dns.answers, ["127.0.0.2"]);
    }
    let event = pipeline
        .event_for(KernelRecord::Syscall(Box::new(connect)))
        .expect("a connect event");
    let Some(Payload::Network(connection)) = event.payload else {
        panic!("not a network event: {event:?}");
    };
    assert_eq!(connection.remote_hostname, name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_another_process_memory_are_reported_and_own_proc_reads_are_not() {
    let Some(mut k) = load(only_this_process(AgentConfig::default())) else {
        return;
    };
    let dir = scratch_dir();
    let me = std::process::id();
    let mut target = Command::new("/bin/sleep").arg("10").spawn().unwrap();
    let pid = target.id();
    for not_reported in [
        "/proc/self/maps".to_string(),
        format!("/proc/{me}/maps"),
        format!("/proc/{pid}/status"),
    ] {
        std::fs::read(&not_reported).unwrap();
    }
    std::fs::read(format!("/proc/{pid}/maps")).unwrap();
    std::fs::File::open(format!("/proc/{pid}/task/{pid}/mem")).unwrap();
    std::fs::write(dir.path().join("marker"), b"x").unwrap();
    let before_marker = k
        .until("the marker write", |r| matches!(r, KernelRecord::Syscall(s) if s.kind == KIND_FILE && s.path.ends_with("/marker")))
        .await;
    let reads: Vec<(String, bool)> = before_marker
        .iter()
        .filter_map(|r| match r {
            KernelRecord::Syscall(s) if s.kind == KIND_FILE && s.path.starts_with("/proc/") => {
                Some((s.path.clone(), s.sensitive_read))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        reads,
        [
            (format!("/proc/{pid}/maps"), true),
            (format!("/proc/{pid}/task/{pid}/mem"), true)
        ],
        "only the other process's maps and mem are reported"
    );
    let maps = before_marker
        .iter()
        .find_map(|r| match r {
            KernelRecord::Syscall(s) if s.path.ends_with("/maps") => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(file_payload(&maps).op, FileOp::FileReadSensitive as i32);
    target.kill().unwrap();
    target.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_renaming_itself_is_reported_and_a_thread_naming_itself_is_not() {
    let Some(mut k) = load(everything()) else {
        return;
    };
    let me = std::process::id();
    // A test runs on a thread of its own, not on the process's main thread.
    let thread_name = CString::new("kestrel-thread").unwrap();
    unsafe { libc::prctl(libc::PR_SET_NAME, thread_name.as_ptr()) };
    let new_name = CString::new("kworker/9:9").unwrap();
    let child = in_child(|| unsafe {
        libc::prctl(libc::PR_SET_NAME, new_name.as_ptr());
    });
    let before = k
        .until("the child's rename", |r| {
            matches!(r, KernelRecord::Syscall(s) if s.syscall == sys::PRCTL && s.common.tgid == child)
        })
        .await;
    assert!(
        !before.iter().any(
            |r| matches!(r, KernelRecord::Syscall(s) if s.syscall == sys::PRCTL && s.common.tgid == me)
        ),
        "a thread's name was reported as a process rename"
    );
    // The first child's rename was the marker; a second one is decoded.
    let new_name = CString::new("kworker/9:8").unwrap();
    let child = in_child(|| unsafe {
        libc::prctl(libc::PR_SET_NAME, new_name.as_ptr());
    });
    let rename = k
        .expect_syscall("prctl(PR_SET_NAME)", sys::PRCTL, |s| s.common.tgid == child)
        .await;
    let Some(Payload::ProcessRename(r)) = payload(&rename, "/") else {
        panic!("not a process rename payload")
    };
    assert_eq!((r.name.as_str(), r.result), ("kworker/9:8", 0));
}
