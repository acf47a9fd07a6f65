//! Spool record headers read back from disk (a damaged file must give an error, not a panic).
#![no_main]

use kestrel_agent::ship::spool::record::{Header, HEADER_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = data.get(..HEADER_LEN) {
        let _ = Header::decode(bytes.try_into().expect("HEADER_LEN bytes"));
    }
});
