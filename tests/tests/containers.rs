//! Container tests: real Podman containers from an image imported from the host's
//! `busybox-static` (never a registry pull), resolved by the agent's container resolver through
//! Podman's API socket.
//!
//! Each test writes its own `containers.conf` (passed as `CONTAINERS_CONF`):
//! - `default_ulimits = []`: without CAP_SYS_RESOURCE the OCI runtime cannot raise
//!   RLIMIT_NOFILE to Podman's default and `podman run` fails with "error setting rlimit type 7".
//! - `runtime = "runc"`: on a host with hybrid cgroups (v1 controllers plus a cgroup2 mount at
//!   `/sys/fs/cgroup/unified` that still holds a controller, such as `hugetlb`), Debian 12's
//!   crun 1.8 refuses every container ("cgroups in hybrid mode not supported"); runc runs them
//!   and also joins the container's cgroup2 directory, whose id the eBPF programs report.
//!
//! The containerd test starts its own containerd (Debian `containerd`) on a socket in a temporary
//! directory, imports the same image (saved by Podman) with `ctr`, and runs a container from it.
//!
//! They need root (rootful Podman, containerd, eBPF): in CI a missing capability or tool fails
//! them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use kestrel_agent::{
    enrich::container::{
        cgroup::CgroupFs,
        runtime::{ApiKind, Endpoint},
        Container, ContainerConfig, ContainerResolver, Enrichment,
    },
    kernel::{
        decode::{Exec, KernelRecord},
        loader::{LoadOptions, Probes},
        reader::RingReader,
    },
};
use kestrel_testkit::{poll, skip_or_fail, ChildGuard};
use tokio::sync::mpsc;

/// Where Debian's `busybox-static` installs its binary.
const BUSYBOX: &str = "/bin/busybox";
/// The image the tests import.
const IMAGE: &str = "localhost/kestrel-test-busybox:latest";
/// Commands linked to busybox in the image.
const APPLETS: [&str; 6] = ["sh", "sleep", "echo", "cat", "true", "id"];
/// Pod identity given to the container as Kubernetes labels.
const POD_NAME: &str = "web-0";
const POD_NAMESPACE: &str = "prod";
const POD_UID: &str = "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60";
const CONTAINER_NAME: &str = "app";

/// A Podman set up for one test: its own configuration, the image, and an API service on a
/// socket in a temporary directory (stopped when dropped).
struct Podman {
    dir: tempfile::TempDir,
    _service: ChildGuard,
}

