//! Segment files: `DIR/seg-<first seq, 20 digits>.spool`, a 32-byte file header (magic, epoch,
//! first sequence number, checksum) followed by records ([`super::record`]).
//!
//! Segments are append-only while active and immutable once closed; a segment is removed only
//! after the state file records that every sequence number in it was acknowledged.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use super::record::{Header, HEADER_LEN};
use super::SpoolError;

/// Size of the file header.
pub const FILE_HEADER_LEN: u64 = 32;

const FILE_MAGIC: &[u8; 8] = b"KSPOOL\x00\x01";

/// Path of the segment whose first record has sequence number `first_seq`.
pub fn path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.spool"))
}

/// The first sequence number encoded in a segment file name, if it is one.
pub fn first_seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".spool")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A segment file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Sequence number of its first record (from the name).
    pub first_seq: u64,
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Every segment in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Found>, SpoolError> {
    let io = |source| SpoolError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(first_seq) = entry.file_name().to_str().and_then(first_seq_of) else {
            continue;
        };
        if first_seq > super::MAX_SEQ {
            tracing::error!(segment = %entry.path().display(), "spool segment name out of range: ignored");
            continue;
        }
        let bytes = entry.metadata().map_err(io)?.len();
        found.push(Found {
            first_seq,
            path: entry.path(),
            bytes,
        });
    }
    found.sort_by_key(|f| f.first_seq);
    Ok(found)
}

/// The file header of a new segment.
pub fn file_header(epoch: u64, first_seq: u64) -> [u8; FILE_HEADER_LEN as usize] {
    let mut out = [0u8; FILE_HEADER_LEN as usize];
    out[0..8].copy_from_slice(FILE_MAGIC);
    out[8..16].copy_from_slice(&epoch.to_le_bytes());
    out[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&out[..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads and checks a segment's file header; returns its epoch and first sequence number, or
/// why the header is unusable.
pub fn read_file_header(file: &mut File) -> io::Result<Result<(u64, u64), String>> {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))?;
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Err("shorter than the segment header".into()))
        }
        Err(e) => return Err(e),
    }
    if &header[0..8] != FILE_MAGIC {
        return Ok(Err("not a spool segment (bad magic)".into()));
    }
    let crc = u32::from_le_bytes(header[28..32].try_into().expect("4 bytes"));
    if crc32fast::hash(&header[..28]) != crc {
        return Ok(Err("segment header checksum mismatch".into()));
    }
    let epoch = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let first_seq = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    Ok(Ok((epoch, first_seq)))
}

/// Creates a new, empty segment (file header only) and returns it open for appending.
pub fn create(dir: &Path, epoch: u64, first_seq: u64) -> Result<(PathBuf, File), SpoolError> {
    let path = path(dir, first_seq);
    let io = |source| SpoolError::Io {
        path: path.clone(),
        source,
    };
    let mut file =
        super::modes::open_private(&path, OpenOptions::new().create_new(true).append(true))?;
    io::Write::write_all(&mut file, &file_header(epoch, first_seq)).map_err(io)?;
    Ok((path, file))
}

/// What the next bytes of a segment hold.
#[derive(Debug)]
pub enum Next {
    /// An intact record.
    Record {
        /// Its header.
        header: Header,
        /// Its body.
        body: Vec<u8>,
    },
    /// The header is intact but the body does not match its checksum: this one record is lost,
    /// the next one starts right after it.
    BodyDamaged {
        /// The intact header (sequence number, kind and time of the lost record).
        header: Header,
        /// Offset of the record in the file.
        offset: u64,
    },
    /// The header is unusable: nothing after this offset in the segment can be trusted.
    HeaderDamaged {
        /// Offset of the bad header.
        offset: u64,
        /// Why it is unusable.
        reason: String,
        /// True when the header bytes are all zero (a tail never written, as after a power loss).
        zeroed: bool,
    },
    /// The record starting here does not fit before the limit (an interrupted write).
    Torn {
        /// Offset of the incomplete record.
        offset: u64,
    },
    /// Exactly at the limit.
    End,
}

/// Reads records one after another from a segment file.
pub struct RecordCursor {
    file: BufReader<File>,
    offset: u64,
}

impl RecordCursor {
    /// A cursor on `file` at the first record (just after the file header).
    pub fn new(file: File) -> io::Result<RecordCursor> {
        let mut file = BufReader::with_capacity(256 * 1024, file);
        file.seek(SeekFrom::Start(FILE_HEADER_LEN))?;
        Ok(RecordCursor {
            file,
            offset: FILE_HEADER_LEN,
        })
    }

    /// Offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record, never past `limit` bytes of the file.
    pub fn next(&mut self, limit: u64) -> io::Result<Next> {
        let offset = self.offset;
        if offset >= limit {
            return Ok(Next::End);
        }
        if offset + HEADER_LEN as u64 > limit {
            return Ok(Next::Torn { offset });
        }
        let mut bytes = [0u8; HEADER_LEN];
        self.file.read_exact(&mut bytes)?;
        let header = match Header::decode(&bytes) {
            Ok(header) => header,
            Err(e) => {
                // Nothing after a bad header can be located: stay put.
                self.file.seek_relative(-(HEADER_LEN as i64))?;
                return Ok(Next::HeaderDamaged {
                    offset,
                    reason: e.to_string(),
                    zeroed: bytes.iter().all(|b| *b == 0),
                });
            }
        };
        if offset + header.record_len() > limit {
            self.file.seek_relative(-(HEADER_LEN as i64))?;
            return Ok(Next::Torn { offset });
        }
        let mut body = vec![0u8; header.len as usize];
        self.file.read_exact(&mut body)?;
        self.offset = offset + header.record_len();
        if header.body_matches(&body) {
            Ok(Next::Record { header, body })
        } else {
            Ok(Next::BodyDamaged { header, offset })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_strangers_are_ignored() {
        let dir = Path::new("/spool");
        let p = path(dir, 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "seg-00000000000000000042.spool");
        assert_eq!(first_seq_of(name), Some(42));
        assert_eq!(first_seq_of("seg-42.spool"), None);
        assert_eq!(first_seq_of("state"), None);
    }

    #[test]
    fn file_header_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = create(dir.path(), 5, 9).unwrap();
        drop(file);
        let mut file = File::open(&path).unwrap();
        assert_eq!(read_file_header(&mut file).unwrap(), Ok((5, 9)));
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let mut file = File::open(&path).unwrap();
        assert!(read_file_header(&mut file).unwrap().is_err());
    }
}
