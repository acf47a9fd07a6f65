//! Behaviour of the spool as a whole: numbering, restart, acknowledgement, shedding, damage.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use kestrel_proto::{event::Payload, Event, ExecEvent, ExitEvent, ForkEvent, Gap, Process};
use proptest::prelude::*;

use super::*;

fn event(kind: &str, id: u32) -> Event {
    let payload = match kind {
        "exec" => Payload::Exec(ExecEvent::default()),
        "fork" => Payload::Fork(ForkEvent { parent_tgid: 1 }),
        _ => Payload::Exit(ExitEvent::default()),
    };
    Event {
        time_unix_ns: 1_000 + u64::from(id),
        process: Some(Process {
            pid: id,
            exe: "/usr/bin/something-with-a-path".into(),
            argv: vec!["something".into(), format!("--id={id}")],
            ..Process::default()
        }),
        payload: Some(payload),
        ..Event::default()
    }
}

fn small() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1 << 30,
        segment_bytes: 4096,
        gap_interval: Duration::ZERO,
        ..SpoolConfig::default()
    }
}

fn read_all(spool: &Arc<Spool>) -> Vec<Item> {
    let mut reader = SpoolReader::new(spool.clone());
    let mut items = Vec::new();
    loop {
        let more = reader.read(100).unwrap();
        if more.is_empty() {
            return items;
        }
        items.extend(more);
    }
}

/// The event an item holds, decoded; `None` for a Gap.
fn decoded(item: &Item) -> Option<Event> {
    item.decode_event()
        .map(|e| e.expect("a spooled event decodes"))
}

fn pids(items: &[Item]) -> Vec<u32> {
    items
        .iter()
        .filter_map(|i| Some(decoded(i)?.process.unwrap().pid))
        .collect()
}

fn gaps(items: &[Item]) -> Vec<&Gap> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Gap(g) => Some(g),
            Item::Event { .. } => None,
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<segment::Found> {
    segment::list(dir).unwrap()
}

#[test]
fn events_are_read_back_in_order_with_consecutive_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    let events: Vec<Event> = (0..200).map(|i| event("exec", i)).collect();
    writer.append(&events[..150]).unwrap();
    writer.append(&events[150..]).unwrap();
    assert!(segments(dir.path()).len() > 3, "small segments roll over");

    let items = read_all(&spool);
    assert_eq!(pids(&items), (0..200).collect::<Vec<_>>());
    let seqs: Vec<u64> = items.iter().map(Item::last_seq).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    match &items[0] {
        item @ Item::Event { seq, .. } => assert_eq!(decoded(item).unwrap().seq, *seq),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reader_sees_only_what_the_writer_published() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    let mut reader = SpoolReader::new(spool.clone());
    assert!(reader.read(10).unwrap().is_empty());
    writer.append(&[event("exec", 1)]).unwrap();
    assert_eq!(pids(&reader.read(10).unwrap()), [1]);
    assert!(reader.read(10).unwrap().is_empty());
    writer.append(&[event("exec", 2)]).unwrap();
    assert_eq!(pids(&reader.read(10).unwrap()), [2]);
}

#[test]
fn restart_keeps_the_epoch_resumes_numbering_and_resends_what_was_not_acked() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    let epoch = spool.epoch();
    writer
        .append(&(0..100).map(|i| event("exec", i)).collect::<Vec<_>>())
        .unwrap();
    spool.ack(60).unwrap();
    spool.persist().unwrap();
    drop((spool, writer));

    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    assert_eq!(spool.epoch(), epoch, "the epoch survives a restart");
    assert_eq!(spool.first_unacked_seq(), 61);
    assert_eq!(
        writer.next_seq(),
        101,
        "numbering resumes after the last record"
    );
    writer.append(&[event("exec", 100)]).unwrap();
    let items = read_all(&spool);
    assert_eq!(pids(&items), (60..=100).collect::<Vec<_>>());
    // Dropped without close: the first run crashed, and the window is reported first.
    let crash: Vec<(&str, u64)> = gaps(&items)
        .iter()
        .map(|g| (g.reason.as_str(), g.count))
        .collect();
    assert_eq!(crash, [(runs::AGENT_CRASHED, 0)]);
    assert_eq!(items.last().unwrap().last_seq(), 102);
}

