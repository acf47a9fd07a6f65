//! Issue 14 item 3: the alert fingerprint folds repeats by session, not by immediate parent.
//! The same command run by many short-lived shells of one login session is one alert whose
//! count is the number of runs; the same command from another session is a second alert.

mod alerting_env;
mod common;

use alerting_env::Env;
use kestrel_collector::store::DB_FILE;
use kestrel_proto::event::Payload;
use kestrel_proto::{Ancestor, Event, ExecEvent, Process};

fn ancestor(pid: u32, exe: &str, exec_id: &str) -> Ancestor {
    Ancestor {
        pid,
        exe: exe.into(),
        argv: vec![exe.rsplit('/').next().unwrap().into()],
        uid: 1000,
        user: "alice".into(),
        exec_id: exec_id.into(),
        ..Default::default()
    }
}

fn exec(pid: u32, exe: &str, argv: &[&str], ancestors: Vec<Ancestor>) -> Event {
    let exec_id = format!("exec-{pid}");
    Event {
        time_unix_ns: 1_700_000_000_000_000_000 + u64::from(pid) * 1_000_000,
        process: Some(Process {
            pid,
            tgid: pid,
            ppid: ancestors.first().map_or(1, |a| a.pid),
            uid: 1000,
            user: "alice".into(),
            exe: exe.into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            exec_id,
            parent_exec_id: ancestors
                .first()
                .map(|a| a.exec_id.clone())
                .unwrap_or_default(),
            ..Default::default()
        }),
        payload: Some(Payload::Exec(ExecEvent {
            ancestors,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A login shell under sshd (pid `login`), then `runs` short-lived `sh -c 'cat /etc/shadow'`
/// shells it starts, each running cat: every cat has another parent, all share the session.
fn session(login: u32, runs: u32) -> Vec<Event> {
    let sshd = ancestor(login - 1, "/usr/sbin/sshd", &format!("exec-{}", login - 1));
    let shell = ancestor(login, "/usr/bin/bash", &format!("exec-{login}"));
    let mut events = vec![exec(login, "/usr/bin/bash", &["-bash"], vec![sshd.clone()])];
    for i in 0..runs {
        let sh_pid = login + 10 + 2 * i;
        let sh = ancestor(sh_pid, "/usr/bin/dash", &format!("exec-{sh_pid}"));
        events.push(exec(
            sh_pid,
            "/usr/bin/dash",
            &["sh", "-c", "cat /etc/shadow"],
            vec![shell.clone(), sshd.clone()],
        ));
        events.push(exec(
            sh_pid + 1,
            "/usr/bin/cat",
            &["cat", "/etc/shadow"],
            vec![sh, shell.clone(), sshd.clone()],
        ));
    }
    events
}

fn alerts(env: &Env) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(env.dir.path().join(DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT fingerprint, count FROM alerts \
             WHERE rule_id = '0e6a7c2a-8a43-4d2b-9c1e-3f1d2c9b7a10' ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn many_short_lived_shells_of_one_session_fold_into_one_alert_and_another_session_is_another()
{
    let env = Env::start("[alerts]\ndedup_window = \"10m\"\n");
    let runs = 7;
    env.ingest(session(1000, runs)).await;
    let after_one = alerts(&env);
    assert_eq!(
        after_one.len(),
        1,
        "{runs} shells of one session, one alert: {after_one:?}"
    );
    assert_eq!(after_one[0].1, i64::from(runs), "its count is the runs");

    env.ingest(session(5000, 2)).await;
    let after_two = alerts(&env);
    assert_eq!(
        after_two.len(),
        2,
        "another session, another alert: {after_two:?}"
    );
    assert_ne!(after_two[0].0, after_two[1].0);
    assert_eq!(after_two[0].1, i64::from(runs));
    assert_eq!(after_two[1].1, 2);
    env.stop().await;
}
