//! The monitoring assets in `deploy/monitoring`: the Prometheus alerting rules pass `promtool
//! check rules` and their unit tests (`promtool test rules`), the Grafana dashboard is a
//! dashboard whose panels all query, and every metric either of them names is exported on
//! `/metrics` by the real agent and collector; the figures an operator runs on move when an
//! alert is raised and delivered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kestrel_testkit::{
    poll,
    receiver::Receiver,
    require_root_for_ebpf,
    stack::{certs, free_port, http_get, metric, Agent, Collector},
    workspace_root,
};
use serde_json::Value;

const AGENT: &str = "monitoring-agent";

fn monitoring() -> PathBuf {
    workspace_root().join("deploy/monitoring")
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e} (`cargo xtask setup` installs it from Debian's prometheus)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alerting_rules_pass_promtool_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "kestrel-alerts.yaml"]);
    assert!(checked.contains("SUCCESS: 15 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "kestrel-alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(monitoring().join("kestrel-dashboard.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard's panels.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| {
            target["expr"]
                .as_str()
                .expect("a target has expr")
                .to_owned()
        })
        .collect()
}

/// Every PromQL expression of the alerting rules.
fn alert_queries() -> Vec<String> {
    let text = std::fs::read_to_string(monitoring().join("kestrel-alerts.yaml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap().clone())
        .map(|rule| rule["expr"].as_str().expect("a rule has expr").to_owned())
        .collect()
}

/// The `kestrel_…` metric names an expression refers to.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("kestrel_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_whose_panels_all_query() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "kestrel-overview");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 30);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "instance"]);
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{title}: inside the 24-column grid"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                !metric_names(expr).is_empty(),
                "{title}: {expr} names no metric"
            );
        }
    }
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            "sum by (le) (rate(kestrel_agent_x_bucket{a=\"b\"}[5m])) / kestrel_collector_y"
        ),
        BTreeSet::from([
            "kestrel_agent_x_bucket".to_owned(),
            "kestrel_collector_y".to_owned()
        ])
    );
    assert!(metric_names("up{job=\"kestrel_agent\"} == 0").contains("kestrel_agent"));
}

/// The sample names a `/metrics` response declares: each `# TYPE` family, with `_bucket`,
/// `_sum` and `_count` for a histogram (a labelled family is declared before it has samples).
fn exported(response: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in response.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = declared.split_once(' ').unwrap();
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_owned());
        }
    }
    names
}

/// The value of the sample `name{labels}` (labels exactly as exported).
fn sample(response: &str, series: &str) -> Option<f64> {
    response.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == series).then(|| value.parse().ok()).flatten()
    })
}

fn wait_for(addr: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let found = poll(Duration::from_secs(30), || {
        let response = http_get(addr, "/metrics");
        check(&response).then_some(response)
    });
    found.unwrap_or_else(|| panic!("{what}; /metrics:\n{}", http_get(addr, "/metrics")))
}

