//! The outbox and its retry layer against real HTTP receivers: failure injection, restarts,
//! dead letters, replay, meta-alerts; and admission (dedup, rate limit, suppression, ack).

mod alerting_env;
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use alerting_env::{Env, FAST_DELIVERY, HOST};
use kestrel_collector::alert::{Level, SystemAlert};
use kestrel_collector::alerting::Admission;
use kestrel_collector::cli::alerts::{execute, AlertsCommand, DataDir, SuppressCommand};
use kestrel_testkit::receiver::{Receiver, Recorded, Reply};

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn webhook(name: &str, url: &str) -> String {
    format!("[[sinks]]\nkind = \"webhook\"\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n")
}

fn ids(requests: &[Recorded]) -> HashSet<String> {
    requests.iter().map(|r| r.header("webhook-id")).collect()
}

fn data(env: &Env) -> DataDir {
    DataDir {
        data: env.dir.path().to_path_buf(),
    }
}

/// Waits until `sql` yields `want`.
async fn eventually(env: &Env, sql: &str, want: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = env.count(sql);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered_under_one_webhook_id() {
    let receiver = Receiver::start(200).await;
    receiver.script([Reply::Status(500), Reply::Status(503)]);
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n{}",
        webhook("hook", &receiver.url)
    ));
    env.ingest(vec![Env::shadow()]).await;

    receiver.wait_accepted(1, WAIT).await;
    eventually(&env, "SELECT COUNT(*) FROM alert_outbox", 0).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "two failures, then the delivery");
    assert_eq!(
        ids(&requests).len(),
        1,
        "every attempt carries the same webhook-id"
    );
    assert_eq!(env.count("SELECT attempts FROM alert_deliveries"), 3);
    env.stop().await;
}

#[tokio::test]
async fn timed_out_attempt_is_retried_and_deduplicated_by_webhook_id() {
    let receiver = Receiver::start(200).await;
    receiver.script([Reply::Hang(Duration::from_millis(1500))]);
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\ntimeout = \"300ms\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;

    // The receiver processed the first request but answered too late; the retry is the same
    // message under the same webhook-id, which the receiver uses to drop the duplicate.
    let accepted = receiver.wait_accepted(2, WAIT).await;
    assert_eq!(accepted.len(), 2, "the receiver saw the request twice");
    assert_eq!(
        ids(&accepted).len(),
        1,
        "but one idempotency key: one alert"
    );
    eventually(&env, "SELECT COUNT(*) FROM alert_deliveries", 1).await;
    env.stop().await;
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let receiver = Receiver::start(200).await;
    receiver.script([Reply::RetryAfter(429, 1)]);
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"slack\"\nurl = \"{}\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;
    receiver.wait_accepted(1, WAIT).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?} although Slack asked for 1 s"
    );
    env.stop().await;
}

#[tokio::test]
async fn collector_restarted_with_undelivered_alerts_delivers_them() {
    // The receiver is down: the alert stays in the outbox.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = format!("{FAST_DELIVERY}\n{}", webhook("hook", &url));
    let env = Env::start(&config);
    env.ingest(vec![Env::shadow()]).await;
    eventually(
        &env,
        "SELECT COUNT(*) FROM alert_outbox WHERE attempts >= 2",
        1,
    )
    .await;
    env.stop().await;
    let dir = env.dir.clone();
    drop(env);

    let receiver = Receiver::start_on(&format!("127.0.0.1:{port}"), 200).await;
    let restarted = Env::start_in(dir, &config);
    let accepted = receiver.wait_accepted(1, WAIT).await;
    assert_eq!(
        accepted[0].json()["data"]["rule"]["title"],
        "Shadow file read with cat"
    );
    eventually(&restarted, "SELECT COUNT(*) FROM alert_outbox", 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.requests().len(), 1, "delivered once");
    restarted.stop().await;
}