impl Podman {
    /// Sets Podman up, or returns `None` (after `skip_or_fail`) when this host cannot.
    fn start() -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            skip_or_fail("not root: rootful Podman containers need root");
            return None;
        }
        for (tool, package) in [
            ("podman", "podman"),
            ("runc", "runc"),
            ("tar", "tar"),
            (BUSYBOX, "busybox-static"),
        ] {
            if !on_path(tool) {
                skip_or_fail(format!(
                    "{tool} not found: install the Debian package {package} (cargo xtask setup does)"
                ));
                return None;
            }
        }
        if !is_static(Path::new(BUSYBOX)) {
            skip_or_fail(format!(
                "{BUSYBOX} is dynamically linked: install the Debian package busybox-static"
            ));
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = kestrel_testkit::podman::write_conf(dir.path());

        let socket = dir.path().join("podman.sock");
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", &conf)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("service.log")).expect("service log"));
        let service = ChildGuard::spawn("podman system service", &mut command);
        let podman = Self {
            dir,
            _service: service,
        };
        podman.import_image();
        assert!(
            poll(Duration::from_secs(20), || socket.exists().then_some(())).is_some(),
            "podman system service did not create {} within 20 s",
            socket.display()
        );
        Some(podman)
    }

    /// The API socket of this test's Podman service.
    fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// Runs `podman args…` with this test's configuration; fails the test on error.
    fn run(&self, args: &[&str]) -> String {
        kestrel_testkit::podman::run(&self.dir.path().join("containers.conf"), args)
    }

    fn output(&self, args: &[&str]) -> Output {
        kestrel_testkit::podman::output(&self.dir.path().join("containers.conf"), args)
    }

    /// Imports [`IMAGE`]: a root file system with only `/bin/busybox` and applet links.
    fn import_image(&self) {
        let root = self.dir.path().join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("rootfs/bin");
        std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
        let tar = self.dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar of the busybox rootfs failed");
        self.run(&["import", tar.to_str().expect("utf-8 path"), IMAGE]);
    }

    /// Starts a detached container running `command` with the test pod's Kubernetes labels.
    fn run_container(&self, name: &str, command: &[&str]) -> RunningContainer<'_> {
        let _ = self.output(&["rm", "-f", "-t", "0", name]);
        let labels = [
            format!("io.kubernetes.pod.name={POD_NAME}"),
            format!("io.kubernetes.pod.namespace={POD_NAMESPACE}"),
            format!("io.kubernetes.pod.uid={POD_UID}"),
            format!("io.kubernetes.container.name={CONTAINER_NAME}"),
        ];
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        for label in &labels {
            args.extend(["--label", label]);
        }
        args.push(IMAGE);
        args.extend(command);
        let id = self.run(&args);
        assert_eq!(id.len(), 64, "podman run printed a full container id: {id}");
        let pid: u32 = self
            .run(&["inspect", "--format", "{{.State.Pid}}", &id])
            .parse()
            .expect("container pid");
        assert!(pid > 0, "container {id} is running");
        RunningContainer {
            podman: self,
            id,
            pid,
        }
    }

    /// Saves [`IMAGE`] as a Docker archive (for `ctr images import`); returns its path.
    fn save_image(&self) -> PathBuf {
        let archive = self.dir.path().join("image.tar");
        self.run(&[
            "save",
            "--format",
            "docker-archive",
            "-o",
            archive.to_str().expect("utf-8 path"),
            IMAGE,
        ]);
        archive
    }

    /// A resolver that asks only this test's Podman service.
    fn resolver(&self) -> ContainerResolver {
        ContainerResolver::new(ContainerConfig {
            endpoints: vec![Endpoint::new(ApiKind::Podman, self.socket())],
            ..ContainerConfig::default()
        })
        .expect("container resolver")
    }
}

/// A running container, removed when dropped.
struct RunningContainer<'a> {
    podman: &'a Podman,
    id: String,
    pid: u32,
}

impl Drop for RunningContainer<'_> {
    fn drop(&mut self) {
        let _ = self.podman.output(&["rm", "-f", "-t", "0", &self.id]);
    }
}

