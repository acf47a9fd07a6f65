//! Counting repeated fields in an encoded message without decoding it.

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};

use crate::limits::Repeated;

/// The encoding does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

fn malformed(what: impl ToString) -> Malformed {
    Malformed(what.to_string())
}

/// The most elements of `repeated` in any one message holding it, in the encoded `message`.
/// Errors on an encoding that does not parse (prost would refuse it too).
pub fn most_elements(message: &[u8], repeated: &Repeated) -> Result<usize, Malformed> {
    most_below(message, repeated.path, repeated.number)
}

/// Checks that `message` parses as protobuf fields (keys, varints, lengths within bounds) at
/// its top level, without decoding any of them.
pub fn check_framing(message: &[u8]) -> Result<(), Malformed> {
    // Field 0 is no field number: nothing is counted, every top-level field is walked.
    most_below(message, &[], 0).map(drop)
}

fn most_below(mut buf: &[u8], path: &[u32], number: u32) -> Result<usize, Malformed> {
    let mut count = 0;
    let mut most = 0;
    while buf.has_remaining() {
        let (field, wire_type) = decode_key(&mut buf).map_err(malformed)?;
        match wire_type {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(malformed)?;
                if path.is_empty() && field == number {
                    count += 1;
                }
            }
            WireType::SixtyFourBit => skip(&mut buf, 8)?,
            WireType::ThirtyTwoBit => skip(&mut buf, 4)?,
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).map_err(malformed)?)
                    .map_err(|_| malformed("length out of range"))?;
                if len > buf.len() {
                    return Err(malformed("buffer underflow"));
                }
                let (inner, rest) = buf.split_at(len);
                buf = rest;
                match path.split_first() {
                    None if field == number => count += 1,
                    Some((&next, below)) if next == field => {
                        most = most.max(most_below(inner, below, number)?);
                    }
                    _ => {}
                }
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(malformed("groups are not used by this protocol"));
            }
        }
    }
    Ok(most.max(count))
}

fn skip(buf: &mut &[u8], n: usize) -> Result<(), Malformed> {
    if buf.len() < n {
        return Err(malformed("buffer underflow"));
    }
    buf.advance(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::COUNTED_ON_THE_WIRE;
    use crate::v1::event::Payload;
    use crate::v1::*;
    use prost::Message;

    fn count(msg: &AgentMessage, field: &str) -> usize {
        let repeated = COUNTED_ON_THE_WIRE
            .iter()
            .find(|r| r.field == field)
            .unwrap();
        most_elements(&msg.encode_to_vec(), repeated).unwrap()
    }

    fn exec(ancestors: usize, argv: usize) -> Event {
        Event {
            process: Some(Process {
                argv: vec!["a".into(); argv],
                ..Process::default()
            }),
            payload: Some(Payload::Exec(ExecEvent {
                ancestors: vec![
                    Ancestor {
                        argv: vec![String::new(); argv + 1],
                        ..Ancestor::default()
                    };
                    ancestors
                ],
                ..ExecEvent::default()
            })),
            ..Event::default()
        }
    }

    #[test]
    fn counts_each_repeated_field_at_its_place_and_reports_the_largest() {
        let batch: AgentMessage = agent_message::Msg::Batch(EventBatch {
            first_seq: 7,
            events: vec![exec(3, 5), Event::default(), exec(9, 2)],
        })
        .into();
        assert_eq!(count(&batch, "batch.events"), 3);
        assert_eq!(count(&batch, "exec.ancestors"), 9);
        assert_eq!(count(&batch, "process.argv"), 5);
        assert_eq!(count(&batch, "exec.ancestors.argv"), 6);
        assert_eq!(count(&batch, "hello.capabilities.hooks"), 0);
        assert_eq!(count(&batch, "network.dns.answers"), 0);
    }

    #[test]
    fn counts_pod_labels_as_the_repeated_entries_of_their_map() {
        let labelled: AgentMessage = agent_message::Msg::Batch(EventBatch {
            first_seq: 0,
            events: vec![Event {
                container: Some(Container {
                    pod_labels: (0..7).map(|i| (format!("k{i}"), String::new())).collect(),
                    ..Container::default()
                }),
                ..Event::default()
            }],
        })
        .into();
        assert_eq!(count(&labelled, "container.pod_labels"), 7);
        assert_eq!(count(&labelled, "process.argv"), 0);
    }

    #[test]
    fn framing_is_checked_without_decoding() {
        let event = exec(2, 3).encode_to_vec();
        assert_eq!(check_framing(&event), Ok(()));
        assert!(check_framing(&event[..event.len() - 1]).is_err());
        assert!(check_framing(&[0x0a, 0x05, b'a']).is_err());
    }

    #[test]
    fn counts_hooks_and_dns_answers() {
        let hello: AgentMessage = agent_message::Msg::Hello(Hello {
            capabilities: Some(KernelCapabilities {
                hooks: vec![HookStatus::default(); 4],
                ..KernelCapabilities::default()
            }),
            ..Hello::default()
        })
        .into();
        assert_eq!(count(&hello, "hello.capabilities.hooks"), 4);
        let dns: AgentMessage = agent_message::Msg::Batch(EventBatch {
            first_seq: 0,
            events: vec![Event {
                payload: Some(Payload::Network(NetworkEvent {
                    dns: Some(DnsAnswer {
                        answers: vec!["10.0.0.1".into(); 12],
                        ..DnsAnswer::default()
                    }),
                    ..NetworkEvent::default()
                })),
                ..Event::default()
            }],
        })
        .into();
        assert_eq!(count(&dns, "network.dns.answers"), 12);
    }

    #[test]
    fn agrees_with_the_decoder_on_what_does_not_parse() {
        let batch: AgentMessage = agent_message::Msg::Batch(EventBatch {
            first_seq: 1,
            events: vec![exec(2, 2); 4],
        })
        .into();
        let bytes = batch.encode_to_vec();
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            let decodes = AgentMessage::decode(part).is_ok();
            for repeated in &COUNTED_ON_THE_WIRE {
                if most_elements(part, repeated).is_err() {
                    assert!(!decodes, "cut {cut}: counted as broken, decodes fine");
                }
            }
        }
    }
}