#[tokio::test]
async fn refused_delivery_is_dead_lettered_and_replay_sends_it_again() {
    let receiver = Receiver::start(200).await;
    receiver.script([Reply::Status(400)]);
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n{}",
        webhook("hook", &receiver.url)
    ));
    env.ingest(vec![Env::shadow()]).await;
    eventually(&env, "SELECT COUNT(*) FROM alert_dead_letters", 1).await;
    assert_eq!(env.count("SELECT COUNT(*) FROM alert_outbox"), 0);
    let listed = execute(&AlertsCommand::List {
        data: data(&env),
        limit: 10,
        open: false,
        json: false,
    })
    .unwrap();
    assert!(
        listed.contains("sink hook: 0 pending, 1 dead-lettered"),
        "{listed}"
    );

    let out = execute(&AlertsCommand::Replay {
        data: data(&env),
        sink: None,
        alert: None,
    })
    .unwrap();
    assert!(out.starts_with("1 dead-lettered"), "{out}");
    receiver.wait_accepted(1, WAIT).await;
    eventually(&env, "SELECT COUNT(*) FROM alert_deliveries", 1).await;
    assert_eq!(env.count("SELECT COUNT(*) FROM alert_dead_letters"), 0);
    env.stop().await;
}

#[tokio::test]
async fn alert_undelivered_past_max_age_is_dead_lettered() {
    let receiver = Receiver::start(503).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\nmax_age = \"300ms\"\n{}",
        webhook("hook", &receiver.url)
    ));
    env.ingest(vec![Env::shadow()]).await;
    eventually(&env, "SELECT COUNT(*) FROM alert_dead_letters", 1).await;
    assert!(env.count("SELECT attempts FROM alert_dead_letters") >= 2);
    let error: String = rusqlite::Connection::open(env.dir.path().join("kestrel.db"))
        .unwrap()
        .query_row("SELECT last_error FROM alert_dead_letters", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(error.contains("503"), "{error}");
    env.stop().await;
}

#[tokio::test]
async fn sink_that_keeps_failing_raises_a_meta_alert_to_the_other_sinks() {
    let broken = Receiver::start(500).await;
    let healthy = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\nmeta_alert_after = 3\n{}{}",
        webhook("broken", &broken.url),
        webhook("healthy", &healthy.url)
    ));
    env.ingest(vec![Env::shadow()]).await;

    let accepted = healthy.wait_accepted(2, WAIT).await;
    let meta = accepted
        .iter()
        .map(|r| r.json())
        .find(|b| b["type"] == "alert.system")
        .expect("a meta-alert reached the healthy sink");
    assert_eq!(meta["data"]["rule"]["id"], "kestrel.system.sink-failing");
    assert_eq!(meta["data"]["group"], "broken");
    assert!(meta["data"]["rule"]["description"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    assert_eq!(
        env.count(
            "SELECT COUNT(*) FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id \
             WHERE o.sink = 'broken' AND a.rule_id = 'kestrel.system.sink-failing'"
        ),
        0,
        "the meta-alert is not queued for the sink it is about"
    );
    assert!(broken.requests().len() >= 3);
    env.stop().await;
}

#[tokio::test]
async fn repeats_within_the_dedup_window_fold_into_one_alert_with_a_count() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n{}",
        webhook("hook", &receiver.url)
    ));
    let mut second = Env::shadow();
    second.process.as_mut().unwrap().pid = 5000;
    second.time_unix_ns += 2_000_000_000;
    let outcome = env.ingest(vec![Env::shadow(), second, Env::shadow()]).await;
    assert_eq!(outcome.alerts, 1);
    assert_eq!(env.count("SELECT COUNT(*) FROM alerts"), 1);
    assert_eq!(env.count("SELECT count FROM alerts"), 3);
    receiver.wait_accepted(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "one notification for the repeats"
    );

    let shown = execute(&AlertsCommand::Show {
        id: 1,
        data: data(&env),
        json: true,
    })
    .unwrap();
    let alert: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(alert["count"], 3);
    assert_eq!(
        alert["finding_info"]["last_seen_time"],
        1_700_000_002_123_u64
    );

    // Another command line is another finding.
    env.ingest(vec![Env::shadow_variant(1)]).await;
    assert_eq!(env.count("SELECT COUNT(*) FROM alerts"), 2);
    env.stop().await;
}

