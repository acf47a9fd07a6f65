//! DNS answers the kernel saw processes receive: parsed into the question and its answers, and
//! remembered by network namespace and address, so that a later connection to an address from
//! the same namespace can name the host it was resolved from (Sigma's `DestinationHostname`).
//!
//! Any process can receive a datagram from port 53, so the parser takes hostile input: it reads
//! each byte of the datagram at most once in place, follows at most [`MAX_POINTERS`]
//! compression pointers per name (each to an earlier offset, so they cannot loop), reads at most
//! [`MAX_RECORDS`] answer records and never retries. Its work is linear in the datagram's length
//! ([`parse_counting`] counts it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashlink::LruCache;
use kestrel_proto::DnsAnswer;

/// Addresses remembered at most: the most recently answered win.
pub const RESOLVED_CAPACITY: usize = 16_384;

/// Answer records read from one datagram at most; later ones are left out (and the answer is
/// marked truncated).
pub const MAX_RECORDS: usize = 64;

/// Compression pointers followed in one name at most (a real name needs a few).
pub const MAX_POINTERS: usize = 16;

/// Longest name on the wire (RFC 1035 §3.1), length bytes included.
const MAX_NAME_LEN: usize = 255;

/// Header length: id, flags, then the question, answer, authority and additional counts.
const HEADER_LEN: usize = 12;

/// Record types read; the rest are skipped.
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;

/// The answer in a DNS response datagram; `None` for a datagram that is not a response with a
/// question (a query, garbage, or a capture cut before the question ended). `truncated`: the
/// capture is shorter than the datagram.
pub fn parse(bytes: &[u8], truncated: bool) -> Option<DnsAnswer> {
    parse_counting(bytes, truncated).0
}

/// [`parse`], also returning how many steps it took: one per byte read (a name's bytes once
/// more when it is decompressed). At most [`step_bound`] of the datagram's length.
pub fn parse_counting(bytes: &[u8], truncated: bool) -> (Option<DnsAnswer>, u64) {
    let mut wire = Wire {
        bytes,
        at: 0,
        steps: 0,
    };
    let answer = wire.response(truncated);
    (answer, wire.steps)
}

/// The most steps [`parse_counting`] may take on a datagram of `len` bytes: each byte once, plus
/// one decompressed name (at most [`MAX_NAME_LEN`] bytes and [`MAX_POINTERS`] two-byte
/// pointers) for the question and for each record read.
pub fn step_bound(len: usize) -> u64 {
    (len + (MAX_RECORDS + 1) * (MAX_NAME_LEN + 2 * MAX_POINTERS + 1)) as u64
}

/// A cursor over the datagram that counts its work.
struct Wire<'a> {
    bytes: &'a [u8],
    at: usize,
    steps: u64,
}

