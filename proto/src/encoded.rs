//! Agent messages kept in their protobuf encoding, so that the agent sends events straight
//! from its spool (which holds each event encoded) without decoding every one into structs,
//! re-encoding it for the wire and freeing it: over a file storm that round trip was about a
//! quarter of the agent's CPU.

use prost::bytes::{BufMut, Bytes};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;

use crate::codec::{CheckedCodec, CheckedDecoder};
use crate::v1::{AgentMessage, CollectorMessage};

/// `AgentMessage.batch` in kestrel.proto (the tests check these against prost's encoding).
const AGENT_MESSAGE_BATCH: u32 = 2;
/// `EventBatch.first_seq`.
const BATCH_FIRST_SEQ: u32 = 1;
/// `EventBatch.events`.
const BATCH_EVENTS: u32 = 2;
/// `Event.seq`.
const EVENT_SEQ: u32 = 3;

/// An [`AgentMessage`] in its protobuf encoding, as the agent's stream sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAgentMessage(Bytes);

impl EncodedAgentMessage {
    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&AgentMessage> for EncodedAgentMessage {
    fn from(message: &AgentMessage) -> Self {
        EncodedAgentMessage(message.encode_to_vec().into())
    }
}

/// Builds the encoding of an `AgentMessage` holding one `EventBatch` out of events that are
/// already encoded, in sequence order.
#[derive(Debug)]
pub struct BatchEncoder {
    first_seq: u64,
    events: usize,
    /// The `EventBatch.events` fields written so far.
    encoded_events: Vec<u8>,
}

impl BatchEncoder {
    /// An empty batch whose first event will carry `first_seq`.
    pub fn new(first_seq: u64) -> BatchEncoder {
        BatchEncoder {
            first_seq,
            events: 0,
            encoded_events: Vec::new(),
        }
    }

    /// The sequence number the next event must carry to belong to this batch.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.events as u64
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.events
    }

    /// True before the first [`push`](Self::push).
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Appends `event`, an encoded `Event`, stamped with [`next_seq`](Self::next_seq): the
    /// `seq` field is written after the event's own fields, and in protobuf the last value of
    /// a field is the one that counts.
    pub fn push(&mut self, event: &[u8]) {
        let seq = self.next_seq();
        let stamp_len = key_len(EVENT_SEQ) + encoded_len_varint(seq);
        let len = event.len() + stamp_len;
        let out = &mut self.encoded_events;
        out.reserve(key_len(BATCH_EVENTS) + encoded_len_varint(len as u64) + len);
        encode_key(BATCH_EVENTS, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        out.put_slice(event);
        encode_key(EVENT_SEQ, WireType::Varint, out);
        encode_varint(seq, out);
        self.events += 1;
    }

    /// The encoded `AgentMessage { batch: EventBatch { first_seq, events } }`.
    pub fn finish(self) -> EncodedAgentMessage {
        let batch_len = key_len(BATCH_FIRST_SEQ)
            + encoded_len_varint(self.first_seq)
            + self.encoded_events.len();
        let mut out = Vec::with_capacity(
            key_len(AGENT_MESSAGE_BATCH) + encoded_len_varint(batch_len as u64) + batch_len,
        );
        encode_key(AGENT_MESSAGE_BATCH, WireType::LengthDelimited, &mut out);
        encode_varint(batch_len as u64, &mut out);
        encode_key(BATCH_FIRST_SEQ, WireType::Varint, &mut out);
        encode_varint(self.first_seq, &mut out);
        out.put_slice(&self.encoded_events);
        EncodedAgentMessage(out.into())
    }
}

/// The agent side of the Ingest stream: sends [`EncodedAgentMessage`]s as they are, receives
/// `CollectorMessage`s through the same checked decoder as the generated client.
#[derive(Debug, Clone, Default)]
pub struct AgentStreamCodec {
    inner: CheckedCodec<AgentMessage, CollectorMessage>,
}

/// The encoder of [`AgentStreamCodec`]: copies the encoding into the frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = EncodedAgentMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Codec for AgentStreamCodec {
    type Encode = EncodedAgentMessage;
    type Decode = CollectorMessage;
    type Encoder = EncodedEncoder;
    type Decoder = CheckedDecoder<CollectorMessage>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.inner.decoder()
    }
}

/// Opens the `Ingest.Stream` call on `channel`, sending `messages` as they are encoded and
/// refusing collector messages larger than `max_decoding_message_size`.
pub async fn open_ingest_stream<S>(
    channel: tonic::transport::Channel,
    messages: S,
    max_decoding_message_size: usize,
) -> Result<tonic::codec::Streaming<CollectorMessage>, Status>
where
    S: futures_core::Stream<Item = EncodedAgentMessage> + Send + 'static,
{
    let mut grpc =
        tonic::client::Grpc::new(channel).max_decoding_message_size(max_decoding_message_size);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/kestrel.v1.Ingest/Stream");
    let mut request = tonic::Request::new(messages);
    request
        .extensions_mut()
        .insert(tonic::codegen::GrpcMethod::new(
            "kestrel.v1.Ingest",
            "Stream",
        ));
    Ok(grpc
        .streaming(request, path, AgentStreamCodec::default())
        .await?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::event::Payload;
    use crate::v1::{agent_message, Event, EventBatch, FileEvent, Process};

    fn event(pid: u32, seq: u64) -> Event {
        Event {
            time_unix_ns: 1_700_000_000_000_000_000 + u64::from(pid),
            seq,
            process: Some(Process {
                pid,
                exe: format!("/usr/bin/tool{pid}"),
                argv: vec!["tool".into(), "--flag".into()],
                ..Process::default()
            }),
            payload: Some(Payload::File(FileEvent {
                path: "/etc/shadow".into(),
                ..FileEvent::default()
            })),
            ..Event::default()
        }
    }

    #[test]
    fn a_batch_of_encoded_events_decodes_as_the_batch_prost_would_send() {
        // The spool may hold an event with no seq or a stale one: the batch's numbers win.
        let stored = [event(1, 0), event(2, 99), event(3, 0)];
        let mut encoder = BatchEncoder::new(41);
        for e in &stored {
            encoder.push(&e.encode_to_vec());
        }
        assert_eq!((encoder.len(), encoder.next_seq()), (3, 44));
        let encoded = encoder.finish();
        let expected: AgentMessage = agent_message::Msg::Batch(EventBatch {
            first_seq: 41,
            events: stored
                .iter()
                .zip(41..)
                .map(|(e, seq)| Event { seq, ..e.clone() })
                .collect(),
        })
        .into();
        assert_eq!(AgentMessage::decode(encoded.as_bytes()).unwrap(), expected);
    }

    #[test]
    fn an_empty_batch_and_sequence_zero_encode_as_prost_decodes_them() {
        let encoded = BatchEncoder::new(0).finish();
        let expected: AgentMessage = agent_message::Msg::Batch(EventBatch::default()).into();
        assert_eq!(AgentMessage::decode(encoded.as_bytes()).unwrap(), expected);
    }

    #[test]
    fn a_whole_message_keeps_its_encoding() {
        let hello: AgentMessage = agent_message::Msg::Heartbeat(Default::default()).into();
        let encoded = EncodedAgentMessage::from(&hello);
        assert_eq!(encoded.as_bytes(), hello.encode_to_vec());
    }
}