#[tokio::test]
async fn acknowledged_alert_takes_no_more_repeats() {
    let env = Env::start(FAST_DELIVERY);
    env.ingest(vec![Env::shadow()]).await;
    let out = execute(&AlertsCommand::Ack {
        id: 1,
        data: data(&env),
        by: Some("analyst".into()),
    })
    .unwrap();
    assert_eq!(out, "alert 1 acknowledged by analyst\n");
    env.ingest(vec![Env::shadow()]).await;
    assert_eq!(env.count("SELECT COUNT(*) FROM alerts"), 2);
    let shown = execute(&AlertsCommand::Show {
        id: 1,
        data: data(&env),
        json: false,
    })
    .unwrap();
    assert!(shown.contains("acknowledged"), "{shown}");
    assert!(shown.contains("by analyst"), "{shown}");
    env.stop().await;
}

#[tokio::test]
async fn rule_rate_limit_counts_what_it_holds_back() {
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[alerts]\ndedup_window = \"0s\"\nrate_limit_per_rule = 2\nrate_limit_window = \"1h\"\n"
    ));
    let events = (0..5).map(Env::shadow_variant).collect();
    let outcome = env.ingest(events).await;
    assert_eq!(outcome.alerts, 2);
    // The three over the limit are stored with their delivery held, plus one rate-limited alert.
    assert_eq!(env.count("SELECT COUNT(*) FROM alerts"), 6);
    assert_eq!(
        env.count("SELECT SUM(suppressed_total) FROM alert_rate_limits"),
        3
    );
    let listed = execute(&AlertsCommand::List {
        data: data(&env),
        limit: 10,
        open: false,
        json: false,
    })
    .unwrap();
    assert!(
        listed.contains("3 alerts held back by the rate limit"),
        "{listed}"
    );
    env.stop().await;
}

#[tokio::test]
async fn suppression_holds_back_matching_alerts_until_removed() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n{}",
        webhook("hook", &receiver.url)
    ));
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("shadow.yml"), common::SHADOW_RULE).unwrap();
    let add = |rule: &str, rules_dir: Option<&std::path::Path>, matchers: &[&str]| {
        execute(&AlertsCommand::Suppress {
            command: SuppressCommand::Add {
                data: data(&env),
                rule: rule.into(),
                rules: rules_dir.map(|d| d.to_path_buf()),
                matchers: matchers.iter().map(|m| m.to_string()).collect(),
                duration: Some("1h".into()),
                reason: "INC-42 password audit".into(),
            },
        })
    };
    const SHADOW_ID: &str = "0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10";
    // A misspelt field, a rule no rule file has, and (without --rules) a rule that has not
    // fired here: each would make a suppression that holds back nothing, and is refused.
    let refused = add(SHADOW_ID, Some(rules.path()), &["proces.user=alice"])
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no field \"proces.user\""), "{refused}");
    let refused = add("0e6a7c2a-typo", Some(rules.path()), &["process.user=alice"])
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no rule of"), "{refused}");
    let refused = add(SHADOW_ID, None, &["process.user=alice"])
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("no alert of that rule is stored"),
        "{refused}"
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM alert_suppressions"), 0);

    let added = add(
        SHADOW_ID,
        Some(rules.path()),
        &["process.user=alice", "ancestors.exe=*/sshd"],
    )
    .unwrap();
    assert!(added.starts_with("suppression 1 added, until "), "{added}");

    env.ingest(vec![Env::shadow()]).await;
    assert_eq!(env.count("SELECT COUNT(*) FROM alerts"), 0);
    assert_eq!(env.count("SELECT hits FROM alert_suppressions"), 1);
    let listed = execute(&AlertsCommand::Suppress {
        command: SuppressCommand::List { data: data(&env) },
    })
    .unwrap();
    assert!(
        listed.contains("process.user=alice ancestors.exe=*/sshd"),
        "{listed}"
    );
    assert!(listed.contains("hits 1"), "{listed}");

    // Another user is not suppressed.
    let mut bob = Env::shadow();
    bob.process.as_mut().unwrap().user = "bob".into();
    env.ingest(vec![bob]).await;
    assert_eq!(env.count("SELECT COUNT(*) FROM alerts"), 1);
    // Once the rule has fired here, its id is known without --rules.
    let added = add(SHADOW_ID, None, &["process.user=carol"]).unwrap();
    assert!(added.starts_with("suppression 2 added"), "{added}");

    execute(&AlertsCommand::Suppress {
        command: SuppressCommand::Remove {
            id: 1,
            data: data(&env),
        },
    })
    .unwrap();
    env.ingest(vec![Env::shadow()]).await;
    assert_eq!(env.count("SELECT COUNT(*) FROM alerts"), 2);
    receiver.wait_accepted(2, WAIT).await;
    env.stop().await;
}