#[test]
fn a_clean_close_then_reopen_reports_the_time_no_agent_ran() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    writer.append(&[event("exec", 1)]).unwrap();
    writer.close().unwrap();
    drop((spool, writer));
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    writer.append(&[event("exec", 2)]).unwrap();
    let items = read_all(&spool);
    let stopped = gaps(&items);
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(
        (stopped[0].reason.as_str(), stopped[0].kind.as_str()),
        (runs::AGENT_STOPPED, "all")
    );
    assert!(stopped[0].first_time_unix_ns <= stopped[0].last_time_unix_ns);
    assert_eq!(pids(&items), [1, 2]);
}

#[test]
fn crash_without_persisted_ack_resends_from_the_last_persisted_position() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    writer
        .append(&[event("exec", 1), event("exec", 2)])
        .unwrap();
    spool.ack(2).unwrap(); // not persisted: no segment to remove, interval not reached
    drop((spool, writer));
    let (spool, _writer) = Spool::open(dir.path(), small()).unwrap();
    assert_eq!(spool.first_unacked_seq(), 1);
    assert_eq!(
        pids(&read_all(&spool)),
        [1, 2],
        "resent; the collector drops duplicates"
    );
}

#[test]
fn acked_segments_are_removed_only_after_the_position_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    writer
        .append(&(0..100).map(|i| event("exec", i)).collect::<Vec<_>>())
        .unwrap();
    let before = segments(dir.path());
    let second_first = before[1].first_seq;
    spool.ack(second_first - 1).unwrap();
    let after = segments(dir.path());
    assert_eq!(after.len(), before.len() - 1);
    assert_eq!(after[0].first_seq, second_first);
    let state = state::load(dir.path()).unwrap().unwrap();
    assert!(state.acked_seq >= second_first - 1, "{state:?}");
    assert_eq!(
        spool.used_bytes(),
        after.iter().map(|f| f.bytes).sum::<u64>()
    );
    // Acknowledging everything leaves only the active segment.
    spool.ack(100).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn full_spool_sheds_low_priority_kinds_first_and_counts_them_in_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let one = {
        let mut body = Vec::new();
        prost::Message::encode(&event("fork", 1), &mut body).unwrap();
        (record::HEADER_LEN + body.len()) as u64
    };
    let config = SpoolConfig {
        max_bytes: one * 40,
        segment_bytes: one * 10,
        gap_interval: Duration::from_secs(3600),
        ..SpoolConfig::default()
    };
    let (spool, mut writer) = Spool::open(dir.path(), config).unwrap();
    let mut sent = BTreeMap::new();
    for i in 0..100 {
        for kind in ["fork", "exit", "exec"] {
            writer.append(&[event(kind, i)]).unwrap();
            *sent.entry(kind).or_insert(0u64) += 1;
        }
    }
    writer.close().unwrap();
    assert!(spool.used_bytes() <= one * 40 + 4096, "bounded");

    let items = read_all(&spool);
    let mut stored: BTreeMap<&str, u64> = BTreeMap::new();
    for item in &items {
        if let Some(event) = decoded(item) {
            *stored.entry(event.kind_name()).or_default() += 1;
        }
    }
    let mut shed: BTreeMap<&str, u64> = BTreeMap::new();
    for gap in gaps(&items) {
        assert_eq!(gap.reason, "spool_full");
        assert_eq!(
            gap.first_seq, gap.last_seq,
            "a shed Gap takes one sequence number"
        );
        *shed.entry(gap.kind.as_str()).or_default() += gap.count;
    }
    for (kind, n) in &sent {
        assert_eq!(
            stored.get(kind).copied().unwrap_or(0) + shed.get(kind).copied().unwrap_or(0),
            *n,
            "every {kind} event is either stored or counted: stored {stored:?} shed {shed:?}"
        );
    }
    assert!(shed["fork"] > 0 && shed["exit"] > 0);
    let exec_shed = shed.get("exec").copied().unwrap_or(0);
    assert!(exec_shed < shed["fork"], "exec is shed last: {shed:?}");
    assert_eq!(spool.shed_total(), shed.values().sum::<u64>());
}

