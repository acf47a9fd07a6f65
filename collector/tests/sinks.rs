//! Each sink kind against a real HTTP receiver on 127.0.0.1, validating what it receives.

mod alerting_env;
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alerting_env::{Env, FAST_DELIVERY, HOST};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use kestrel_testkit::receiver::Receiver;
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn fingerprint_of_first_alert(env: &Env) -> String {
    rusqlite::Connection::open(env.dir.path().join("kestrel.db"))
        .unwrap()
        .query_row(
            "SELECT fingerprint FROM alerts ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Verifies a Standard Webhooks signature the way a receiver does, independently of the sink.
fn verify_standard_webhook(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert!(
        header.split(' ').any(|sig| sig == expected),
        "signature {header:?} does not verify (expected {expected})"
    );
    let ts: u64 = timestamp.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 300, "timestamp {ts} is not current");
}

#[tokio::test]
async fn webhook_delivery_is_signed_per_standard_webhooks() {
    let receiver = Receiver::start(204).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"webhook\"\nurl = \"{}/hook\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;
    let request = &receiver.wait_accepted(1, WAIT).await[0];

    let id = request.header("webhook-id");
    verify_standard_webhook(
        SECRET,
        &id,
        &request.header("webhook-timestamp"),
        &request.body,
        &request.header("webhook-signature"),
    );
    assert_eq!(request.header("content-type"), "application/json");
    let body = request.json();
    assert_eq!(body["type"], "alert.created");
    assert!(body["timestamp"].is_string());
    let alert = &body["data"];
    assert_eq!(
        id,
        format!("msg_{}", alert["metadata"]["uid"].as_str().unwrap())
    );
    assert_eq!(alert["class_uid"], 2004);
    assert_eq!(alert["host"], HOST);
    assert_eq!(alert["rule"]["title"], "Shadow file read with cat");
    assert_eq!(alert["process"]["command_line"], "cat /etc/shadow");
    assert_eq!(alert["ancestors"][1]["exe"], "/usr/sbin/sshd");
    env.stop().await;
}

#[tokio::test]
async fn tampered_webhook_body_fails_verification() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;
    let request = &receiver.wait_accepted(1, WAIT).await[0];
    let mut body = request.body.clone();
    body[10] ^= 1;
    let verified = std::panic::catch_unwind(|| {
        verify_standard_webhook(
            SECRET,
            &request.header("webhook-id"),
            &request.header("webhook-timestamp"),
            &body,
            &request.header("webhook-signature"),
        )
    });
    assert!(verified.is_err(), "a changed body must not verify");
    env.stop().await;
}