fn on_path(tool: &str) -> bool {
    if tool.starts_with('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// True when the ELF file at `path` has no program interpreter (is statically linked).
fn is_static(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    !bytes.windows(7).any(|w| w == b"ld-linux") && !bytes.windows(9).any(|w| w == b"ld-musl-x")
}

/// The cgroup id of process `pid`, as the kernel reports it.
fn cgroup_id_of(pid: u32) -> u64 {
    let cgroups = CgroupFs::discover().expect("cgroup2 mounted");
    let path = cgroups.path_of_pid(pid).expect("cgroup path");
    cgroups.id_of_path(&path).expect("cgroup id")
}

/// Calls `resolve` until the answer is complete or `timeout` passes; returns the last answer.
async fn resolve_complete(
    resolver: &mut ContainerResolver,
    cgroup_id: u64,
    pid: u32,
    timeout: Duration,
) -> (Option<Container>, Enrichment) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = resolver.resolve(cgroup_id, pid);
        if answer.1 == Enrichment::Complete || tokio::time::Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `container` is the test container `id` with the image and pod labels.
fn assert_is_test_container(container: Option<Container>, id: &str, name: &str) {
    let container = container.expect("a container");
    assert_eq!(
        container,
        Container {
            id: id.to_owned(),
            runtime: "podman".into(),
            name: CONTAINER_NAME.into(),
            image: IMAGE.into(),
            pod_name: POD_NAME.into(),
            pod_namespace: POD_NAMESPACE.into(),
            pod_uid: POD_UID.into(),
            ..Container::default()
        },
        "container {name}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_in_a_podman_container_resolves_to_its_id_image_and_pod_labels() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let name = format!("kestrel-resolve-{}", std::process::id());
    let container = podman.run_container(&name, &["/bin/sleep", "300"]);
    let cgroup_id = cgroup_id_of(container.pid);
    let mut resolver = podman.resolver();

    let (first, enrichment) = resolver.resolve(cgroup_id, container.pid);
    assert_eq!(
        enrichment,
        Enrichment::Pending,
        "the first answer does not wait for the runtime"
    );
    let first = first.expect("the cgroup path names the container");
    assert_eq!(first.id, container.id);
    assert_eq!(first.runtime, "podman");

    let (complete, enrichment) = resolve_complete(
        &mut resolver,
        cgroup_id,
        container.pid,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        enrichment,
        Enrichment::Complete,
        "podman's API answered within 10 s: {complete:?}"
    );
    assert_is_test_container(complete, &container.id, &name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_process_is_not_in_a_container() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let mut resolver = podman.resolver();
    let pid = std::process::id();
    let host_cgroup = cgroup_id_of(pid);
    assert_eq!(resolver.resolve(host_cgroup, pid), (None, Enrichment::None));
    // Still none once any background work has had time to finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(resolver.resolve(host_cgroup, pid), (None, Enrichment::None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_inside_a_container_is_reported_by_the_kernel_with_the_container_cgroup() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let mut probes = match Probes::load(&LoadOptions {
        agent_tgid: 0,
        ..LoadOptions::default()
    }) {
        Ok(probes) => probes,
        Err(err) => {
            skip_or_fail(format!("eBPF programs did not load: {err:#}"));
            return;
        }
    };
    let ring = probes.take_ring_buffer().expect("ring buffer");
    let (tx, mut rx) = mpsc::channel(4096);
    tokio::spawn(RingReader::new(ring, tx).expect("reader").run());

    let name = format!("kestrel-exec-{}", std::process::id());
    let container = podman.run_container(&name, &["/bin/sleep", "300"]);
    let marker = format!("kestrel-marker-{}", std::process::id());
    // A short-lived exec: by the time its record is resolved the process is gone, so the
    // resolver must find the cgroup by id.
    podman.run(&["exec", &container.id, "/bin/echo", &marker]);

    // `podman exec` itself (on the host) carries the marker too: match the exec'd command's
    // exact argument vector.
    let exec = expect_exec(&mut rx, &["/bin/echo", marker.as_str()]).await;
    assert_eq!(
        exec.common.cgroup_id,
        cgroup_id_of(container.pid),
        "the exec'd process is in the container's cgroup (as the kernel reports it): {exec:?}"
    );

    let mut resolver = podman.resolver();
    let (container_context, enrichment) = resolve_complete(
        &mut resolver,
        exec.common.cgroup_id,
        exec.common.tgid,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(enrichment, Enrichment::Complete, "{container_context:?}");
    assert_is_test_container(container_context, &container.id, &name);

    // Container drift: the image's program is not in the writable layer; a copy dropped into
    // the running container is.
    assert!(!exec.exe_upper_layer, "{exec:?}");
    podman.run(&[
        "exec",
        &container.id,
        "/bin/busybox",
        "cp",
        "/bin/busybox",
        "/busybox-dropped",
    ]);
    podman.run(&["exec", &container.id, "/busybox-dropped", "echo", &marker]);
    let dropped = expect_exec(&mut rx, &["/busybox-dropped", "echo", marker.as_str()]).await;
    assert!(dropped.exe_upper_layer, "{dropped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_adds_the_pods_kubernetes_metadata_from_the_api_server_to_container_events() {
    use kestrel_testkit::kube_api::{recorded_pods, FakeApiServer, ListAnswer, WatchAnswer};
    let Some(podman) = Podman::start() else {
        return;
    };
    if !kestrel_testkit::require_root_for_ebpf() {
        return;
    }
    // The recorded Deployment pod has the uid the test container's labels name (Podman's
    // cgroups carry no pod uid: the resolver takes it from the runtime's labels).
    let server = FakeApiServer::start(
        vec![ListAnswer::Pods("100", recorded_pods())],
        vec![WatchAnswer {
            lines: vec![],
            hold: true,
        }],
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[containers]\nendpoints = [{{ kind = \"podman\", socket = \"{}\" }}]\n\n\
             [kubernetes]\napi_server = \"{}\"\nnode_name = \"node-1\"\n",
            podman.socket().display(),
            server.url()
        ),
    )
    .expect("agent.toml");
    let events = dir.path().join("events.jsonl");
    let log = dir.path().join("agent.log");
    let _agent = ChildGuard::spawn(
        "kestrel-agent",
        Command::new(kestrel_testkit::binary("kestrel-agent"))
            .arg("--config")
            .arg(&config)
            .arg("--events-jsonl")
            .arg(&events)
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).expect("agent log")),
    );
    let ready = kestrel_testkit::poll(Duration::from_secs(120), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains("agent running") && text.contains("Kubernetes pods listed")).then_some(())
    });
    assert!(
        ready.is_some(),
        "the agent did not start and list the pods; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let name = format!("kestrel-k8s-{}", std::process::id());
    let container = podman.run_container(
        &name,
        &[
            "/bin/sh",
            "-c",
            "while true; do /bin/true; /bin/sleep 1; done",
        ],
    );
    let event = kestrel_testkit::expect_json_line(
        &events,
        Duration::from_secs(30),
        "an event of the container with its pod's workload",
        |e| {
            e["container"]["id"] == container.id.as_str()
                && e["container"]["workload_kind"] == "Deployment"
        },
    );
    let context = &event["container"];
    assert_eq!(context["workload_name"], "web", "{context}");
    assert_eq!(context["service_account"], "web", "{context}");
    assert_eq!(context["node_name"], "node-1", "{context}");
    assert_eq!(
        context["pod_labels"]["app.kubernetes.io/part-of"], "shop",
        "{context}"
    );
    assert_eq!(context["pod_uid"], POD_UID, "{context}");
    assert_eq!(
        (context["pod_name"].as_str(), context["image"].as_str()),
        (Some(POD_NAME), Some(IMAGE)),
        "the runtime's view stays: {context}"
    );
}

/// Waits up to 10 s for the exec record whose argument vector is `argv`.
async fn expect_exec(rx: &mut mpsc::Receiver<KernelRecord>, argv: &[&str]) -> Exec {
    // Every host process's records arrive too: keep only the last few for the failure message.
    let mut seen = std::collections::VecDeque::new();
    let mut others = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let record = if tokio::time::Instant::now() < deadline {
            tokio::time::timeout_at(deadline, rx.recv()).await
        } else {
            Ok(None)
        };
        match record {
            Ok(Some(KernelRecord::Exec(exec))) if exec.argv == argv => return exec,
            Ok(Some(other)) => {
                others += 1;
                if seen.len() == 10 {
                    seen.pop_front();
                }
                seen.push_back(format!("{other:?}"));
            }
            _ => panic!(
                "no exec record of {argv:?} within 10 s; {others} other records, the last:\n{}",
                Vec::from(seen).join("\n")
            ),
        }
    }
}

/// A containerd of this test's own: configuration, state and socket in a temporary directory.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: ChildGuard,
}

/// containerd namespace the test container lives in (the one Kubernetes uses).
const CONTAINERD_NAMESPACE: &str = "k8s.io";

impl Containerd {
    /// Starts containerd, or returns `None` (after `skip_or_fail`) when it is not installed.
    fn start() -> Option<Self> {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            if !on_path(tool) {
                skip_or_fail(format!(
                    "{tool} not found: install the Debian package containerd (cargo xtask setup does)"
                ));
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{socket}\"\n",
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                socket = dir.path().join("containerd.sock").display(),
            ),
        )
        .expect("write containerd config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log");
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log);
        let daemon = ChildGuard::spawn("containerd", &mut command);
        let containerd = Self { dir, daemon };
        let socket = containerd.socket();
        let up = poll(Duration::from_secs(20), || {
            containerd
                .ctr_output(&["version"])
                .status
                .success()
                .then_some(())
        });
        assert!(
            up.is_some(),
            "containerd did not answer on {} within 20 s; its log:\n{}",
            socket.display(),
            std::fs::read_to_string(containerd.dir.path().join("containerd.log"))
                .unwrap_or_default()
        );
        Some(containerd)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn ctr_output(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", CONTAINERD_NAMESPACE])
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// Runs `ctr args…`; fails the test on error.
    fn ctr(&self, args: &[&str]) -> String {
        let output = self.ctr_output(args);
        assert!(
            output.status.success(),
            "ctr {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.daemon.terminate(Duration::from_secs(5));
    }
}

/// A container run by `ctr`, killed and deleted when dropped.
struct CtrContainer<'a> {
    containerd: &'a Containerd,
    id: String,
    pid: u32,
}

impl Drop for CtrContainer<'_> {
    fn drop(&mut self) {
        let _ = self
            .containerd
            .ctr_output(&["tasks", "kill", "-s", "SIGKILL", &self.id]);
        let _ = poll(Duration::from_secs(5), || {
            self.containerd
                .ctr_output(&["tasks", "delete", &self.id])
                .status
                .success()
                .then_some(())
        });
        let _ = self
            .containerd
            .ctr_output(&["containers", "delete", &self.id]);
    }
}

