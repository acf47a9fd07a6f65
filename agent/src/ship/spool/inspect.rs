//! Read-only view of a spool directory, for tools and tests: every record of every segment with
//! where it lives on disk. Takes no lock, so it can look at the spool of a running agent (what
//! it sees may then be a moment old).

use std::{fs::File, path::Path};

use kestrel_proto::Event;
use prost::Message;

use super::{
    io_err,
    priority::kind_name,
    record::{RecordType, HEADER_LEN},
    segment::{self, Next, RecordCursor},
    SpoolError,
};

/// One record found in a segment file.
#[derive(Debug, Clone)]
pub struct RecordInfo {
    /// The segment file.
    pub segment: std::path::PathBuf,
    /// Offset of the record header in the file.
    pub offset: u64,
    /// Offset of the record body in the file.
    pub body_offset: u64,
    /// Sequence number.
    pub seq: u64,
    /// Event kind (`gap` for Gap records).
    pub kind: &'static str,
    /// The event, for intact event records.
    pub event: Option<Event>,
}

/// Every intact-header record in `dir`, oldest first; stops at the first damage in a segment.
pub fn records(dir: &Path) -> Result<Vec<RecordInfo>, SpoolError> {
    let mut out = Vec::new();
    for found in segment::list(dir)? {
        let file = File::open(&found.path).map_err(io_err(&found.path))?;
        let mut cursor = RecordCursor::new(file).map_err(io_err(&found.path))?;
        loop {
            let offset = cursor.offset();
            let (header, event) = match cursor.next(found.bytes).map_err(io_err(&found.path))? {
                Next::Record { header, body } => {
                    let event = match header.record_type {
                        RecordType::Event => Event::decode(&body[..]).ok(),
                        RecordType::Gap => None,
                    };
                    (header, event)
                }
                Next::BodyDamaged { header, .. } => (header, None),
                _ => break,
            };
            out.push(RecordInfo {
                segment: found.path.clone(),
                offset,
                body_offset: offset + HEADER_LEN as u64,
                seq: header.seq,
                kind: match header.record_type {
                    RecordType::Event => kind_name(header.kind),
                    RecordType::Gap => "gap",
                },
                event,
            });
        }
    }
    Ok(out)
}