#[test]
fn every_metric_the_dashboard_and_alerts_name_is_exported_and_they_move() {
    if !require_root_for_ebpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, AGENT);
    let receiver = Receiver::spawn();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[delivery]\ninitial_backoff = \"100ms\"\n\n[[sinks]]\nkind = \"webhook\"\n\
             name = \"sirt\"\nurl = \"{}/kestrel\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
            receiver.url
        ),
    )
    .unwrap();
    let collector_metrics = format!("127.0.0.1:{}", free_port());
    let agent_metrics = format!("127.0.0.1:{}", free_port());
    let config_arg = config.display().to_string();
    let mut collector = Collector::new(
        dir.path(),
        &pki,
        &[
            "--config",
            &config_arg,
            "--metrics-listen",
            &collector_metrics,
        ],
    );
    collector.start();
    let mut agent = Agent::new(
        dir.path(),
        &pki,
        AGENT,
        collector.port,
        &["--metrics-listen", &agent_metrics],
    );
    agent.start();
    agent.expect_connected();

    let status = Command::new("/bin/sh")
        .args(["-c", "cat /etc/shadow > /dev/null; true"])
        .status()
        .unwrap();
    assert!(status.success());
    receiver.expect(Duration::from_secs(20), "the shadow-read alert", |body| {
        body["data"]["rule"]["id"] == "kestrel-cred-shadow-read-cli"
    });

    let collector_side = wait_for(&collector_metrics, "the delivery counted", |text| {
        sample(
            text,
            "kestrel_collector_alert_deliveries_total{sink=\"sirt\",outcome=\"delivered\"}",
        )
        .is_some_and(|n| n >= 1.0)
    });
    let agent_side = wait_for(&agent_metrics, "acknowledged batches timed", |text| {
        metric(text, "kestrel_agent_batch_round_trip_seconds_count").is_some_and(|n| n >= 1.0)
    });

    let mut exported_names = exported(&collector_side);
    exported_names.extend(exported(&agent_side));
    let mut referenced = BTreeSet::new();
    for expr in dashboard_queries(&dashboard())
        .iter()
        .chain(&alert_queries())
    {
        referenced.extend(metric_names(expr));
    }
    assert!(referenced.len() >= 25, "{referenced:?}");
    let missing: Vec<&String> = referenced.difference(&exported_names).collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or alerts but not exported: {missing:?}\nexported: {exported_names:?}"
    );

    // The figures behind them move with what happened.
    let positive = |text: &str, series: &str| {
        assert!(
            sample(text, series).is_some_and(|n| n > 0.0),
            "{series} > 0:\n{text}"
        );
    };
    positive(
        &collector_side,
        "kestrel_collector_events_received_total{kind=\"exec\"}",
    );
    positive(
        &collector_side,
        "kestrel_collector_rule_matches_total{rule=\"kestrel-cred-shadow-read-cli\"}",
    );
    positive(
        &collector_side,
        "kestrel_collector_alerts_total{outcome=\"created\"}",
    );
    positive(
        &collector_side,
        "kestrel_collector_alert_delivery_latency_seconds_count{sink=\"sirt\"}",
    );
    positive(
        &collector_side,
        "kestrel_collector_batch_commit_seconds_count",
    );
    positive(
        &collector_side,
        "kestrel_collector_rule_evaluation_seconds_count",
    );
    assert_eq!(
        metric(&collector_side, "kestrel_collector_agents_connected"),
        Some(1.0)
    );
    positive(&agent_side, "kestrel_agent_events_total{kind=\"exec\"}");
    positive(&agent_side, "kestrel_agent_hooks_attached");
    positive(&agent_side, "kestrel_agent_ring_records_read_total");
    assert_eq!(
        metric(&agent_side, "kestrel_agent_collector_connected"),
        Some(1.0)
    );
    for side in [&agent_side, &collector_side] {
        assert!(
            side.contains(&format!(
                "_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{side}"
        );
    }
}

#[test]
fn tls_refusals_are_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    certs(&pki, "member");
    // An agent certificate from another development CA. Both CAs carry the same subject, so
    // the client CA is taken for its issuer and its signature does not verify.
    let foreign = dir.path().join("foreign");
    certs(&foreign, "intruder");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut collector = Collector::new(dir.path(), &pki, &["--metrics-listen", &metrics_addr]);
    collector.start();
    let before = sample(
        &http_get(&metrics_addr, "/metrics"),
        "kestrel_collector_tls_refusals_total{reason=\"bad_signature\"}",
    );
    assert_eq!(before, Some(0.0), "declared at 0 before any refusal");

    let read = |path: &Path| std::fs::read(path).unwrap();
    let url = format!("https://localhost:{}", collector.port);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..2 {
        let attempt = runtime.block_on(async {
            let client = kestrel_testkit::grpc::connect(
                &url,
                read(&pki.join("ca.pem")),
                read(&foreign.join("intruder.pem")),
                read(&foreign.join("intruder-key.pem")),
            )
            .await;
            match client {
                Err(status) => Err(status),
                Ok(mut client) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                    tx.send(kestrel_testkit::grpc::hello(1)).await.unwrap();
                    client
                        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                        .await
                        .map(|_| ())
                }
            }
        });
        assert!(attempt.is_err(), "a foreign certificate is refused");
    }
    // Each attempt is a handshake or more (the client retries), each refused and counted.
    wait_for(&metrics_addr, "the refusals counted by reason", |text| {
        sample(
            text,
            "kestrel_collector_tls_refusals_total{reason=\"bad_signature\"}",
        )
        .is_some_and(|n| n >= 2.0)
    });
    let text = http_get(&metrics_addr, "/metrics");
    assert_eq!(
        sample(
            &text,
            "kestrel_collector_tls_refusals_total{reason=\"certificate_expired\"}"
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "kestrel_collector_agents_connected"),
        Some(0.0)
    );
}
