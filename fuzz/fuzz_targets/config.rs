//! Configuration files of the agent and the collector (TOML): parse and validate.
#![no_main]

use kestrel_agent::config::AgentConfig;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = toml::from_str::<AgentConfig>(text) {
            let _ = config.problems();
        }
        let _ = kestrel_collector::config::parse(text);
    }
});
