//! The container images: `cargo xtask images` builds `kestrel-agent` and `kestrel-collector`
//! with Podman from `deploy/images/*.Containerfile` (`FROM scratch` with the test build's
//! binaries and the libraries they link), and each runs `--version`; the collector's runs as
//! its non-root user and carries the default rules; the Helm chart's default images are these.
//!
//! Like the container tests, Podman gets its own `containers.conf` (`default_ulimits = []`: this
//! machine lacks CAP_SYS_RESOURCE; `runtime = "runc"`: Debian 12's crun refuses hybrid cgroup
//! hosts). Needs root (rootful Podman): in CI a missing tool or capability fails the test.
//! The agent is never started: `--version` exits before anything is loaded.

use std::process::Command;

use kestrel_testkit::{binary, built_profile, podman, skip_or_fail, workspace_root};

/// The workspace version: the images' tag and the chart's appVersion.
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn images_build_from_scratch_and_report_their_version() {
    if !nix::unistd::geteuid().is_root() {
        skip_or_fail("not root: the images are built and run with rootful Podman");
        return;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        skip_or_fail(
            "podman not found: install the Debian package podman (cargo xtask setup does)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = podman::write_conf(dir.path());

    // The binaries of this test build (debug or release), as `cargo xtask images` takes them.
    let profile = built_profile();
    let output = Command::new(binary("xtask"))
        .env("CONTAINERS_CONF", &conf)
        .args(["images", "--no-build", "--profile", &profile])
        .output()
        .expect("run xtask images");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo xtask images failed:\n{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    for name in ["kestrel-agent", "kestrel-collector"] {
        let image = format!("localhost/{name}:{VERSION}");
        assert!(printed.contains(&format!("built {image}")), "{printed}");
        let version = podman::run(
            &conf,
            &["run", "--rm", "--network", "none", &image, "--version"],
        );
        assert_eq!(version, format!("{name} {VERSION}"), "{image} --version");
        let layers = podman::run(
            &conf,
            &[
                "image",
                "inspect",
                "--format",
                "{{len .RootFS.Layers}}",
                &image,
            ],
        );
        assert_eq!(layers, "1", "{image}: one layer, nothing beneath it");
    }

    let collector = format!("localhost/kestrel-collector:{VERSION}");
    assert_eq!(
        podman::run(
            &conf,
            &[
                "image",
                "inspect",
                "--format",
                "{{.Config.User}}",
                &collector
            ]
        ),
        "65532:65532",
        "the collector image runs as its non-root user"
    );
    let id = podman::run(
        &conf,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/busybox",
            &collector,
            "id",
            "-u",
        ],
    );
    assert_eq!(id, "65532");
    // The default rule set is in the image and the binary there accepts it.
    let check = podman::output(
        &conf,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &collector,
            "rules",
            "check",
            "/usr/share/kestrel/rules",
        ],
    );
    assert!(
        check.status.success(),
        "rules check in the image failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The chart's default images are the ones built here.
    let chart =
        std::fs::read_to_string(workspace_root().join("deploy/helm/kestrel/Chart.yaml")).unwrap();
    assert!(
        chart.contains(&format!("appVersion: \"{VERSION}\"")),
        "Chart.yaml appVersion is the workspace version {VERSION}:\n{chart}"
    );
    let values =
        std::fs::read_to_string(workspace_root().join("deploy/helm/kestrel/values.yaml")).unwrap();
    for name in ["kestrel-agent", "kestrel-collector"] {
        assert!(
            values.contains(&format!("repository: {name}\n")),
            "values.yaml names the image {name}"
        );
    }
}
