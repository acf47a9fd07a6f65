//! The Debian packages and their systemd units, started as written by a real systemd: a Debian
//! root made by `cargo xtask setup` (debootstrap, with systemd) boots as PID 1 in a Podman
//! container, `cargo xtask deb` packages this test build's binaries, `dpkg -i` installs them,
//! and `systemctl start` must come back only once each binary said READY=1 (`Type=notify`).
//! Then the agent's events reach the collector (its alert raised and stored), the collector
//! runs as the `kestrel` user the package made and reads its 0600 key, the watchdog is fed
//! while the collector runs and restarts it when it stops answering, and both stop cleanly.
//! `systemd-analyze verify` passes on the installed units, and `systemd-analyze security`
//! scores the collector at 3.0 or lower.
//!
//! Needs root (rootful Podman, a privileged container for the agent's eBPF programs); in CI a
//! missing tool or capability fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kestrel_testkit::{binary, built_profile, podman, skip_or_fail, stack::certs, workspace_root};

/// Where `cargo xtask setup` makes the Debian root with systemd (xtask `SYSTEMD_ROOT`).
const SYSTEMD_ROOT: &str = "/var/cache/kestrel/systemd-root";
/// Most exposure `systemd-analyze security` may give the collector's unit (issue 15).
const COLLECTOR_MAX_EXPOSURE: f64 = 3.0;
/// Most exposure for the agent's unit, as measured with its capability set (it runs as root
/// with CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, and
/// must see the host's processes, network and files as they are); the boot test below shows
/// the agent works inside these limits.
const AGENT_MAX_EXPOSURE: f64 = 3.0;

/// The overall exposure `systemd-analyze security --offline=true` gives `unit`.
fn exposure(unit: &Path) -> f64 {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("Overall exposure level for ")?;
            rest.split_once(": ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"))
}

#[test]
fn unit_hardening_is_measured_and_within_bounds() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("systemd-analyze not found (Debian package systemd)");
        return;
    }
    let units = workspace_root().join("deploy/systemd");
    let collector = exposure(&units.join("kestrel-collector.service"));
    let agent = exposure(&units.join("kestrel-agent.service"));
    println!("systemd-analyze security: collector {collector}, agent {agent}");
    assert!(
        collector <= COLLECTOR_MAX_EXPOSURE,
        "collector: {collector}"
    );
    assert!(agent <= AGENT_MAX_EXPOSURE, "agent: {agent}");
}

/// A booted systemd in a container, removed on drop.
struct Machine {
    conf: PathBuf,
    name: String,
}

