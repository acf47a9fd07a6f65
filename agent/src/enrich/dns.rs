//! DNS answers the kernel saw processes receive: parsed into the question and its answers, and
//! remembered by address, so that a later connection to an address can name the host it was
//! resolved from (Sigma's `DestinationHostname`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashlink::LruCache;
use kestrel_proto::DnsAnswer;
use simple_dns::{rdata::RData, Packet};

/// Addresses remembered at most: the most recently answered win.
pub const RESOLVED_CAPACITY: usize = 16_384;

/// The answer in a DNS response datagram; `None` for a datagram that is not a response with a
/// question (a query, garbage, or a capture cut before the question ended). `truncated`: the
/// capture is shorter than the datagram.
pub fn parse(bytes: &[u8], truncated: bool) -> Option<DnsAnswer> {
    // Header: id, flags (QR, "this is a response", is the top bit of the third byte), then the
    // question, answer, authority and additional counts.
    if bytes.len() < 12 || bytes[2] & 0x80 == 0 {
        return None;
    }
    if let Ok(packet) = Packet::parse(bytes) {
        return answer_of(&packet, truncated);
    }
    // Cut inside a record: drop the authority and additional sections, then answers from the
    // end, until what was captured parses. The question and the first answers are still worth
    // having.
    let mut cut = bytes.to_vec();
    cut[8..12].fill(0);
    let answers = u16::from_be_bytes([bytes[6], bytes[7]]);
    for kept in (0..=answers).rev() {
        cut[6..8].copy_from_slice(&kept.to_be_bytes());
        if let Ok(packet) = Packet::parse(&cut) {
            return answer_of(&packet, true);
        }
    }
    None
}

fn answer_of(packet: &Packet<'_>, truncated: bool) -> Option<DnsAnswer> {
    let question = packet.questions.first()?;
    let answers = packet
        .answers
        .iter()
        .filter_map(|record| match &record.rdata {
            RData::A(a) => Some(Ipv4Addr::from(a.address).to_string()),
            RData::AAAA(aaaa) => Some(Ipv6Addr::from(aaaa.address).to_string()),
            RData::CNAME(cname) => Some(cname.0.to_string()),
            _ => None,
        })
        .collect();
    Some(DnsAnswer {
        query: question.qname.to_string().trim_end_matches('.').to_owned(),
        query_type: u16::from(question.qtype) as u32,
        rcode: packet.rcode() as u32,
        answers,
        truncated,
    })
}

/// Which name each address was last resolved from, as seen in DNS answers (bounded: least
/// recently answered addresses are forgotten first).
pub struct Resolved {
    names: LruCache<IpAddr, String>,
}

impl Default for Resolved {
    fn default() -> Resolved {
        Resolved::new(RESOLVED_CAPACITY)
    }
}

impl Resolved {
    /// Remembers at most `capacity` addresses.
    pub fn new(capacity: usize) -> Resolved {
        Resolved {
            names: LruCache::new(capacity),
        }
    }

    /// Remembers the question's name for every address `answer` gives.
    pub fn learn(&mut self, answer: &DnsAnswer) {
        for address in &answer.answers {
            if let Ok(ip) = address.parse::<IpAddr>() {
                self.names.insert(ip, answer.query.clone());
            }
        }
    }

    /// The name `ip` was last resolved from, if an answer gave it. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, what a dual-stack socket reports) is looked up as the IPv4 address.
    pub fn name_of(&mut self, ip: &str) -> Option<&str> {
        let ip = match ip.parse().ok()? {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.names.get(&ip).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::{rdata, Name, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

    /// A response to an A query for `name` with a CNAME and two addresses.
    fn response(name: &str) -> Vec<u8> {
        let mut packet = Packet::new_reply(7);
        packet.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        packet.answers.push(ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            60,
            RData::CNAME(rdata::CNAME(Name::new_unchecked("edge.example.net"))),
        ));
        for address in [0x0a01_0203, 0x0a01_0204] {
            packet.answers.push(ResourceRecord::new(
                Name::new_unchecked("edge.example.net"),
                CLASS::IN,
                60,
                RData::A(rdata::A { address }),
            ));
        }
        packet.build_bytes_vec().unwrap()
    }

    #[test]
    fn a_response_gives_its_question_and_answers() {
        let answer = parse(&response("c2.example.com"), false).unwrap();
        assert_eq!(answer.query, "c2.example.com");
        assert_eq!(answer.query_type, 1);
        assert_eq!(answer.rcode, 0);
        assert_eq!(answer.answers, ["edge.example.net", "10.1.2.3", "10.1.2.4"]);
    }

    #[test]
    fn queries_garbage_and_cut_headers_are_not_answers() {
        let mut query = Packet::new_query(7);
        query.questions.push(Question::new(
            Name::new_unchecked("example.com"),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        assert!(parse(&query.build_bytes_vec().unwrap(), false).is_none());
        assert!(parse(b"\\x00\\x07\\x81garbage", false).is_none());
        assert!(parse(&response("example.com")[..5], true).is_none());
    }

    #[test]
    fn a_capture_cut_inside_an_answer_keeps_the_answers_before_it() {
        let full = response("c2.example.com");
        let cut = &full[..full.len() - 2];
        let answer = parse(cut, true).unwrap();
        assert_eq!(answer.query, "c2.example.com");
        assert_eq!(answer.answers, ["edge.example.net", "10.1.2.3"]);
        assert!(answer.truncated);
    }

    #[test]
    fn addresses_are_named_by_the_question_and_the_cache_is_bounded() {
        let mut resolved = Resolved::new(2);
        resolved.learn(&parse(&response("c2.example.com"), false).unwrap());
        assert_eq!(resolved.name_of("10.1.2.3"), Some("c2.example.com"));
        assert_eq!(resolved.name_of("10.1.2.4"), Some("c2.example.com"));
        assert_eq!(
            resolved.name_of("::ffff:10.1.2.4"),
            Some("c2.example.com"),
            "a dual-stack socket's view of the same address"
        );
        assert_eq!(resolved.name_of("10.9.9.9"), None);
        assert_eq!(resolved.name_of("not an address"), None);
        resolved.learn(&DnsAnswer {
            query: "other.example".into(),
            answers: vec!["2001:db8::1".into()],
            ..DnsAnswer::default()
        });
        assert_eq!(resolved.name_of("2001:db8::1"), Some("other.example"));
        assert_eq!(
            resolved.name_of("10.1.2.3"),
            None,
            "the oldest address was forgotten"
        );
    }
}
