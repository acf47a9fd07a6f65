//! Records from the kernel ring buffer: any bytes decode to a record or a typed error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kestrel_agent::kernel::decode::decode(data);
});