/// 64 random lowercase hex digits: a container id of the usual form.
fn random_container_id() -> String {
    let mut bytes = [0u8; 32];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_in_a_containerd_container_resolves_through_the_containerd_api() {
    let Some(podman) = Podman::start() else {
        return;
    };
    let Some(containerd) = Containerd::start() else {
        return;
    };
    let archive = podman.save_image();
    containerd.ctr(&["images", "import", archive.to_str().expect("utf-8 path")]);

    let id = random_container_id();
    let labels = [
        format!("io.kubernetes.pod.name={POD_NAME}"),
        format!("io.kubernetes.pod.namespace={POD_NAMESPACE}"),
        format!("io.kubernetes.pod.uid={POD_UID}"),
        format!("io.kubernetes.container.name={CONTAINER_NAME}"),
    ];
    let mut args = vec!["run", "-d"];
    for label in &labels {
        args.extend(["--label", label]);
    }
    args.extend([IMAGE, &id, "/bin/sleep", "300"]);
    containerd.ctr(&args);
    let tasks = containerd.ctr(&["tasks", "ls"]);
    let pid: u32 = tasks
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(id.as_str())).then(|| fields.next())?
        })
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no task {id} in `ctr tasks ls`:\n{tasks}"));
    let container = CtrContainer {
        containerd: &containerd,
        id: id.clone(),
        pid,
    };

    let cgroup_id = cgroup_id_of(container.pid);
    let mut resolver = ContainerResolver::new(ContainerConfig {
        endpoints: vec![Endpoint::new(ApiKind::Containerd, containerd.socket())],
        ..ContainerConfig::default()
    })
    .expect("container resolver");
    let (complete, enrichment) = resolve_complete(
        &mut resolver,
        cgroup_id,
        container.pid,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        enrichment,
        Enrichment::Complete,
        "containerd's API answered within 10 s: {complete:?}"
    );
    assert_eq!(
        complete,
        Some(Container {
            id: container.id.clone(),
            runtime: "containerd".into(),
            name: CONTAINER_NAME.into(),
            image: IMAGE.into(),
            pod_name: POD_NAME.into(),
            pod_namespace: POD_NAMESPACE.into(),
            pod_uid: POD_UID.into(),
            ..Container::default()
        })
    );
}
