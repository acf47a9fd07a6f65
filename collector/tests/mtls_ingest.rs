//! In-process collector over real mTLS: agents with a valid certificate get their batches
//! stored, detected and acknowledged; anyone else is refused without disturbing them.

mod common;
mod mtls_env;

use kestrel_proto::agent_message::Msg;
use kestrel_proto::{AgentMessage, Gap};
use tonic::Code;

use common::TestCa;
use mtls_env::{batch, hello, open_stream, Harness};

#[tokio::test]
async fn valid_agent_batch_is_stored_detected_and_acked() {
    let h = Harness::start().await;
    let agent = h.ca.agent("web-1");
    let mut client = h.connect(&agent).await.unwrap();
    let mut stream = open_stream(&mut client, hello(7)).await.unwrap();

    let events = vec![common::harmless_exec_event(), common::shadow_exec_event()];
    stream.send(batch(100, events.clone())).await;
    assert_eq!(stream.ack().await, 101);

    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 2);
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM events WHERE identity = 'spiffe://kestrel.local/node/web-1' \
             AND epoch = 7 AND seq IN (100, 101) \
             AND json_extract(json, '$.host') = 'spiffe://kestrel.local/node/web-1'"
        ),
        2,
        "events carry the certificate identity and collector-assigned seqs"
    );
    let lines = h.alert_lines().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let alert = &lines[0];
    assert_eq!(alert["host"], "spiffe://kestrel.local/node/web-1");
    assert_eq!(alert["rule"]["title"], "Shadow file read with cat");
    assert_eq!(alert["process"]["command_line"], "cat /etc/shadow");
    assert_eq!(alert["ancestors"][0]["exe"], "/usr/bin/bash");
    assert_eq!(alert["event"]["seq"], 101);
    assert_eq!(h.count("SELECT COUNT(*) FROM alerts"), 1);

    // A resend of the same batch (lost ack) is acked again but stored and alerted once.
    stream.send(batch(100, events)).await;
    assert_eq!(stream.ack().await, 101);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 2);
    assert_eq!(h.alert_lines().await.len(), 1);

    // Gaps are stored and do not disturb the stream.
    stream
        .send(AgentMessage {
            msg: Some(Msg::Gap(Gap {
                kind: "exec".into(),
                cpu: 1,
                count: 5,
                ..Gap::default()
            })),
        })
        .await;
    stream
        .send(batch(102, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, 102);
    assert_eq!(h.count("SELECT COUNT(*) FROM gaps"), 1);

    h.shutdown().await;
}

#[tokio::test]
async fn client_with_certificate_from_another_ca_is_refused_while_valid_agent_continues() {
    let h = Harness::start().await;
    let mut good = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut good_stream = open_stream(&mut good, hello(1)).await.unwrap();
    good_stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(good_stream.ack().await, 0);

    let rogue_ca = TestCa::new("rogue CA");
    let rogue = rogue_ca.agent("web-1");
    let refused = match h.connect(&rogue).await {
        Err(status) => Err(status),
        Ok(mut client) => open_stream(&mut client, hello(1)).await.map(|_| ()),
    };
    assert!(
        refused.is_err(),
        "a certificate from another CA must be refused"
    );

    good_stream
        .send(batch(1, vec![common::shadow_exec_event()]))
        .await;
    assert_eq!(good_stream.ack().await, 1);
    // The valid agent can still open new connections too.
    let mut again = h.connect(&h.ca.agent("web-2")).await.unwrap();
    let mut again_stream = open_stream(&mut again, hello(1)).await.unwrap();
    again_stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(again_stream.ack().await, 0);

    h.shutdown().await;
}

#[tokio::test]
async fn silent_and_plaintext_clients_do_not_block_the_accept_loop() {
    let h = Harness::start().await;
    // A client that connects and never speaks, and one that speaks plaintext HTTP.
    let _silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut plaintext = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plaintext, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();

    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, 0);
    h.shutdown().await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let h = Harness::start().await;
    let expired =
        h.ca.issue_with(vec![common::uri(&common::spiffe("old"))], true, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
    let refused = match h.connect(&expired).await {
        Err(status) => Err(status),
        Ok(mut client) => open_stream(&mut client, hello(1)).await.map(|_| ()),
    };
    assert!(refused.is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn client_certificate_without_identity_is_refused() {
    let h = Harness::start().await;
    let anonymous = h.ca.issue(Vec::new(), true);
    let refused = match h.connect(&anonymous).await {
        Err(status) => Err(status),
        Ok(mut client) => open_stream(&mut client, hello(1)).await.map(|_| ()),
    };
    assert!(refused.is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn stream_not_starting_with_hello_is_invalid_argument() {
    let h = Harness::start().await;
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let status = match open_stream(&mut client, batch(0, vec![common::harmless_exec_event()])).await
    {
        Err(status) => status,
        Ok(mut stream) => stream.next().await.expect_err("stream must fail"),
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_as_unavailable_and_returns() {
    let h = Harness::start().await;
    let mut client = h.connect(&h.ca.agent("web-1")).await.unwrap();
    let mut stream = open_stream(&mut client, hello(1)).await.unwrap();
    stream
        .send(batch(0, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, 0);

    let addr = h.addr;
    h.shutdown().await;
    let status = stream
        .next()
        .await
        .expect_err("stream must end with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The listening socket is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
