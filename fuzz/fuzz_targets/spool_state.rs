//! The spool's state and run files as found on disk (the input split at its first NUL byte):
//! the spool still opens and the segments beside them are never lost.
#![no_main]

use kestrel_agent::ship::spool::{runs, state, Item, Spool, SpoolConfig, SpoolReader};
use kestrel_proto::{Event, Process};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (state_bytes, run_bytes) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let dir = std::env::temp_dir().join(format!("kestrel-fuzz-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (spool, mut writer) = Spool::open(&dir, SpoolConfig::default()).unwrap();
    let events: Vec<Event> = (1..=3)
        .map(|pid| Event {
            process: Some(Process {
                pid,
                ..Process::default()
            }),
            ..Event::default()
        })
        .collect();
    writer.append(&events).unwrap();
    writer.close().unwrap();
    drop((spool, writer));
    // An epoch of its own: a state file that parses must still match the segments' epoch.
    std::fs::write(dir.join(state::STATE_FILE), state_bytes).unwrap();
    std::fs::write(dir.join(runs::RUN_FILE), run_bytes).unwrap();
    let (spool, mut writer) = Spool::open(&dir, SpoolConfig::default()).unwrap();
    writer.tick().unwrap();
    let mut reader = SpoolReader::new(spool.clone());
    let mut pids = Vec::new();
    loop {
        let more = reader.read(64).unwrap();
        if more.is_empty() {
            break;
        }
        for item in more {
            if let Item::Event { event, .. } = item {
                pids.extend(event.process.map(|p| p.pid));
            }
        }
    }
    assert_eq!(pids, [1, 2, 3], "the segments are delivered");
    drop((spool, writer));
    let _ = std::fs::remove_dir_all(&dir);
});