#[test]
fn queue_overflow_is_counted_and_reported_like_shedding() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    let (sender, _rx) = SpoolSender::channel(spool.clone(), 1);
    assert!(sender.try_send(event("exec", 1)).is_ok());
    assert!(sender.try_send(event("exec", 2)).is_err());
    assert_eq!(sender.queue_depth(), 1);
    writer.close().unwrap();
    let items = read_all(&spool);
    let gaps = gaps(&items);
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].kind.as_str(), gaps[0].count), ("exec", 1));
    assert_eq!(gaps[0].reason, "queue_full");
}

#[test]
fn a_filling_queue_refuses_low_kinds_before_exec() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    let (sender, _rx) = SpoolSender::channel(spool.clone(), 10);
    // Low kinds (fork, exit) may fill 70 % of the queue, exec all of it.
    let accepted = |kind: &str, from: u32| {
        (from..from + 10)
            .filter(|i| sender.try_send(event(kind, *i)).is_ok())
            .count()
    };
    assert_eq!(accepted("fork", 0), 7);
    assert_eq!(accepted("exit", 10), 0);
    assert_eq!(accepted("exec", 20), 3);
    assert_eq!(sender.queue_depth(), 10);
    writer.close().unwrap();
    let shed: BTreeMap<String, u64> = gaps(&read_all(&spool))
        .iter()
        .map(|g| (g.kind.clone(), g.count))
        .collect();
    assert_eq!(
        shed,
        BTreeMap::from([
            ("exec".to_owned(), 7),
            ("exit".to_owned(), 10),
            ("fork".to_owned(), 3)
        ])
    );
}

/// Writes 3 segments of events and returns (dir, the middle segment, offset of the record for
/// `pid` in it, its sequence number).
fn three_segments_with_target(
    target_pid: u32,
) -> (tempfile::TempDir, std::path::PathBuf, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    writer
        .append(&(0..150).map(|i| event("exec", i)).collect::<Vec<_>>())
        .unwrap();
    drop((spool, writer));
    let found = segments(dir.path());
    assert!(found.len() >= 3);
    let middle = found[1].path.clone();
    let mut cursor = RecordCursor::new(File::open(&middle).unwrap()).unwrap();
    loop {
        let offset = cursor.offset();
        match cursor.next(u64::MAX).unwrap() {
            Next::Record { header, body } => {
                let e = <Event as prost::Message>::decode(&body[..]).unwrap();
                if e.process.unwrap().pid == target_pid {
                    return (dir, middle, offset, header.seq);
                }
            }
            other => panic!("pid {target_pid} not in the middle segment: {other:?}"),
        }
    }
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x55;
    fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_record_body_is_one_gap_and_everything_else_is_delivered() {
    let pid = 60;
    let (dir, middle, offset, seq) = three_segments_with_target(pid);
    flip(&middle, offset + record::HEADER_LEN as u64 + 3);

    let (spool, _writer) = Spool::open(dir.path(), small()).unwrap();
    let items = read_all(&spool);
    let delivered = pids(&items);
    assert_eq!(delivered.len(), 149);
    assert!(!delivered.contains(&pid));
    let gaps = gaps(&items);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let gap = gaps[0];
    assert_eq!((gap.first_seq, gap.last_seq, gap.count), (seq, seq, 1));
    assert_eq!(
        (gap.kind.as_str(), gap.reason.as_str()),
        ("exec", "spool_corrupt")
    );
    assert_eq!(gap.first_time_unix_ns, 1_000 + u64::from(pid));
    // Sequence numbers stay strictly increasing across the gap.
    let seqs: Vec<u64> = items.iter().map(Item::last_seq).collect();
    assert_eq!(seqs, (1..=150).collect::<Vec<_>>());
}

#[test]
fn damaged_record_header_loses_the_rest_of_its_segment_only() {
    let (dir, middle, offset, seq) = three_segments_with_target(60);
    flip(&middle, offset + 9);
    let (spool, _writer) = Spool::open(dir.path(), small()).unwrap();
    let items = read_all(&spool);
    let gaps = gaps(&items);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let next_segment_first = segments(dir.path())[2].first_seq;
    assert_eq!(gaps[0].first_seq, seq);
    assert_eq!(gaps[0].last_seq, next_segment_first - 1);
    let delivered = pids(&items);
    assert_eq!(
        delivered.len() as u64 + gaps[0].count,
        150,
        "every record is delivered or counted lost"
    );
    assert!(delivered.contains(&149), "later segments are delivered");
}

#[test]
fn torn_record_at_the_end_is_cut_off_and_its_number_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    writer
        .append(&[event("exec", 1), event("exec", 2)])
        .unwrap();
    drop((spool, writer));
    let tail = segments(dir.path()).pop().unwrap();
    let file = fs::OpenOptions::new().write(true).open(&tail.path).unwrap();
    file.set_len(tail.bytes - 5).unwrap();
    drop(file);

    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    assert_eq!(writer.next_seq(), 2, "the torn record was never published");
    writer.append(&[event("exec", 3)]).unwrap();
    let items = read_all(&spool);
    assert_eq!(pids(&items), [1, 3]);
    let reasons: Vec<&str> = gaps(&items).iter().map(|g| g.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [runs::AGENT_CRASHED],
        "only the crash window is reported"
    );
}

