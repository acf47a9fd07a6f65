//! A spool segment file as found on disk (damaged, truncated, crafted): the spool opens, reads
//! it in strictly increasing sequence order without an error, and still delivers what is
//! written after it.
#![no_main]

use kestrel_agent::ship::spool::{segment, state, Item, Spool, SpoolConfig, SpoolReader};
use kestrel_proto::Event;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("kestrel-fuzz-segment-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let epoch = 5;
    state::store(
        &dir,
        &state::State {
            epoch,
            acked_seq: 0,
        },
    )
    .unwrap();
    // A valid file header, so the records themselves are what is fuzzed.
    let mut bytes = segment::file_header(epoch, 1).to_vec();
    bytes.extend_from_slice(data);
    std::fs::write(segment::path(&dir, 1), &bytes).unwrap();
    let (spool, mut writer) = Spool::open(&dir, SpoolConfig::default()).unwrap();
    writer.append(&[Event::default()]).unwrap();
    let mut reader = SpoolReader::new(spool.clone());
    let mut last = 0;
    let mut items = 0;
    loop {
        let more = reader.read(64).expect("damage is reported, not an error");
        if more.is_empty() {
            break;
        }
        for item in more {
            let first = match &item {
                Item::Event { seq, .. } => *seq,
                Item::Gap(gap) => gap.first_seq,
            };
            assert!(
                first > last && first <= item.last_seq(),
                "{item:?} after {last}"
            );
            last = item.last_seq();
            items += 1;
            assert!(items <= bytes.len() + 4, "reading does not end");
        }
    }
    assert_eq!(
        last + 1,
        writer.next_seq(),
        "the event written after it is read"
    );
    drop((spool, writer));
    let _ = std::fs::remove_dir_all(&dir);
});
