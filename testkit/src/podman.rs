//! Rootful Podman as the tests run it: a `containers.conf` of the test's own, passed as
//! `CONTAINERS_CONF`, with `default_ulimits = []` (without CAP_SYS_RESOURCE the OCI runtime
//! cannot raise RLIMIT_NOFILE to Podman's default and `podman run` fails with "error setting
//! rlimit type 7") and runc as the runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Writes the tests' `containers.conf` into `dir` and returns its path.
pub fn write_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n",
    )
    .expect("write containers.conf");
    conf
}

/// Runs `podman args…` with the configuration `conf`.
pub fn output(conf: &Path, args: &[&str]) -> Output {
    Command::new("podman")
        .env("CONTAINERS_CONF", conf)
        .args(args)
        .output()
        .expect("run podman")
}

/// Runs `podman args…` with the configuration `conf` and returns its trimmed standard output;
/// fails the test with Podman's message unless it succeeds.
pub fn run(conf: &Path, args: &[&str]) -> String {
    let output = output(conf, args);
    assert!(
        output.status.success(),
        "podman {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
