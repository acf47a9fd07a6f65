//! DNS answers any process can receive from port 53: parsed with work bounded by the length.
#![no_main]

use kestrel_agent::enrich::dns;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (truncated, bytes) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    };
    let (_, steps) = dns::parse_counting(bytes, truncated);
    assert!(steps <= dns::step_bound(bytes.len()), "{steps} steps");
});