impl Wire<'_> {
    fn response(&mut self, mut truncated: bool) -> Option<DnsAnswer> {
        let header = self.take(HEADER_LEN)?;
        // QR, "this is a response", is the top bit of the third byte.
        if header[2] & 0x80 == 0 {
            return None;
        }
        let rcode = u32::from(header[3] & 0x0f);
        let questions = u16::from_be_bytes([header[4], header[5]]);
        let records = u16::from_be_bytes([header[6], header[7]]) as usize;
        if questions == 0 {
            return None;
        }
        let query = self.name()?;
        let query_type = self.u16()?;
        self.u16()?; // class
        for _ in 1..questions {
            // Each further question takes at least 5 bytes: skipping them is linear.
            self.skip_name()?;
            self.take(4)?;
        }
        let mut answers = Vec::new();
        for read in 0..records {
            if read == MAX_RECORDS {
                truncated = true;
                break;
            }
            match self.record() {
                Some(Some(answer)) => answers.push(answer),
                Some(None) => {}
                None => {
                    // Cut inside a record: the question and the answers before it are still
                    // worth having.
                    truncated = true;
                    break;
                }
            }
        }
        Some(DnsAnswer {
            query: query.trim_end_matches('.').to_owned(),
            query_type: u32::from(query_type),
            rcode,
            answers,
            truncated,
        })
    }

    /// One resource record: `Some(Some(text))` for an address or CNAME target, `Some(None)` for
    /// a record of another type, `None` when it does not fit or is malformed.
    fn record(&mut self) -> Option<Option<String>> {
        self.skip_name()?;
        let kind = self.u16()?;
        self.take(6)?; // class, TTL
        let len = self.u16()? as usize;
        let start = self.at;
        let data = self.take(len)?;
        Some(match (kind, len) {
            (TYPE_A, 4) => Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]).to_string()),
            (TYPE_AAAA, 16) => {
                let octets: [u8; 16] = data.try_into().expect("16 bytes");
                Some(Ipv6Addr::from(octets).to_string())
            }
            (TYPE_CNAME, _) => {
                // The target may point anywhere before it; it must end inside the record.
                let end = self.at;
                self.at = start;
                let target = self.name()?;
                if self.at > end {
                    return None;
                }
                self.at = end;
                Some(target.trim_end_matches('.').to_owned())
            }
            _ => None,
        })
    }

    fn take(&mut self, len: usize) -> Option<&[u8]> {
        let bytes = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        self.steps += len as u64;
        Some(bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Moves past a name in place (labels up to a zero byte or a pointer) without following
    /// its pointer.
    fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.take(1)?[0];
            match len & 0xc0 {
                0x00 if len == 0 => return Some(()),
                0x00 => {
                    self.take(len as usize)?;
                }
                0xc0 => {
                    self.take(1)?;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Reads a name in presentation form (`www.example.com.`), following compression pointers:
    /// each must point before the previous one, at most [`MAX_POINTERS`] of them, the name at most
    /// [`MAX_NAME_LEN`] bytes long. Leaves the cursor after the name's in-place part.
    fn name(&mut self) -> Option<String> {
        let mut text = String::new();
        let mut wire_len = 0;
        let mut pos = self.at;
        // Where the in-place part ends: after the first pointer, or after the terminating zero.
        let mut resume = None;
        let mut pointers = 0;
        // Every pointer must point before the previous one (the first: before itself), so a
        // chain of them cannot loop.
        let mut before = pos;
        loop {
            let &len = self.bytes.get(pos)?;
            self.steps += 1;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    self.at = resume.unwrap_or(pos + 1);
                    if text.is_empty() {
                        text.push('.');
                    }
                    return Some(text);
                }
                0x00 => {
                    wire_len += 1 + len as usize;
                    if wire_len >= MAX_NAME_LEN {
                        return None;
                    }
                    let label = self.bytes.get(pos + 1..pos + 1 + len as usize)?;
                    self.steps += label.len() as u64;
                    push_label(&mut text, label);
                    pos += 1 + len as usize;
                }
                0xc0 => {
                    let &low = self.bytes.get(pos + 1)?;
                    self.steps += 1;
                    let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                    pointers += 1;
                    if target >= before.min(pos) || pointers > MAX_POINTERS {
                        return None;
                    }
                    resume.get_or_insert(pos + 2);
                    before = target;
                    pos = target;
                }
                // The extended label types (0x40, 0x80) are not in use.
                _ => return None,
            }
        }
    }
}

/// Appends `label` and a dot, in RFC 1035 presentation form: printable ASCII as is, a dot or
/// backslash inside the label escaped, other bytes as `\DDD`, so a label cannot pose as two.
fn push_label(text: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                text.push('\\');
                text.push(b as char);
            }
            0x21..=0x7e => text.push(b as char),
            _ => text.push_str(&format!("\\{b:03}")),
        }
    }
    text.push('.');
}

/// Which network an address was resolved in: the network namespace of the receiving thread
/// where known, else its cgroup (which, in a container, stands for the container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// A network namespace, by the inode of `/proc/PID/ns/net`.
    Namespace(u64),
    /// A cgroup, by id, for a process whose namespace could not be read (it had exited).
    Cgroup(u64),
}

/// Where a DNS answer or a connection happened: what the agent knows of its network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    /// The network namespace inode, when the thread (or its process) could be looked at.
    pub namespace: Option<u64>,
    /// The cgroup id from the kernel record.
    pub cgroup: u64,
}

impl Place {
    /// The place of thread `pid` of process `tgid` in cgroup `cgroup`, reading its network
    /// namespace from `/proc` now.
    pub fn of(tgid: u32, pid: u32, cgroup: u64) -> Place {
        use std::os::unix::fs::MetadataExt;
        let namespace = std::fs::metadata(format!("/proc/{tgid}/task/{pid}/ns/net"))
            .or_else(|_| std::fs::metadata(format!("/proc/{tgid}/ns/net")))
            .ok()
            .map(|m| m.ino());
        Place { namespace, cgroup }
    }
}