#[test]
fn a_spool_directory_is_used_by_one_agent_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), small()).unwrap();
    let err = Spool::open(dir.path(), small()).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn lost_state_file_is_recovered_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    let epoch = spool.epoch();
    writer.append(&[event("exec", 1)]).unwrap();
    drop((spool, writer));
    fs::write(dir.path().join(state::STATE_FILE), "not json").unwrap();
    let (spool, writer) = Spool::open(dir.path(), small()).unwrap();
    assert_eq!(spool.epoch(), epoch);
    assert_eq!(writer.next_seq(), 2);
    assert_eq!(pids(&read_all(&spool)), [1]);
}

fn spool_corrupt(items: &[Item]) -> Vec<(u64, u64)> {
    gaps(items)
        .iter()
        .filter(|g| g.reason == "spool_corrupt")
        .map(|g| (g.first_seq, g.last_seq))
        .collect()
}

#[test]
fn a_segment_removed_while_running_is_one_gap_and_later_events_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    writer
        .append(&(0..150).map(|i| event("exec", i)).collect::<Vec<_>>())
        .unwrap();
    let found = segments(dir.path());
    assert!(found.len() >= 3);
    let (lost_first, lost_end) = (found[1].first_seq, found[2].first_seq);
    let mut reader = SpoolReader::new(spool.clone());
    let before = reader.read(5).unwrap();
    assert_eq!(pids(&before), [0, 1, 2, 3, 4]);
    fs::remove_file(&found[1].path).unwrap();

    let mut items = before;
    loop {
        let more = reader
            .read(100)
            .expect("the reader moves past a removed segment");
        if more.is_empty() {
            break;
        }
        items.extend(more);
    }
    assert_eq!(spool_corrupt(&items), [(lost_first, lost_end - 1)]);
    let delivered = pids(&items);
    assert_eq!(delivered.len() as u64, 150 - (lost_end - lost_first));
    assert!(delivered.contains(&149), "later segments are delivered");
    // Acknowledging past it works (the removed file is not an error) and writing goes on.
    spool.ack(150).unwrap();
    writer.append(&[event("exec", 150)]).unwrap();
    assert_eq!(pids(&reader.read(10).unwrap()), [150]);
}

