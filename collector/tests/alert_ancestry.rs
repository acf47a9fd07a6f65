//! An exec event with a long ancestry, through the real collector (mTLS stream, store writer,
//! outbox, JSON-lines sink): the alert keeps its ancestry flat and bounded, so neither building,
//! storing, reading back nor delivering it depends on the chain's length; a chain longer than the
//! ingress limit is refused at the door, and the collector goes on serving.

mod common;
mod mtls_env;

use kestrel_collector::alert::MAX_ANCESTORS;
use kestrel_collector::cli::alerts::{execute, AlertsCommand, DataDir};
use kestrel_collector::ingress::limits::ANCESTORS;
use kestrel_proto::event::Payload;
use kestrel_proto::{Ancestor, Event};

use mtls_env::{batch, hello, open_stream, Harness};

/// The shadow read, its process descending from `depth` ancestors.
fn shadow_read_with_ancestors(depth: u32) -> Event {
    let mut event = common::shadow_exec_event();
    let Some(Payload::Exec(exec)) = &mut event.payload else {
        unreachable!()
    };
    exec.ancestors = (0..depth)
        .map(|i| Ancestor {
            pid: 10_000 + i,
            exe: format!("/usr/bin/sh-{i}"),
            argv: vec!["sh".into(), "-c".into(), format!("level {i}")],
            uid: 1000,
            user: "alice".into(),
            exec_id: format!("exec-{i}"),
            start_time_unix_ns: 1_699_000_000_000_000_000 + u64::from(i),
        })
        .collect();
    event
}

fn alerts_list(h: &Harness) -> String {
    execute(&AlertsCommand::List {
        data: DataDir {
            data: h.dir.path().join("data"),
        },
        limit: 100,
        open: false,
        json: true,
    })
    .unwrap_or_else(|e| panic!("alerts list failed: {e}"))
}

async fn deep_ancestry_is_stored_delivered_and_listed(depth: u32) {
    let h = Harness::start().await;
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    stream
        .send(batch(0, vec![shadow_read_with_ancestors(depth)]))
        .await;
    assert_eq!(
        stream.ack().await,
        0,
        "the batch is stored and acknowledged"
    );
    // A later alert is delivered too: one deep alert does not block the outbox.
    // Another process, from another shell (session): another finding.
    let mut other = shadow_read_with_ancestors(3);
    let process = other.process.as_mut().unwrap();
    process.pid = 7777;
    process.tgid = 7777;
    process.exec_id = "exec-of-another-cat".into();
    process.parent_exec_id = "exec-of-another-shell".into();
    stream.send(batch(1, vec![other])).await;
    assert_eq!(stream.ack().await, 1);

    let deadline = tokio::time::Instant::now() + mtls_env::DEADLINE;
    let lines = loop {
        let lines = h.alert_lines().await;
        if lines.len() >= 2 || tokio::time::Instant::now() >= deadline {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 2, "both alerts reach the sink");
    let deep = &lines[0];
    let ancestors = deep["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), MAX_ANCESTORS.min(depth as usize));
    assert_eq!(ancestors[0]["exe"], "/usr/bin/sh-0", "nearest first");
    assert_eq!(
        deep["ancestors_omitted"].as_u64().unwrap_or(0),
        u64::from(depth).saturating_sub(MAX_ANCESTORS as u64)
    );
    let parent = &deep["evidences"][0]["process"]["parent_process"];
    assert_eq!(parent["file"]["path"], "/usr/bin/sh-0");
    assert!(
        parent.get("parent_process").is_none(),
        "OCSF parent_process is one level only: {parent}"
    );
    let listed = alerts_list(&h);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    h.shutdown().await;
}

#[tokio::test]
async fn exec_with_as_many_ancestors_as_the_door_allows_is_delivered_and_listed() {
    const {
        assert!(
            ANCESTORS.max <= MAX_ANCESTORS,
            "an accepted chain is kept whole"
        )
    };
    deep_ancestry_is_stored_delivered_and_listed(ANCESTORS.max as u32).await;
}

/// A chain over the ingress limit is refused with a status naming it; nothing of that batch is
/// stored, and a new stream of the same agent is served.
async fn deep_ancestry_is_refused_and_the_collector_serves_on(depth: u32) {
    let h = Harness::start().await;
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    stream
        .send(batch(0, vec![shadow_read_with_ancestors(depth)]))
        .await;
    let status = stream.ended().await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&format!(
            "has {depth} ancestors; the limit is {}",
            ANCESTORS.max
        )),
        "{status:?}"
    );

    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    stream
        .send(batch(0, vec![shadow_read_with_ancestors(3)]))
        .await;
    assert_eq!(stream.ack().await, 0);
    let deadline = tokio::time::Instant::now() + mtls_env::DEADLINE;
    let lines = loop {
        let lines = h.alert_lines().await;
        if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 1, "only the accepted event raised an alert");
    assert_eq!(lines[0]["ancestors"].as_array().unwrap().len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn exec_with_4000_ancestors_is_refused_without_taking_the_collector_down() {
    deep_ancestry_is_refused_and_the_collector_serves_on(4000).await;
}

#[tokio::test]
async fn exec_with_200_ancestors_is_refused_and_the_agent_is_served_again() {
    deep_ancestry_is_refused_and_the_collector_serves_on(200).await;
}
