//! An alert row that cannot be read back (an older collector nested the ancestry 200 levels
//! deep, past serde_json's recursion limit) is dead-lettered alone, with its reason; the
//! deliveries behind it go out and `alerts list` shows the other alerts.

mod alerting_env;
mod common;

use std::time::{Duration, Instant};

use alerting_env::{Env, FAST_DELIVERY};
use kestrel_collector::cli::alerts::{execute, AlertsCommand, DataDir};
use kestrel_collector::store::DB_FILE;
use kestrel_testkit::receiver::Receiver;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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

/// The record of alert 1 with its evidence process nested `depth` parents deep.
fn nest_process(json: &str, depth: usize) -> String {
    let mut alert: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut chain = serde_json::json!({
        "pid": 1, "uid": "", "name": "init", "cmd_line": "", "created_time": 0,
        "file": {"name": "init", "path": "/sbin/init"}, "user": {"name": "root", "uid": "0"}
    });
    for i in 0..depth {
        chain = serde_json::json!({
            "pid": i + 2, "uid": "", "name": "sh", "cmd_line": "", "created_time": 0,
            "file": {"name": "sh", "path": "/bin/sh"}, "user": {"name": "root", "uid": "0"},
            "parent_process": chain,
        });
    }
    alert["evidences"][0]["process"] = chain;
    alert.to_string()
}

#[tokio::test]
async fn unreadable_alert_row_is_dead_lettered_alone_and_the_rest_is_delivered_and_listed() {
    let receiver = Receiver::start(200).await;
    // The sink is down while the rows are prepared, then comes back.
    let config = format!(
        "{FAST_DELIVERY}\n[[sinks]]\nkind = \"webhook\"\nname = \"hook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    );
    let env = Env::start(&config);
    env.ingest(vec![Env::shadow()]).await;
    eventually(&env, "SELECT COUNT(*) FROM alert_deliveries", 1).await;
    env.stop().await;

    // Alert 1 becomes unreadable and is queued again; alert 2 is queued behind it.
    let db = rusqlite::Connection::open(env.dir.path().join(DB_FILE)).unwrap();
    let json: String = db
        .query_row("SELECT json FROM alerts WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    let deep = nest_process(&json, 200);
    assert!(
        serde_json::from_str::<kestrel_collector::alert::Alert>(&deep).is_err(),
        "the record must be past the recursion limit"
    );
    db.execute("UPDATE alerts SET json = ?1 WHERE id = 1", [&deep])
        .unwrap();
    db.execute(
        "INSERT INTO alert_outbox (sink, alert_id, enqueued_unix_ns, next_attempt_unix_ns) \
         VALUES ('hook', 1, 1, 1)",
        [],
    )
    .unwrap();
    drop(db);

    let restarted = Env::start_in(env.dir.clone(), &config);
    restarted.ingest(vec![Env::shadow_variant(2)]).await;
    receiver.wait_accepted(2, WAIT).await;
    eventually(&restarted, "SELECT COUNT(*) FROM alert_outbox", 0).await;
    eventually(
        &restarted,
        "SELECT COUNT(*) FROM alert_dead_letters WHERE alert_id = 1 \
         AND last_error LIKE 'alert record unreadable%recursion limit%'",
        1,
    )
    .await;
    let listed = execute(&AlertsCommand::List {
        data: DataDir {
            data: restarted.dir.path().to_path_buf(),
        },
        limit: 10,
        open: false,
        json: true,
    })
    .unwrap_or_else(|e| panic!("alerts list: {e}"));
    let ids: Vec<i64> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [2], "{listed}");
    restarted.stop().await;
}
