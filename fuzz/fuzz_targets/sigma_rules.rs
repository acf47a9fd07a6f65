//! Rule files: any text loads as rules or as errors naming the file and reason.
#![no_main]

use std::path::PathBuf;

use kestrel_detect::RuleSet;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RuleSet::from_texts([(PathBuf::from("fuzz.yml"), text)]);
    }
});