#[test]
fn the_active_segment_removed_is_a_gap_and_writing_continues_in_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
    let mut reader = SpoolReader::new(spool.clone());
    writer
        .append(&[event("exec", 1), event("exec", 2)])
        .unwrap();
    assert_eq!(pids(&reader.read(10).unwrap()), [1, 2]);
    let active = segments(dir.path()).pop().unwrap();
    fs::remove_file(&active.path).unwrap();
    // Written into the removed file, which the writer then leaves.
    writer.append(&[event("exec", 3)]).unwrap();
    writer.append(&[event("exec", 4)]).unwrap();
    assert_eq!(segments(dir.path()).len(), 1, "a new segment");
    assert_eq!(
        pids(&reader.read(10).unwrap()),
        [3, 4],
        "a reader that still has the removed file open reads on"
    );
    // After a reconnect, the removed file cannot be opened again.
    spool.ack(2).unwrap();
    reader.rewind();
    let items = reader.read(10).unwrap();
    assert_eq!(spool_corrupt(&items), [(3, 3)]);
    assert_eq!(pids(&items), [4]);
    spool.ack(4).unwrap();
}

#[test]
fn an_unreadable_segment_is_a_gap_for_what_it_held() {
    let pid = 60;
    let (dir, middle, _, _) = three_segments_with_target(pid);
    let found = segments(dir.path());
    let (lost_first, lost_end) = (found[1].first_seq, found[2].first_seq);
    // Something that opens but cannot be read as a file: a directory of the segment's name.
    fs::remove_file(&middle).unwrap();
    fs::create_dir(&middle).unwrap();
    let (spool, _writer) = Spool::open(dir.path(), small()).unwrap();
    let items = read_all(&spool);
    assert_eq!(spool_corrupt(&items), [(lost_first, lost_end - 1)]);
    assert!(pids(&items).contains(&149));
}

#[test]
fn segments_removed_while_stopped_are_gaps_and_the_rest_is_delivered() {
    let (dir, middle, _, _) = three_segments_with_target(60);
    let found = segments(dir.path());
    fs::remove_file(&middle).unwrap();
    let (spool, _writer) = Spool::open(dir.path(), small()).unwrap();
    let items = read_all(&spool);
    assert_eq!(
        spool_corrupt(&items),
        [(found[1].first_seq, found[2].first_seq - 1)]
    );
    assert_eq!(
        pids(&items).len() as u64,
        150 - (found[2].first_seq - found[1].first_seq)
    );
}

#[test]
fn a_state_file_that_disagrees_with_the_segments_is_reported_and_nothing_is_lost() {
    for bad in [
        "{garbage".to_owned(),
        r#"{"epoch":1,"acked_seq":0}"#.to_owned(),
        format!(r#"{{"epoch":1,"acked_seq":{}}}"#, u64::MAX),
        String::new(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
        let epoch = spool.epoch();
        writer
            .append(&(0..100).map(|i| event("exec", i)).collect::<Vec<_>>())
            .unwrap();
        writer.close().unwrap();
        drop((spool, writer));
        let state = dir.path().join(state::STATE_FILE);
        if bad.is_empty() {
            fs::remove_file(&state).unwrap();
        } else {
            fs::write(&state, &bad).unwrap();
        }
        let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
        assert_eq!(spool.epoch(), epoch, "{bad}: the segments' epoch");
        assert_eq!(writer.next_seq(), 101, "{bad}");
        writer.tick().unwrap();
        let items = read_all(&spool);
        assert_eq!(pids(&items), (0..100).collect::<Vec<_>>(), "{bad}");
        let damage: Vec<(&str, &str)> = gaps(&items)
            .iter()
            .filter(|g| g.reason == "spool_corrupt")
            .map(|g| (g.kind.as_str(), g.reason.as_str()))
            .collect();
        assert_eq!(damage, [("state", "spool_corrupt")], "{bad}");
        assert_eq!(state::load(dir.path()).unwrap().unwrap().epoch, epoch);
    }
}

#[test]
fn spool_files_are_owner_only_whatever_the_umask_and_looser_ones_are_fixed() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    // The most permissive umask: what the agent creates is owner-only all the same.
    let old = unsafe { libc::umask(0) };
    let (spool, mut writer) = Spool::open(&spool_dir, small()).unwrap();
    writer.append(&[event("exec", 1)]).unwrap();
    writer.close().unwrap();
    unsafe { libc::umask(old) };
    assert_eq!(mode(&spool_dir), 0o700);
    let files: Vec<_> = fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 4, "{files:?}"); // lock, state, run, a segment
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    drop((spool, writer));
    fs::set_permissions(&spool_dir, fs::Permissions::from_mode(0o755)).unwrap();
    for file in &files {
        fs::set_permissions(file, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let _reopened = Spool::open(&spool_dir, small()).unwrap();
    assert_eq!(mode(&spool_dir), 0o700);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} fixed at start", file.display());
    }
}