#[tokio::test]
async fn pagerduty_event_is_a_trigger_deduplicated_by_fingerprint() {
    let receiver = Receiver::start(202).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"pagerduty\"\nurl = \"{}/v2/enqueue\"\nrouting_key = \"R0UT1NGKEY\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;
    let request = &receiver.wait_accepted(1, WAIT).await[0];
    assert_eq!(request.path, "/v2/enqueue");
    let event = request.json();
    assert_eq!(event["routing_key"], "R0UT1NGKEY");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], fingerprint_of_first_alert(&env));
    let payload = &event["payload"];
    let summary = payload["summary"].as_str().unwrap();
    assert!(
        summary.contains("Shadow file read with cat") && summary.len() <= 1024,
        "{summary}"
    );
    assert_eq!(payload["source"], HOST);
    assert_eq!(
        payload["severity"], "error",
        "Sigma high is PagerDuty error"
    );
    assert_eq!(payload["timestamp"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(payload["component"], "/usr/bin/cat");
    assert_eq!(payload["class"], "Credential Access");
    assert_eq!(payload["custom_details"]["process"]["user"], "alice");
    env.stop().await;
}

#[tokio::test]
async fn gitlab_alert_carries_the_bearer_token_and_the_integration_fields() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"gitlab\"\nurl = \"{}/api/v4/projects/1/alert_management_alerts/notify.json\"\ntoken = \"glpat-secret\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;
    let request = &receiver.wait_accepted(1, WAIT).await[0];
    assert_eq!(request.header("authorization"), "Bearer glpat-secret");
    let alert = request.json();
    assert_eq!(
        alert["title"],
        format!("Shadow file read with cat on {HOST}")
    );
    assert_eq!(alert["start_time"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["fingerprint"], fingerprint_of_first_alert(&env));
    assert_eq!(alert["hosts"], serde_json::json!([HOST]));
    assert_eq!(alert["monitoring_tool"], "Kestrel");
    let description = alert["description"].as_str().unwrap();
    assert!(description.contains("A shell utility read the shadow password file."));
    assert!(
        description.contains("[4100] root  sshd: alice"),
        "{description}"
    );
    assert!(
        description.contains("└─ [4242] alice  cat /etc/shadow"),
        "{description}"
    );
    env.stop().await;
}

#[tokio::test]
async fn slack_message_is_block_kit_with_the_process_tree() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"slack\"\nurl = \"{}/services/T000/B000/XXXX\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;
    let message = receiver.wait_accepted(1, WAIT).await[0].json();
    assert!(message["text"]
        .as_str()
        .unwrap()
        .contains("Shadow file read with cat"));
    let blocks = message["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(blocks[0]["text"]["text"]
        .as_str()
        .unwrap()
        .starts_with(":red_circle: High"));
    let all = serde_json::to_string(blocks).unwrap();
    assert!(all.contains("*Process tree*"), "{all}");
    assert!(all.contains("cat /etc/shadow"), "{all}");
    assert!(all.contains("T1003.008 Credential Access"), "{all}");
    for block in blocks {
        if let Some(text) = block["text"]["text"].as_str() {
            assert!(text.chars().count() <= 3000);
        }
    }
    env.stop().await;
}

#[tokio::test]
async fn splunk_hec_event_goes_to_the_event_endpoint_with_the_token() {
    let receiver = Receiver::start(200).await;
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"splunk_hec\"\nurl = \"{}\"\ntoken = \"hec-token\"\nindex = \"security\"\n",
        receiver.url
    ));
    env.ingest(vec![Env::shadow()]).await;
    let request = &receiver.wait_accepted(1, WAIT).await[0];
    assert_eq!(request.path, "/services/collector/event");
    assert_eq!(request.header("authorization"), "Splunk hec-token");
    let body = request.json();
    assert_eq!(body["host"], HOST);
    assert_eq!(body["index"], "security");
    assert_eq!(body["sourcetype"], "kestrel:alert");
    assert_eq!(body["source"], "kestrel");
    assert!((body["time"].as_f64().unwrap() - 1_700_000_000.123).abs() < 0.01);
    assert_eq!(
        body["event"]["finding_info"]["uid"],
        fingerprint_of_first_alert(&env)
    );
    env.stop().await;
}

#[tokio::test]
async fn jsonl_sink_from_the_config_file_rotates_and_keeps_every_alert() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let env = Env::start(&format!(
        "{FAST_DELIVERY}\n[alerts]\ndedup_window = \"0s\"\n[[sinks]]\nkind = \"jsonl\"\npath = \"{}\"\nmax_bytes = \"9KB\"\nmax_files = 9\n",
        path.display()
    ));
    for n in 0..6 {
        env.ingest(vec![Env::shadow_variant(n)]).await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    let count_lines = || {
        (0..10)
            .map(|n| {
                let p = if n == 0 {
                    path.clone()
                } else {
                    dir.path().join(format!("alerts.jsonl.{n}"))
                };
                std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
            })
            .sum::<usize>()
    };
    while count_lines() < 6 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count_lines(), 6);
    assert!(
        dir.path().join("alerts.jsonl.1").exists(),
        "rotated at 9KB (9000 bytes)"
    );
    env.stop().await;
}
