//! The rate limit counts per (rule, host) and never drops an alert: a flood on one host holds
//! back only that host's deliveries of that rule, says so once per window, and a real finding
//! on another host is delivered.

mod alerting_env;
mod common;

use std::time::{Duration, Instant};

use alerting_env::{Env, FAST_DELIVERY, HOST};
use kestrel_collector::cli::alerts::{execute, AlertsCommand, DataDir};
use kestrel_collector::ingress::identity::Identity;
use kestrel_proto::EventBatch;
use kestrel_testkit::receiver::Receiver;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_HOST: &str = "spiffe://kestrel.local/node/db-1";

#[tokio::test]
async fn a_flood_on_one_host_does_not_silence_the_rule_on_another() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[alerts]\ndedup_window = \"0s\"\nrate_limit_per_rule = 3\n\
         rate_limit_window = \"1h\"\n[[sinks]]\nkind = \"webhook\"\nname = \"hook\"\n\
         url = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    ));
    // An unprivileged user runs `cat /etc/shadow` 100 times on web-1...
    let flood = (0..100).map(Env::shadow_variant).collect();
    env.ingest(flood).await;
    // ...then a real shadow read happens on db-1.
    env.pipeline
        .ingest_batch(
            &Identity::new(OTHER_HOST),
            1,
            EventBatch {
                first_seq: 0,
                events: vec![Env::shadow()],
            },
        )
        .await
        .unwrap();

    // 3 from web-1, the rate-limited notice for web-1, 1 from db-1.
    receiver.wait_accepted(5, WAIT).await;
    let deadline = Instant::now() + WAIT;
    while env.count("SELECT COUNT(*) FROM alert_outbox") > 0 {
        assert!(Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bodies: Vec<serde_json::Value> = receiver
        .requests()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["data"].clone())
        .collect();
    assert_eq!(bodies.len(), 5, "nothing else is delivered");
    let from = |host: &str, rule: &str| {
        bodies
            .iter()
            .filter(|b| b["host"] == host && b["rule"]["id"].as_str().unwrap().starts_with(rule))
            .count()
    };
    assert_eq!(
        from(OTHER_HOST, "0e6a7c2a"),
        1,
        "db-1's shadow read is delivered"
    );
    assert_eq!(from(HOST, "0e6a7c2a"), 3);
    assert_eq!(from(HOST, "kestrel.system.rate-limited"), 1);
    let notice = bodies
        .iter()
        .find(|b| b["rule"]["id"] == "kestrel.system.rate-limited")
        .unwrap();
    let details = &notice["evidences"][0]["data"];
    assert_eq!(details["limit"], 3);
    assert_eq!(details["delivered_in_window"], 3);
    assert_eq!(details["held_in_window"], 1);

    // Every occurrence is stored; the 97 held ones say why.
    assert_eq!(
        env.count(
            "SELECT COUNT(*) FROM alerts WHERE rule_id LIKE '0e6a7c2a%' \
             AND json_extract(json, '$.delivery_held') LIKE 'rate limit:%'"
        ),
        97
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM alerts WHERE rule_id LIKE '0e6a7c2a%'"),
        101
    );
    assert_eq!(
        env.count(&format!(
            "SELECT suppressed_total FROM alert_rate_limits WHERE host = '{HOST}'"
        )),
        97
    );
    // `alerts list` marks the held ones, `alerts show` says why.
    let data = DataDir {
        data: env.dir.path().to_path_buf(),
    };
    let listed = execute(&AlertsCommand::List {
        data: data.clone(),
        limit: 1000,
        open: false,
        json: false,
    })
    .unwrap();
    let held_rows = listed
        .lines()
        .filter(|l| l.contains("(held)") && l.contains("shadow"))
        .count();
    assert_eq!(held_rows, 97, "{listed}");
    assert!(
        listed.contains("alerts held back by the rate limit"),
        "{listed}"
    );
    let held_id: i64 = env.count(
        "SELECT MAX(id) FROM alerts WHERE json_extract(json, '$.delivery_held') IS NOT NULL",
    );
    let shown = execute(&AlertsCommand::Show {
        id: held_id,
        data,
        json: false,
    })
    .unwrap();
    assert!(shown.contains("not sent     rate limit:"), "{shown}");
    env.stop().await;
}