/// A scratch directory on tmpfs where there is one (fsync is free there: thousands of spools
/// open in a second or two).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// Reads a spool to its end, asserting strictly increasing sequence numbers and at most
/// `bound` items (each covers at least one sequence number, so it must end).
fn read_in_order(spool: &Arc<Spool>, bound: usize) -> Vec<Item> {
    let mut reader = SpoolReader::new(spool.clone());
    let mut items: Vec<Item> = Vec::new();
    loop {
        let more = reader.read(64).expect("damage is reported, not an error");
        if more.is_empty() {
            return items;
        }
        for item in more {
            let first = match &item {
                Item::Event { seq, .. } => *seq,
                Item::Gap(g) => g.first_seq,
            };
            if let Some(last) = items.last() {
                assert!(first > last.last_seq(), "{item:?} after {last:?}");
            }
            assert!(first <= item.last_seq(), "{item:?}");
            items.push(item);
        }
        assert!(items.len() <= bound, "{} items", items.len());
    }
}

#[test]
fn random_and_mutated_segment_files_are_read_in_order_without_error() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(7);
    // A real segment to mutate, and its epoch.
    let source = scratch();
    let (spool, mut writer) = Spool::open(source.path(), small()).unwrap();
    let epoch = spool.epoch();
    writer
        .append(&(0..20).map(|i| event("exec", i)).collect::<Vec<_>>())
        .unwrap();
    drop((spool, writer));
    let real = fs::read(&segments(source.path())[0].path).unwrap();
    for round in 0..2000 {
        let mut bytes = if round % 4 == 0 {
            // Records built with valid checksums but hostile numbers, kinds and lengths.
            let mut bytes = segment::file_header(epoch, 1).to_vec();
            let mut seq = 0u64;
            for _ in 0..rng.random_range(0..12) {
                seq = match rng.random_range(0..4) {
                    0 => rng.random(),
                    1 => seq,
                    _ => seq + rng.random_range(1..4),
                };
                let body: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
                let record_type = if rng.random() {
                    record::RecordType::Event
                } else {
                    record::RecordType::Gap
                };
                record::encode(
                    &mut bytes,
                    record_type,
                    rng.random(),
                    seq,
                    rng.random(),
                    &body,
                );
            }
            bytes
        } else {
            real.clone()
        };
        for _ in 0..rng.random_range(0..6) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..4) {
                0 => bytes[at] = rng.random(),
                1 => bytes.truncate(at),
                2 => bytes.insert(at, rng.random()),
                _ => bytes[at] ^= 1 << rng.random_range(0..8),
            }
        }
        let dir = scratch();
        state::store(
            dir.path(),
            &state::State {
                epoch,
                acked_seq: 0,
            },
        )
        .unwrap();
        fs::write(segment::path(dir.path(), 1), &bytes).unwrap();
        let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
        writer.append(&[event("exec", 1000)]).unwrap();
        let items = read_in_order(&spool, bytes.len() + 4);
        let last_pid = items
            .iter()
            .rev()
            .find_map(|i| decoded(i)?.process.map(|p| p.pid));
        assert_eq!(
            last_pid,
            Some(1000),
            "round {round}: what is written after the damage is delivered"
        );
    }
}

