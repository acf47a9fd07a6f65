//! Lost events and tampering with the agent are alerts, through the real collector (mTLS
//! stream from a testkit client, store, outbox) to a real webhook receiver: kernel drops over
//! the threshold, shed exec events, crashed and stopped agents, a damaged spool, a signal aimed
//! at the agent's pid. A flood of gaps folds into one alert per window.

mod common;
mod mtls_env;

use std::time::Duration;

use kestrel_proto::agent_message::Msg;
use kestrel_proto::event::Payload;
use kestrel_proto::{AgentMessage, Event, Gap, SignalEvent};
use kestrel_testkit::receiver::Receiver;

use mtls_env::{batch, hello, open_stream, AgentStream, Harness};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HOST: &str = "spiffe://kestrel.local/node/web-1";
const AGENT_PID: u32 = 777;

async fn start(receiver: &Receiver) -> Harness {
    let config = format!(
        "[alerts.losses]\nkernel_drop_threshold = 50\n\n[delivery]\npoll_interval = \"50ms\"\n\n\
         [[sinks]]\nkind = \"webhook\"\nname = \"hook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    );
    Harness::start_with(&[("shadow.yml", common::SHADOW_RULE)], |args| {
        let path = args.data.parent().unwrap().join("collector.toml");
        std::fs::write(&path, config).unwrap();
        args.config = Some(path);
    })
    .await
}

async fn connect(h: &Harness) -> AgentStream {
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut first = hello(1);
    if let Some(Msg::Hello(hello)) = &mut first.msg {
        hello.agent_pid = AGENT_PID;
    }
    // The client is dropped with the stream's sender still alive: the stream stays open.
    open_stream(&mut client, first).await.unwrap()
}

fn gap(reason: &str, kind: &str, count: u64) -> AgentMessage {
    AgentMessage {
        msg: Some(Msg::Gap(Gap {
            kind: kind.into(),
            reason: reason.into(),
            count,
            first_time_unix_ns: 1_700_000_000_000_000_000,
            last_time_unix_ns: 1_700_000_060_000_000_000,
            ..Gap::default()
        })),
    }
}

/// Sends a harmless batch and waits for its ack: every message before it was handled.
async fn sync(stream: &mut AgentStream, seq: u64) {
    stream
        .send(batch(seq, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, seq);
}

fn stored(h: &Harness, rule: &str, group: &str) -> (i64, i64) {
    let sql = format!(
        "SELECT COUNT(*) FROM alerts WHERE identity = '{HOST}' AND rule_id = '{rule}' \
         AND json_extract(json, '$.group') = '{group}'"
    );
    let alerts = h.count(&sql);
    let count = h.count(&sql.replace("COUNT(*)", "COALESCE(SUM(count), 0)"));
    (alerts, count)
}

/// The alert records the receiver got, by `rule.id` and `group`.
fn received(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let alert = &body["data"];
            (
                alert["rule"]["id"].as_str().unwrap().to_owned(),
                alert["group"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn gaps_that_hide_activity_raise_one_alert_per_condition_and_reach_the_sink() {
    let receiver = Receiver::start(200).await;
    let h = start(&receiver).await;
    let mut stream = connect(&h).await;

    stream.send(gap("kernel", "file", 10)).await; // under the threshold: stored only
    stream.send(gap("spool_full", "file", 500)).await; // a kind detection can lose: stored only
                                                       // A flood: 1,000 kernel drops over the threshold and 1,000 shed exec gaps.
    for _ in 0..1000 {
        stream.send(gap("kernel", "exec", 60)).await;
        stream.send(gap("spool_full", "exec", 1)).await;
    }
    stream.send(gap("queue_full", "credential", 3)).await;
    stream.send(gap("agent_crashed", "", 0)).await;
    stream.send(gap("agent_stopped", "", 0)).await;
    stream.send(gap("spool_corrupt", "", 12)).await;
    sync(&mut stream, 0).await;
    assert_eq!(
        h.count("SELECT COUNT(*) FROM gaps"),
        2006,
        "every gap is stored"
    );

    assert_eq!(
        stored(&h, "kestrel.system.events-lost", "kernel"),
        (1, 1000),
        "one kernel-drop alert folding the flood"
    );
    assert_eq!(
        stored(&h, "kestrel.system.events-lost", "shed exec"),
        (1, 1000)
    );
    assert_eq!(
        stored(&h, "kestrel.system.events-lost", "shed credential"),
        (1, 1)
    );
    assert_eq!(
        stored(&h, "kestrel.system.events-lost", "shed file"),
        (0, 0)
    );
    assert_eq!(
        stored(&h, "kestrel.system.agent-down", "agent_crashed"),
        (1, 1)
    );
    assert_eq!(
        stored(&h, "kestrel.system.agent-down", "agent_stopped"),
        (1, 1)
    );
    assert_eq!(
        stored(&h, "kestrel.system.events-lost", "spool_corrupt"),
        (1, 1)
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM alerts"), 6, "nothing else");

    receiver.wait_accepted(6, mtls_env::DEADLINE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = received(&receiver);
    got.sort();
    assert_eq!(
        got,
        [
            ("kestrel.system.agent-down".into(), "agent_crashed".into()),
            ("kestrel.system.agent-down".into(), "agent_stopped".into()),
            ("kestrel.system.events-lost".into(), "kernel".into()),
            (
                "kestrel.system.events-lost".into(),
                "shed credential".into()
            ),
            ("kestrel.system.events-lost".into(), "shed exec".into()),
            ("kestrel.system.events-lost".into(), "spool_corrupt".into()),
        ]
    );
    h.shutdown().await;
}

fn signal(target_pid: u32, signal: i32) -> Event {
    let mut event = common::harmless_exec_event();
    event.payload = Some(Payload::Signal(SignalEvent {
        syscall: "kill".into(),
        target_pid,
        signal,
        result: 0,
        ..Default::default()
    }));
    event
}

#[tokio::test]
async fn a_signal_aimed_at_the_agent_pid_is_tampering() {
    let receiver = Receiver::start(200).await;
    let h = start(&receiver).await;
    let mut stream = connect(&h).await;
    assert_eq!(
        h.count(&format!(
            "SELECT agent_pid FROM agents WHERE identity = '{HOST}'"
        )),
        i64::from(AGENT_PID),
        "the agent's pid is remembered per identity"
    );
    stream
        .send(batch(
            0,
            vec![
                signal(AGENT_PID + 1, 9), // another process: nothing
                signal(AGENT_PID, 0),     // signal 0 only probes: nothing
                signal(AGENT_PID, 9),
            ],
        ))
        .await;
    assert_eq!(stream.ack().await, 2);
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM alerts WHERE rule_id = 'kestrel.system.agent-tampering' \
             AND level = 'critical' AND json_extract(json, '$.evidences[0].data.target_pid') = 777"
        ),
        1
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM alerts"), 1);
    receiver.wait_accepted(1, mtls_env::DEADLINE).await;
    assert_eq!(
        received(&receiver),
        [(
            "kestrel.system.agent-tampering".into(),
            "signal from /usr/bin/ls".into()
        )]
    );
    h.shutdown().await;
}
