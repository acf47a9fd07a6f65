//! An event a rule matched, from a (possibly hostile) agent: the ingress limits, the alert
//! record and its JSON, admission into a real SQLite store, the outbox row read back, every
//! sink's rendering and the delivery recorded (the body the seeded test
//! `collector/tests/alert_records.rs` runs in CI).
#![no_main]

use std::sync::{Mutex, OnceLock};

use kestrel_proto::Event;
use prost::Message;

#[path = "../../collector/tests/alert_record/mod.rs"]
mod alert_record;

use alert_record::AlertRecordPath;

fn path() -> &'static Mutex<AlertRecordPath> {
    static PATH: OnceLock<Mutex<AlertRecordPath>> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kestrel-fuzz-alert-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the fuzz store");
        Mutex::new(AlertRecordPath::open(&dir))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::decode(data) {
        let mut path = path().lock().unwrap_or_else(|e| e.into_inner());
        if let Err(step) = path.run("fuzz-host", event) {
            panic!("{step}");
        }
    }
});