#[test]
fn random_state_and_run_files_never_lose_the_segments() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(8);
    let good_state = r#"{"epoch":5,"acked_seq":0}"#.as_bytes().to_vec();
    let good_run = r#"{"started_unix_ns":1,"stopped_unix_ns":2}"#.as_bytes().to_vec();
    for round in 0..1000 {
        let dir = scratch();
        let (spool, mut writer) = Spool::open(dir.path(), small()).unwrap();
        writer
            .append(&(0..3).map(|i| event("exec", i)).collect::<Vec<_>>())
            .unwrap();
        writer.close().unwrap();
        drop((spool, writer));
        for (name, good) in [
            (state::STATE_FILE, &good_state),
            (runs::RUN_FILE, &good_run),
        ] {
            let mut bytes = if rng.random() {
                good.clone()
            } else {
                (0..rng.random_range(0..40)).map(|_| rng.random()).collect()
            };
            for _ in 0..rng.random_range(0..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random_range(b' '..=b'~');
            }
            fs::write(dir.path().join(name), &bytes).unwrap();
        }
        let (spool, mut writer) = match Spool::open(dir.path(), small()) {
            Ok(opened) => opened,
            Err(e) => panic!("round {round}: {e}"),
        };
        writer.tick().unwrap();
        let items = read_in_order(&spool, 16);
        assert_eq!(pids(&items), [0, 1, 2], "round {round}: {items:?}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Ack(u8),
    Reopen,
    Corrupt(u16),
    /// Removes a segment other than the last one (by hand, a cleaner).
    Remove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(0u8..3, 1..30).prop_map(Op::Append),
        2 => any::<u8>().prop_map(Op::Ack),
        1 => Just(Op::Reopen),
        1 => any::<u16>().prop_map(Op::Corrupt),
        1 => any::<u8>().prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever happens (appends, acks, restarts, a damaged byte anywhere), each event written is
    /// read back exactly once or covered by exactly one Gap, in strictly increasing sequence order.
    #[test]
    fn every_event_is_delivered_once_or_reported_lost(ops in prop::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig { segment_bytes: 2048, ..small() };
        let (mut spool, mut writer) = Spool::open(dir.path(), config.clone()).unwrap();
        let mut next_id = 0u32;
        let mut written: BTreeMap<u64, u32> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(kinds) => {
                    let first = writer.next_seq();
                    let events: Vec<Event> = kinds.iter().map(|k| {
                        next_id += 1;
                        event(["exec", "fork", "exit"][usize::from(*k)], next_id)
                    }).collect();
                    writer.append(&events).unwrap();
                    for (i, e) in events.iter().enumerate() {
                        written.insert(first + i as u64, e.process.as_ref().unwrap().pid);
                    }
                }
                Op::Ack(n) => {
                    let up_to = spool.acked_seq() + u64::from(n % 20);
                    spool.ack(up_to.min(writer.next_seq() - 1)).unwrap();
                }
                Op::Reopen => {
                    spool.persist().unwrap();
                    drop((spool, writer));
                    (spool, writer) = Spool::open(dir.path(), config.clone()).unwrap();
                }
                Op::Remove(n) => {
                    let found = segments(dir.path());
                    if found.len() > 1 {
                        fs::remove_file(&found[usize::from(n) % (found.len() - 1)].path).unwrap();
                    }
                }
                Op::Corrupt(at) => {
                    if let Some(f) = segments(dir.path()).first() {
                        if f.bytes > 0 {
                            flip(&f.path, u64::from(at) % f.bytes);
                        }
                    }
                }
            }
        }
        let acked = spool.acked_seq();
        let items = read_all(&spool);
        let mut last = acked;
        let mut covered = std::collections::BTreeSet::new();
        for item in &items {
            let (first, end) = match item {
                Item::Event { seq, .. } => {
                    let event = decoded(item).unwrap();
                    prop_assert_eq!(written.get(seq).copied(), Some(event.process.as_ref().unwrap().pid));
                    (*seq, *seq)
                }
                Item::Gap(g) => (g.first_seq, g.last_seq),
            };
            prop_assert!(first > last, "sequence order: {} after {}", first, last);
            last = end;
            covered.extend(first..=end);
        }
        for seq in written.keys().filter(|s| **s > acked) {
            prop_assert!(covered.contains(seq), "seq {} neither delivered nor reported", seq);
        }
    }
}