#[tokio::test]
async fn routes_filter_by_min_level_and_tags() {
    let everything = Receiver::start(200).await;
    let critical_only = Receiver::start(200).await;
    let persistence_only = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n{}{}min_level = \"critical\"\n{}tags = [\"attack.persistence\"]\n",
        webhook("all", &everything.url),
        webhook("critical", &critical_only.url),
        webhook("persistence", &persistence_only.url),
    ));
    env.ingest(vec![Env::shadow()]).await;
    everything.wait_accepted(1, WAIT).await;
    assert_eq!(
        env.count("SELECT COUNT(*) FROM alert_outbox WHERE sink != 'all'"),
        0
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM alert_deliveries WHERE sink != 'all'"),
        0
    );
    assert!(critical_only.requests().is_empty());
    assert!(persistence_only.requests().is_empty());
    env.stop().await;
}

#[tokio::test]
async fn system_alert_raised_by_another_component_reaches_the_sinks() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n{}",
        webhook("hook", &receiver.url)
    ));
    let silent = SystemAlert {
        rule_id: "agent-silent".into(),
        title: "Agent stopped sending heartbeats".into(),
        description: "No heartbeat from web-1 for 90s.".into(),
        level: Level::High,
        host: HOST.into(),
        group: None,
        details: serde_json::json!({"silent_for_s": 90}),
        time_unix_ns: kestrel_collector::clock::now_unix_ns(),
    };
    let first = env.alerts.raise(silent.clone()).await.unwrap();
    assert!(matches!(first, Admission::Created(_)), "{first:?}");
    let again = env.alerts.raise(silent).await.unwrap();
    assert!(
        matches!(again, Admission::Deduplicated { count: 2, .. }),
        "{again:?}"
    );

    let body = receiver.wait_accepted(1, WAIT).await[0].json();
    assert_eq!(body["type"], "alert.system");
    assert_eq!(body["data"]["rule"]["id"], "kestrel.system.agent-silent");
    assert_eq!(body["data"]["host"], HOST);
    env.stop().await;
}

#[tokio::test]
async fn alerts_show_renders_the_process_tree_and_each_delivery() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n{}",
        webhook("hook", &receiver.url)
    ));
    env.ingest(vec![Env::shadow()]).await;
    receiver.wait_accepted(1, WAIT).await;
    eventually(&env, "SELECT COUNT(*) FROM alert_deliveries", 1).await;
    let shown = execute(&AlertsCommand::Show {
        id: 1,
        data: data(&env),
        json: false,
    })
    .unwrap();
    assert!(
        shown.starts_with("Alert 1: Shadow file read with cat [high]"),
        "{shown}"
    );
    assert!(shown.contains("T1003.008 Credential Access"), "{shown}");
    assert!(shown.contains("\n  [4100] root  sshd: alice"), "{shown}");
    assert!(shown.contains("\n  └─ [4200] alice  -bash"), "{shown}");
    assert!(
        shown.contains("\n     └─ [4242] alice  cat /etc/shadow"),
        "{shown}"
    );
    assert!(shown.contains("hook             delivered"), "{shown}");
    let missing = execute(&AlertsCommand::Show {
        id: 99,
        data: data(&env),
        json: false,
    })
    .unwrap_err();
    assert!(
        missing.to_string().contains("no alert with id 99"),
        "{missing}"
    );
    env.stop().await;
}
