//! `--check-config` on both binaries, run for real: a configuration that would start passes
//! with status 0; a broken one fails with status 1 and names every problem at once, without
//! loading programs, binding a port or opening a store.

use std::path::Path;
use std::process::{Command, Output};

use kestrel_testkit::{binary, stack::certs};

fn run(binary_name: &str, args: &[&str]) -> Output {
    Command::new(binary(binary_name))
        .args(args)
        .output()
        .expect("run the binary")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

#[test]
fn collector_check_config_passes_a_good_configuration_and_names_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "node-1");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let workspace_rules = kestrel_testkit::workspace_root().join("collector/rules");
    let data = dir.path().join("data");
    let base = |rules: &Path, key: &Path, config: Option<&Path>| {
        let mut args = vec![
            "serve".to_owned(),
            "--check-config".into(),
            "--listen".into(),
            "127.0.0.1:1".into(),
            "--cert".into(),
            path(&pki.join("collector.pem")).into(),
            "--key".into(),
            path(key).into(),
            "--client-ca".into(),
            path(&pki.join("ca.pem")).into(),
            "--rules".into(),
            path(rules).into(),
            "--data".into(),
            path(&data).into(),
        ];
        if let Some(config) = config {
            args.extend(["--config".into(), path(config).into()]);
        }
        args
    };
    let as_strs = |args: &[String]| run_owned("kestrel-collector", args);

    let good = as_strs(&base(
        &workspace_rules,
        &pki.join("collector-key.pem"),
        None,
    ));
    let (out, err) = text(&good);
    assert!(good.status.success(), "{out}{err}");
    assert!(
        out.contains("configuration OK") && out.contains("rules"),
        "{out}"
    );
    assert!(!data.exists(), "--check-config opened no store");

    // Three problems at once: a key others can read, a broken rule, an unknown config key.
    let loose_key = dir.path().join("loose-key.pem");
    std::fs::copy(pki.join("collector-key.pem"), &loose_key).unwrap();
    std::fs::set_permissions(
        &loose_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(rules.join("broken.yml"), "title: broken\ndetection: [\n").unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "[alerts]\nno_such_key = 1\n").unwrap();
    let bad = as_strs(&base(&rules, &loose_key, Some(&config)));
    let (out, err) = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("loose-key.pem"), "the key is named: {err}");
    assert!(err.contains("broken.yml"), "the rule file is named: {err}");
    assert!(
        err.contains("no_such_key"),
        "the config key is named: {err}"
    );
    assert!(err.contains("problem(s) in the configuration"), "{err}");
}

#[test]
fn agent_check_config_passes_a_good_configuration_and_names_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "node-1");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[spool]\nmax_bytes = \"64MiB\"\n").unwrap();
    let tls = [
        "--collector".to_owned(),
        "https://localhost:50051".into(),
        "--ca".into(),
        path(&pki.join("ca.pem")).into(),
        "--cert".into(),
        path(&pki.join("node-1.pem")).into(),
    ];
    let mut good: Vec<String> = vec!["--check-config".into()];
    good.extend(tls.iter().cloned());
    good.extend([
        "--key".into(),
        path(&pki.join("node-1-key.pem")).into(),
        "--config".into(),
        path(&config).into(),
        "--ring-buffer-bytes".into(),
        "4MiB".into(),
    ]);
    let output = run_owned("kestrel-agent", &good);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{out}{err}");
    assert!(out.contains("configuration OK"), "{out}");

    // Four problems at once: a key that is not one, a spool of 0 bytes, container lookups
    // that could never run, a ring the kernel would refuse.
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    std::fs::set_permissions(
        &not_a_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        &config,
        "[spool]\nmax_bytes = 0\n[containers]\nmax_concurrent_lookups = 0\n",
    )
    .unwrap();
    let mut bad: Vec<String> = vec!["--check-config".into()];
    bad.extend(tls.iter().cloned());
    bad.extend([
        "--key".into(),
        path(&not_a_key).into(),
        "--config".into(),
        path(&config).into(),
        "--ring-buffer-bytes".into(),
        "3000000".into(),
    ]);
    let output = run_owned("kestrel-agent", &bad);
    let (out, err) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("not-a-key.pem"), "the key is named: {err}");
    assert!(
        err.contains("spool.max_bytes"),
        "the spool size is named: {err}"
    );
    assert!(
        err.contains("containers.max_concurrent_lookups"),
        "the container setting is named: {err}"
    );
    assert!(
        err.contains("--ring-buffer-bytes: 3000000"),
        "the ring is named: {err}"
    );
}