/// Which name each address was last resolved from in each network, as seen in DNS answers
/// (bounded: least recently answered addresses are forgotten first). An answer received in one
/// network namespace never names a connection in another.
pub struct Resolved {
    names: LruCache<(Network, IpAddr), String>,
}

impl Default for Resolved {
    fn default() -> Resolved {
        Resolved::new(RESOLVED_CAPACITY)
    }
}

impl Resolved {
    /// Remembers at most `capacity` (network, address) pairs.
    pub fn new(capacity: usize) -> Resolved {
        Resolved {
            names: LruCache::new(capacity),
        }
    }

    /// Remembers the question's name for every address `answer` gives, in the network of
    /// `place`: its namespace and its cgroup (for a later connection whose namespace cannot be
    /// read any more).
    pub fn learn(&mut self, place: Place, answer: &DnsAnswer) {
        for address in &answer.answers {
            if let Ok(ip) = address.parse::<IpAddr>() {
                let ip = unmapped(ip);
                if let Some(namespace) = place.namespace {
                    self.names
                        .insert((Network::Namespace(namespace), ip), answer.query.clone());
                }
                self.names
                    .insert((Network::Cgroup(place.cgroup), ip), answer.query.clone());
            }
        }
    }

    /// The name `ip` was last resolved from in the network of `place` (its namespace where
    /// known, else its cgroup). An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a
    /// dual-stack socket reports) is looked up as the IPv4 address.
    pub fn name_of(&mut self, place: Place, ip: &str) -> Option<&str> {
        let ip = unmapped(ip.parse().ok()?);
        let network = match place.namespace {
            Some(namespace) => Network::Namespace(namespace),
            None => Network::Cgroup(place.cgroup),
        };
        self.names.get(&(network, ip)).map(String::as_str)
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use simple_dns::{
        rdata::{self, RData},
        Name, Packet, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE,
    };

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
        packet.build_bytes_vec_compressed().unwrap()
    }

    /// Parses, asserting that the work stayed within the bound.
    fn bounded(bytes: &[u8], truncated: bool) -> Option<DnsAnswer> {
        let (answer, steps) = parse_counting(bytes, truncated);
        assert!(
            steps <= step_bound(bytes.len()),
            "{steps} steps for {} bytes",
            bytes.len()
        );
        answer
    }

    /// A response header claiming `answers` answer records (and as many authority and
    /// additional ones), then a question for `a.`.
    fn header(answers: u16) -> Vec<u8> {
        let [hi, lo] = answers.to_be_bytes();
        let mut d = vec![0, 7, 0x81, 0x80, 0, 1, hi, lo, hi, lo, hi, lo];
        d.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        d
    }