impl Machine {
    fn boot(conf: &Path, mounts: &[(&Path, &str)]) -> Machine {
        let name = format!("kestrel-systemd-{}", std::process::id());
        let _ = podman::output(conf, &["rm", "-f", &name]);
        let rootfs = format!("{SYSTEMD_ROOT}:O");
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--systemd=always",
            "--privileged",
            "--network",
            "none",
            "--volume",
            "/sys/kernel/tracing:/sys/kernel/tracing",
        ]
        .map(String::from)
        .into();
        for (host, inside) in mounts {
            args.push("--volume".into());
            args.push(format!("{}:{inside}:ro", host.display()));
        }
        args.extend(["--rootfs".into(), rootfs, "/lib/systemd/systemd".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman::run(conf, &args);
        let machine = Machine {
            conf: conf.to_path_buf(),
            name,
        };
        // `is-system-running --wait` returns once boot is over (running or degraded); before
        // systemd has started at all it fails at once, so it is asked again.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = machine.exec("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&output.stdout).into_owned();
            if state.contains("running") || state.contains("degraded") {
                return machine;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not boot: {state}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn exec(&self, script: &str) -> Output {
        podman::output(&self.conf, &["exec", &self.name, "sh", "-c", script])
    }

    /// Runs `script` in the machine; fails the test unless it succeeds; returns its stdout.
    fn sh(&self, script: &str) -> String {
        let output = self.exec(script);
        assert!(
            output.status.success(),
            "`{script}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `systemctl start unit`; the panic shows the unit's journal.
    fn start(&self, unit: &str) {
        let output = self.exec(&format!("systemctl start {unit}"));
        assert!(
            output.status.success(),
            "systemctl start {unit} failed:\n{}\njournal:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.sh(&format!("journalctl -u {unit} --no-pager | tail -n 40"))
        );
    }

    fn show(&self, unit: &str, property: &str) -> String {
        self.sh(&format!("systemctl show -P {property} {unit}"))
    }

    /// Waits until `script` succeeds; the panic shows its last output and the unit's journal.
    fn wait_for(&self, script: &str, unit: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let output = self.exec(script);
            if output.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "`{script}` never succeeded:\n{}\njournal of {unit}:\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    self.sh(&format!("journalctl -u {unit} --no-pager | tail -n 40"))
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = podman::output(&self.conf, &["rm", "-f", "-t", "0", &self.name]);
    }
}

#[test]
fn packages_install_and_their_units_start_notify_watchdog_and_stop_under_systemd() {
    if !nix::unistd::geteuid().is_root() {
        skip_or_fail("not root: rootful Podman boots systemd and the agent loads eBPF programs");
        return;
    }
    for (tool, why) in [
        (
            "podman",
            "install the Debian package podman (cargo xtask setup does)",
        ),
        ("cargo-deb", "cargo xtask setup installs it"),
    ] {
        if Command::new(tool).arg("--version").output().is_err() {
            skip_or_fail(format!("{tool} not found: {why}"));
            return;
        }
    }
    if !Path::new(SYSTEMD_ROOT)
        .join("lib/systemd/systemd")
        .is_file()
    {
        skip_or_fail(format!(
            "{SYSTEMD_ROOT} missing: cargo xtask setup makes it"
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = podman::write_conf(dir.path());

    // The packages of this test build's binaries (debug or release).
    let profile = built_profile();
    let output = Command::new(binary("xtask"))
        .args(["deb", "--no-build", "--profile", &profile])
        .output()
        .expect("run xtask deb");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "cargo xtask deb failed:\n{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let debs: Vec<PathBuf> = printed
        .lines()
        .filter_map(|line| line.strip_prefix("deb: wrote "))
        .map(PathBuf::from)
        .collect();
    assert_eq!(debs.len(), 2, "{printed}");
    let packages = dir.path().join("debs");
    std::fs::create_dir(&packages).unwrap();
    for deb in &debs {
        std::fs::copy(deb, packages.join(deb.file_name().unwrap())).unwrap();
    }
    let pki = dir.path().join("pki");
    certs(&pki, "vm-1");

    let machine = Machine::boot(&conf, &[(&packages, "/debs"), (&pki, "/pki")]);
    machine.sh("dpkg -i /debs/*.deb");
    machine.sh(
        "install -m 0644 /pki/ca.pem /pki/collector.pem /etc/kestrel/ && \
         install -o kestrel -g kestrel -m 0600 /pki/collector-key.pem /etc/kestrel/ && \
         install -m 0644 /pki/vm-1.pem /etc/kestrel/agent.pem && \
         install -m 0600 /pki/vm-1-key.pem /etc/kestrel/agent-key.pem && \
         sed -i 's|^KESTREL_COLLECTOR_URL=.*|KESTREL_COLLECTOR_URL=https://localhost:50051|' \
             /etc/default/kestrel-agent && \
         systemctl daemon-reload",
    );
    let verified = machine.exec(
        "systemd-analyze verify /usr/lib/systemd/system/kestrel-collector.service \
         /usr/lib/systemd/system/kestrel-agent.service",
    );
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // Type=notify: `start` returns once READY=1 came, and fails if the binary exited first.
    machine.start("kestrel-collector");
    assert_eq!(machine.show("kestrel-collector", "ActiveState"), "active");
    let status = machine.show("kestrel-collector", "StatusText");
    assert!(status.starts_with("listening on"), "{status}");
    let pid = machine.show("kestrel-collector", "MainPID");
    assert_eq!(
        machine.sh(&format!("stat -c %U /proc/{pid}")),
        "kestrel",
        "the collector runs as the package's system user"
    );
    machine.start("kestrel-agent");
    assert_eq!(machine.show("kestrel-agent", "ActiveState"), "active");
    let status = machine.show("kestrel-agent", "StatusText");
    assert!(status.ends_with("hooks attached"), "{status}");

    // The agent's events reach the collector: a shadow read raises the default rule's alert.
    machine.sh("cat /etc/shadow > /dev/null");
    machine.wait_for(
        "kestrel-collector alerts list --data /var/lib/kestrel-collector | grep -q shadow",
        "kestrel-collector",
        Duration::from_secs(20),
    );

    // The watchdog: fed while the collector runs; a collector that stops answering (SIGSTOP)
    // is killed and restarted by systemd. A short WatchdogSec keeps the test quick.
    machine.sh(
        "mkdir -p /run/systemd/system/kestrel-collector.service.d && \
         printf '[Service]\\nWatchdogSec=2s\\n' \
             > /run/systemd/system/kestrel-collector.service.d/watchdog.conf && \
         systemctl daemon-reload && systemctl restart kestrel-collector",
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(machine.show("kestrel-collector", "ActiveState"), "active");
    assert_eq!(
        machine.show("kestrel-collector", "NRestarts"),
        "0",
        "pinged: no watchdog restart in 2.5 periods"
    );
    machine.sh("kill -STOP $(systemctl show -P MainPID kestrel-collector)");
    machine.wait_for(
        "test \"$(systemctl show -P NRestarts kestrel-collector)\" -ge 1 && \
         systemctl is-active kestrel-collector",
        "kestrel-collector",
        Duration::from_secs(20),
    );
    let journal = machine.sh("journalctl -u kestrel-collector --no-pager");
    assert!(journal.contains("Watchdog timeout"), "{journal}");

    // Both stop cleanly (SIGTERM, drain, exit 0).
    machine.sh("systemctl stop kestrel-agent kestrel-collector");
    for unit in ["kestrel-agent", "kestrel-collector"] {
        assert_eq!(machine.show(unit, "ActiveState"), "inactive", "{unit}");
        assert_eq!(machine.show(unit, "Result"), "success", "{unit}");
    }
}
