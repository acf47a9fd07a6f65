//! Detection sees each event once: a batch an agent resends (lost ack, reconnect) is dropped by
//! dedup before it reaches the detector, so stateful correlation rules do not count it twice.
//! Genuinely distinct events with the same content are still counted.

mod common;
mod mtls_env;

use common::{shadow_exec_event, SHADOW_RULE};
use mtls_env::{batch, hello, open_stream, Harness};

/// Three shadow reads by one host within an hour. The test batches hold two, so one batch
/// reaches the threshold only when counted twice.
const SHADOW_BURST_RULE: &str = "title: Repeated shadow file reads
id: shadow-read-burst
correlation:
    type: event_count
    rules:
        - 0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10
    group-by:
        - Host
    timespan: 1h
    condition:
        gte: 3
level: high
";

const EPOCH: u64 = 3;

fn rules() -> [(&'static str, &'static str); 2] {
    [
        ("shadow.yml", SHADOW_RULE),
        ("shadow_burst.yml", SHADOW_BURST_RULE),
    ]
}

fn burst_alerts(h: &Harness) -> i64 {
    h.count("SELECT COUNT(*) FROM alerts WHERE rule_id = 'shadow-read-burst'")
}

fn two_shadow_reads() -> Vec<kestrel_proto::Event> {
    let mut second = shadow_exec_event();
    second.time_unix_ns += 1_000_000_000;
    second.process.as_mut().unwrap().pid += 1;
    vec![shadow_exec_event(), second]
}

#[tokio::test]
async fn batch_resent_after_reconnect_does_not_feed_correlation_twice() {
    let h = Harness::start_with_rules(&rules()).await;
    let agent = h.ca.agent("web-1");

    let mut client = h.connect(&agent).await.unwrap();
    let mut first = open_stream(&mut client, hello(EPOCH)).await.unwrap();
    first.send(batch(10, two_shadow_reads())).await;
    assert_eq!(first.ack().await, 11);
    assert_eq!(burst_alerts(&h), 0, "two reads are below the threshold");

    // The ack was lost: the agent reconnects and resends the same batch, twice over.
    drop(first);
    let mut client = h.connect(&agent).await.unwrap();
    let mut second = open_stream(&mut client, hello(EPOCH)).await.unwrap();
    second.send(batch(10, two_shadow_reads())).await;
    assert_eq!(second.ack().await, 11, "a resend is acknowledged again");
    second.send(batch(10, two_shadow_reads())).await;
    assert_eq!(second.ack().await, 11);

    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 2, "stored once");
    assert_eq!(
        burst_alerts(&h),
        0,
        "resent duplicates must not count towards the correlation"
    );

    // The third distinct read reaches the threshold. Had the resends been counted, the rule
    // would have fired on a duplicate (an alert the store drops with the duplicate event) and
    // started over, so this read would be missed.
    let mut third = shadow_exec_event();
    third.time_unix_ns += 2_000_000_000;
    second.send(batch(12, vec![third])).await;
    assert_eq!(second.ack().await, 12);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 3);
    assert_eq!(
        burst_alerts(&h),
        1,
        "the third distinct read fires the correlation"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn distinct_batches_with_the_same_content_feed_correlation() {
    let h = Harness::start_with_rules(&rules()).await;
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(EPOCH)).await.unwrap();
    stream.send(batch(10, two_shadow_reads())).await;
    assert_eq!(stream.ack().await, 11);
    assert_eq!(burst_alerts(&h), 0);
    // The same content in a new epoch is new (the agent's spool was reset): it counts.
    drop(stream);
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(EPOCH + 1)).await.unwrap();
    stream.send(batch(10, two_shadow_reads())).await;
    assert_eq!(stream.ack().await, 11);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 4);
    assert_eq!(burst_alerts(&h), 1);
    h.shutdown().await;
}