    /// An A record for 10.1.2.3 owned by the question's name (a pointer to offset 12).
    const A_RECORD: [u8; 16] = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3];

    #[test]
    fn a_response_gives_its_question_and_answers() {
        let answer = bounded(&response("c2.example.com"), false).unwrap();
        assert_eq!(answer.query, "c2.example.com");
        assert_eq!(answer.query_type, 1);
        assert_eq!(answer.rcode, 0);
        assert_eq!(answer.answers, ["edge.example.net", "10.1.2.3", "10.1.2.4"]);
        assert!(!answer.truncated);
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
        assert!(bounded(&query.build_bytes_vec().unwrap(), false).is_none());
        assert!(bounded(b"\\x00\\x07\\x81garbage", false).is_none());
        assert!(bounded(&response("example.com")[..5], true).is_none());
    }

    #[test]
    fn a_capture_cut_inside_an_answer_keeps_the_answers_before_it() {
        let full = response("c2.example.com");
        let cut = &full[..full.len() - 2];
        let answer = bounded(cut, true).unwrap();
        assert_eq!(answer.query, "c2.example.com");
        assert_eq!(answer.answers, ["edge.example.net", "10.1.2.3"]);
        assert!(answer.truncated);
        // A cut the capture did not flag still marks the answer incomplete.
        assert!(bounded(cut, false).unwrap().truncated);
    }

    #[test]
    fn huge_counts_do_bounded_work_and_keep_at_most_max_records() {
        // What made the old parser retry 65,536 times: 65,535 answers claimed, a few hundred
        // present, the capture cut inside the next one.
        let mut d = header(u16::MAX);
        while d.len() + A_RECORD.len() <= 4000 {
            d.extend_from_slice(&A_RECORD);
        }
        d.push(0xc0);
        let (answer, steps) = parse_counting(&d, false);
        let answer = answer.unwrap();
        assert_eq!(answer.answers.len(), MAX_RECORDS);
        assert!(answer.answers.iter().all(|a| a == "10.1.2.3"));
        assert!(answer.truncated, "answers were left out");
        assert!(
            steps <= d.len() as u64,
            "{steps} steps for {} bytes",
            d.len()
        );
        // Claimed records that are not there at all.
        let answer = bounded(&header(u16::MAX), false).unwrap();
        assert!(answer.answers.is_empty() && answer.truncated);
    }

    #[test]
    fn pointer_loops_and_long_chains_are_refused_in_bounded_steps() {
        let question_at = |name: &[u8]| {
            let mut d = vec![0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
            d.extend_from_slice(name);
            d.extend_from_slice(&[0, 1, 0, 1]);
            d
        };
        // A pointer to itself, and two labels pointing at each other.
        assert!(bounded(&question_at(&[0xc0, 12]), false).is_none());
        assert!(bounded(&question_at(&[1, b'a', 0xc0, 12]), false).is_none());
        // A forward pointer.
        assert!(bounded(&question_at(&[0xc0, 14, 0]), false).is_none());
        // A chain of pointers, each to the one before it, read as a CNAME target: legal up to
        // MAX_POINTERS pointers, refused beyond.
        let chain = |n: usize| {
            let mut d = header(2);
            let base = d.len() + 12;
            d.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 2 * n as u8]);
            for i in 0..n {
                let target = if i == 0 { 12 } else { base + 2 * (i - 1) };
                d.extend_from_slice(&(0xc000 | target as u16).to_be_bytes());
            }
            d.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2]);
            d.extend_from_slice(&(0xc000 | (base + 2 * (n - 1)) as u16).to_be_bytes());
            bounded(&d, false).unwrap()
        };
        assert_eq!(chain(MAX_POINTERS - 1).answers, ["a"]);
        let refused = chain(MAX_POINTERS);
        assert!(
            refused.answers.is_empty() && refused.truncated,
            "{refused:?}"
        );
        // A name longer than 255 bytes is refused.
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(60);
            long.extend_from_slice(&[b'x'; 60]);
        }
        long.push(0);
        assert!(bounded(&question_at(&long), false).is_none());
    }

    #[test]
    fn compressed_names_decompress_and_odd_labels_are_escaped() {
        let mut d = header(1);
        // CNAME target: the label "b.c\" (with a dot, a backslash and a NUL), then the question.
        d.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 7]);
        d.extend_from_slice(&[4, b'b', b'.', b'\\', 0, 0xc0, 12]);
        let answer = bounded(&d, false).unwrap();
        assert_eq!(answer.answers, ["b\\.\\\\\\000.a"]);
    }

    #[test]
    fn every_built_response_parses_to_its_answers() {
        let mut rng = StdRng::seed_from_u64(12);
        for _ in 0..2000 {
            let label = |rng: &mut StdRng| -> String {
                (0..rng.random_range(1..12))
                    .map(|_| rng.random_range(b'a'..=b'z') as char)
                    .collect()
            };
            let name: String = (0..rng.random_range(1..4))
                .map(|_| label(&mut rng))
                .collect::<Vec<_>>()
                .join(".");
            let mut packet = Packet::new_reply(rng.random());
            packet.questions.push(Question::new(
                Name::new_unchecked(&name),
                QTYPE::TYPE(TYPE::A),
                QCLASS::CLASS(CLASS::IN),
                false,
            ));
            let mut expected = Vec::new();
            let targets: Vec<String> = (0..3)
                .map(|_| format!("{}.{name}", label(&mut rng)))
                .collect();
            for _ in 0..rng.random_range(0..MAX_RECORDS) {
                let owner = Name::new_unchecked(&name);
                let rdata = match rng.random_range(0..4) {
                    0 => {
                        let address: u32 = rng.random();
                        expected.push(Ipv4Addr::from(address).to_string());
                        RData::A(rdata::A { address })
                    }
                    1 => {
                        let address: u128 = rng.random();
                        expected.push(Ipv6Addr::from(address).to_string());
                        RData::AAAA(rdata::AAAA { address })
                    }
                    2 => {
                        let target = &targets[rng.random_range(0..targets.len())];
                        expected.push(target.clone());
                        RData::CNAME(rdata::CNAME(Name::new_unchecked(target)))
                    }
                    _ => RData::TXT(rdata::TXT::new().with_string("v=spf1 -all").unwrap()),
                };
                packet
                    .answers
                    .push(ResourceRecord::new(owner, CLASS::IN, 60, rdata));
            }
            let bytes = if rng.random() {
                packet.build_bytes_vec_compressed().unwrap()
            } else {
                packet.build_bytes_vec().unwrap()
            };
            let answer = bounded(&bytes, false).unwrap();
            assert_eq!(answer.query, name);
            assert_eq!(answer.answers, expected);
            assert!(!answer.truncated);
        }
    }

    #[test]
    fn mutated_and_random_datagrams_never_exceed_the_step_bound() {
        let mut rng = StdRng::seed_from_u64(53);
        let mut seeds = vec![response("c2.example.com"), header(u16::MAX)];
        let mut many = header(u16::MAX);
        for _ in 0..100 {
            many.extend_from_slice(&A_RECORD);
        }
        seeds.push(many);
        for round in 0..5000 {
            let mut d = if round % 5 == 0 {
                let len = rng.random_range(0..600);
                let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                if d.len() > 2 {
                    d[2] |= 0x80;
                }
                d
            } else {
                seeds[round % seeds.len()].clone()
            };
            for _ in 0..rng.random_range(1..8) {
                if d.is_empty() {
                    break;
                }
                let at = rng.random_range(0..d.len());
                match rng.random_range(0..4) {
                    0 => d[at] = rng.random(),
                    1 => d[at] = 0xc0 | (d[at] & 0x3f),
                    2 => d.truncate(at),
                    _ => d.insert(at, rng.random()),
                }
            }
            let _ = bounded(&d, rng.random());
        }
    }

    fn place(namespace: Option<u64>, cgroup: u64) -> Place {
        Place { namespace, cgroup }
    }

    #[test]
    fn addresses_are_named_by_the_question_and_the_cache_is_bounded() {
        // Without a namespace, one entry per address (in the cgroup's network).
        let here = place(None, 9);
        let mut resolved = Resolved::new(2);
        resolved.learn(here, &parse(&response("c2.example.com"), false).unwrap());
        assert_eq!(resolved.name_of(here, "10.1.2.3"), Some("c2.example.com"));
        assert_eq!(resolved.name_of(here, "10.1.2.4"), Some("c2.example.com"));
        assert_eq!(
            resolved.name_of(here, "::ffff:10.1.2.4"),
            Some("c2.example.com"),
            "a dual-stack socket's view of the same address"
        );
        assert_eq!(resolved.name_of(here, "10.9.9.9"), None);
        assert_eq!(resolved.name_of(here, "not an address"), None);
        resolved.learn(
            here,
            &DnsAnswer {
                query: "other.example".into(),
                answers: vec!["2001:db8::1".into()],
                ..DnsAnswer::default()
            },
        );
        assert_eq!(resolved.name_of(here, "2001:db8::1"), Some("other.example"));
        assert_eq!(
            resolved.name_of(here, "10.1.2.3"),
            None,
            "the oldest address was forgotten"
        );
    }

    #[test]
    fn an_answer_in_one_network_namespace_does_not_name_connections_in_another() {
        let mut resolved = Resolved::default();
        let attacker = place(Some(4026532001), 100);
        let victim = place(Some(4026532002), 200);
        resolved.learn(
            victim,
            &DnsAnswer {
                query: "bank.example".into(),
                answers: vec!["10.1.2.3".into()],
                ..DnsAnswer::default()
            },
        );
        resolved.learn(
            attacker,
            &DnsAnswer {
                query: "innocent.example".into(),
                answers: vec!["10.1.2.3".into()],
                ..DnsAnswer::default()
            },
        );
        assert_eq!(resolved.name_of(victim, "10.1.2.3"), Some("bank.example"));
        assert_eq!(
            resolved.name_of(attacker, "10.1.2.3"),
            Some("innocent.example")
        );
        // A connection whose namespace could not be read is named from its cgroup's answers.
        assert_eq!(
            resolved.name_of(place(None, 200), "10.1.2.3"),
            Some("bank.example")
        );
        assert_eq!(resolved.name_of(place(None, 300), "10.1.2.3"), None);
    }

    #[test]
    fn the_place_of_this_thread_is_its_network_namespace() {
        use std::os::unix::fs::MetadataExt;
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let tgid = std::process::id();
        let pid = unsafe { libc::gettid() } as u32;
        assert_eq!(Place::of(tgid, pid, 5), place(Some(own), 5));
        assert_eq!(Place::of(u32::MAX, u32::MAX, 5), place(None, 5));
    }
}