fn run_owned(binary_name: &str, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(binary_name, &args)
}

#[test]
fn enrolment_settings_are_checked_by_both_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "node-1");
    let rules = kestrel_testkit::workspace_root().join("collector/rules");
    let collector = |config: &Path| {
        run(
            "kestrel-collector",
            &[
                "serve",
                "--check-config",
                "--listen",
                "127.0.0.1:1",
                "--cert",
                path(&pki.join("collector.pem")),
                "--key",
                path(&pki.join("collector-key.pem")),
                "--client-ca",
                path(&pki.join("ca.pem")),
                "--rules",
                path(&rules),
                "--data",
                path(&dir.path().join("data")),
                "--config",
                path(config),
            ],
        )
    };
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[enrolment]\nlisten = \"127.0.0.1:2\"\nca_cert = {:?}\nca_key = {:?}\n",
            pki.join("ca.pem"),
            pki.join("ca-key.pem")
        ),
    )
    .unwrap();
    let output = collector(&good);
    assert!(output.status.success(), "{:?}", text(&output));

    // An issuing CA the ingest listener does not trust, and a lifetime out of bounds.
    let other = dir.path().join("other");
    certs(&other, "x");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[enrolment]\nlisten = \"127.0.0.1:2\"\nca_cert = {:?}\nca_key = {:?}\n\
             certificate_lifetime = \"1y\"\n",
            other.join("ca.pem"),
            other.join("ca-key.pem")
        ),
    )
    .unwrap();
    let (_, stderr) = text(&collector(&bad));
    assert!(
        stderr.contains("enrolment.certificate_lifetime"),
        "{stderr}"
    );
    let bad_ca = dir.path().join("bad-ca.toml");
    std::fs::write(
        &bad_ca,
        format!(
            "[enrolment]\nlisten = \"127.0.0.1:2\"\nca_cert = {:?}\nca_key = {:?}\n",
            other.join("ca.pem"),
            other.join("ca-key.pem")
        ),
    )
    .unwrap();
    let output = collector(&bad_ca);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("is not among the client CAs"), "{stderr}");

    // The agent: with enrolment the certificate and key need not exist yet, and a later
    // --cert/--key overrides the unit's.
    let token = dir.path().join("token");
    std::fs::write(&token, "kestrel-join-x").unwrap();
    let ca = pki.join("ca.pem");
    let agent = |extra: &[&str]| {
        let mut args = vec![
            "--check-config",
            "--collector",
            "https://localhost:1",
            "--ca",
            path(&ca),
            "--cert",
            "/nonexistent/agent.pem",
            "--key",
            "/nonexistent/agent-key.pem",
        ];
        args.extend_from_slice(extra);
        run("kestrel-agent", &args)
    };
    let enrolling = agent(&[
        "--cert",
        path(&dir.path().join("agent.pem")),
        "--key",
        path(&dir.path().join("agent-key.pem")),
        "--enrol-url",
        "https://localhost:2",
        "--enrol-token",
        path(&token),
    ]);
    assert!(enrolling.status.success(), "{:?}", text(&enrolling));
    let (_, stderr) = text(&agent(&[]));
    assert!(stderr.contains("/nonexistent/agent.pem"), "{stderr}");
    let (_, stderr) = text(&agent(&[
        "--enrol-url",
        "http://localhost:2",
        "--enrol-token",
        path(&token),
    ]));
    assert!(stderr.contains("scheme 'http' refused"), "{stderr}");
}
