//! What a (possibly hostile) agent sends the collector: a protobuf `AgentMessage`, decoded and,
//! for a batch, turned into the JSON the store keeps.
#![no_main]

use kestrel_proto::{agent_message::Msg, AgentMessage};
use prost::Message;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(AgentMessage {
        msg: Some(Msg::Batch(batch)),
    }) = AgentMessage::decode(data)
    {
        for event in &batch.events {
            let _ = serde_json::to_string(event);
            let _ = event.kind_name();
        }
    }
});
