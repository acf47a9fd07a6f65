//! One spool record on disk: a fixed 32-byte header protected by its own checksum, then the body
//! (an encoded protocol message) protected by another.
//!
//! Two checksums let a reader tell a damaged body (skip exactly that record: the header still says
//! where the next one starts, and which sequence number and kind were lost) from a damaged header
//! (nothing after it in the segment can be trusted).
//!
//! Header layout, little endian:
//!
//! | bytes  | field                                   |
//! |--------|-----------------------------------------|
//! | 0..2   | magic `0x4B52` ("KR")                   |
//! | 2      | record type (1 event, 2 gap)            |
//! | 3      | event kind code ([`super::priority`])   |
//! | 4..8   | body length                             |
//! | 8..16  | sequence number                         |
//! | 16..24 | event time, ns since the Unix epoch     |
//! | 24..28 | CRC-32 of the body                      |
//! | 28..32 | CRC-32 of bytes 0..28                   |

/// Size of a record header.
pub const HEADER_LEN: usize = 32;

/// Largest body accepted when reading; a larger length means a damaged header.
pub const MAX_BODY_LEN: u32 = 16 * 1024 * 1024;

const MAGIC: u16 = 0x4B52;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// An encoded `kestrel.v1.Event`.
    Event,
    /// An encoded `kestrel.v1.Gap` (events the agent gave up, counted).
    Gap,
}

impl RecordType {
    fn code(self) -> u8 {
        match self {
            RecordType::Event => 1,
            RecordType::Gap => 2,
        }
    }

    fn from_code(code: u8) -> Option<RecordType> {
        match code {
            1 => Some(RecordType::Event),
            2 => Some(RecordType::Gap),
            _ => None,
        }
    }
}

/// A decoded, checksum-verified record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the body holds.
    pub record_type: RecordType,
    /// Event kind code (see [`super::priority::kind_name`]); 0 for gaps.
    pub kind: u8,
    /// Body length in bytes.
    pub len: u32,
    /// Spool sequence number.
    pub seq: u64,
    /// Event time (or the gap's last time), ns since the Unix epoch.
    pub time_unix_ns: u64,
    /// CRC-32 of the body.
    pub body_crc: u32,
}

/// Why a header is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The magic number is wrong.
    #[error("bad record magic {found:#06x}")]
    Magic {
        /// The bytes found instead.
        found: u16,
    },
    /// The header checksum does not match.
    #[error("record header checksum mismatch")]
    Checksum,
    /// Checksum fine but a field is impossible (unknown type, absurd length).
    #[error("record header field out of range: {0}")]
    Field(&'static str),
}

impl Header {
    /// Total size of the record on disk.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Parses and verifies a header.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
        let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(HeaderError::Magic { found: magic });
        }
        let stored_crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..28]) != stored_crc {
            return Err(HeaderError::Checksum);
        }
        let record_type =
            RecordType::from_code(bytes[2]).ok_or(HeaderError::Field("record type"))?;
        let len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if len > MAX_BODY_LEN {
            return Err(HeaderError::Field("body length"));
        }
        Ok(Header {
            record_type,
            kind: bytes[3],
            len,
            seq: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            time_unix_ns: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
            body_crc: u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes")),
        })
    }

    /// True when `body` is the body this header describes.
    pub fn body_matches(&self, body: &[u8]) -> bool {
        body.len() == self.len as usize && crc32fast::hash(body) == self.body_crc
    }
}

/// Appends one record (header and body) to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    record_type: RecordType,
    kind: u8,
    seq: u64,
    time_unix_ns: u64,
    body: &[u8],
) {
    let len = u32::try_from(body.len()).expect("record bodies are bounded by the caller");
    let mut header = [0u8; HEADER_LEN];
    header[0..2].copy_from_slice(&MAGIC.to_le_bytes());
    header[2] = record_type.code();
    header[3] = kind;
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..24].copy_from_slice(&time_unix_ns.to_le_bytes());
    header[24..28].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    let header_crc = crc32fast::hash(&header[..28]);
    header[28..32].copy_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(seq: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, RecordType::Event, 1, seq, 42, body);
        out
    }

    #[test]
    fn encoded_record_decodes_to_the_same_fields() {
        let bytes = one(7, b"hello");
        let header = Header::decode(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(header.record_type, RecordType::Event);
        assert_eq!((header.kind, header.len, header.seq), (1, 5, 7));
        assert_eq!(header.time_unix_ns, 42);
        assert!(header.body_matches(&bytes[HEADER_LEN..]));
        assert_eq!(header.record_len(), bytes.len() as u64);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = one(7, b"some event body");
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let header = Header::decode(damaged[..HEADER_LEN].try_into().unwrap());
            let intact = header
                .as_ref()
                .is_ok_and(|h| h.body_matches(&damaged[HEADER_LEN..]));
            assert!(!intact, "flip of bit {bit} went unnoticed");
            if bit >= HEADER_LEN * 8 {
                assert!(header.is_ok(), "a body flip leaves the header usable");
            }
        }
    }

    #[test]
    fn zeroed_header_is_a_magic_error() {
        assert_eq!(
            Header::decode(&[0; HEADER_LEN]),
            Err(HeaderError::Magic { found: 0 })
        );
    }
}
