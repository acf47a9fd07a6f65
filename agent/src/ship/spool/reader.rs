//! Reads the spool in sequence order for the shipper: events, the writer's Gap records, and Gap
//! items for whatever damage made unreadable.

use std::{fs::File, path::PathBuf, sync::Arc};

use kestrel_proto::{Event, Gap};
use prost::Message;

use super::{
    io_err,
    priority::kind_name,
    record::{Header, RecordType},
    segment::{self, Next, RecordCursor},
    Spool, SpoolError,
};

/// One thing to send, in sequence order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An event with its sequence number.
    Event {
        /// Its sequence number.
        seq: u64,
        /// The event's protobuf encoding as the spool holds it (its own `seq` field unset or
        /// stale: `seq` is the one that counts), sent as it is.
        body: Vec<u8>,
    },
    /// Events given up or lost, covering `first_seq..=last_seq`.
    Gap(Gap),
}

impl Item {
    /// The event decoded and stamped with its sequence number; `None` for a Gap.
    pub fn decode_event(&self) -> Option<Result<Event, prost::DecodeError>> {
        let Item::Event { seq, body } = self else {
            return None;
        };
        Some(Event::decode(&body[..]).map(|event| Event { seq: *seq, ..event }))
    }

    /// The last sequence number this item covers.
    pub fn last_seq(&self) -> u64 {
        match self {
            Item::Event { seq, .. } => *seq,
            Item::Gap(gap) => gap.last_seq,
        }
    }
}

/// The segment being read.
struct Open {
    first_seq: u64,
    path: PathBuf,
    cursor: RecordCursor,
}

/// What the index says about the segment holding a sequence number.
struct Located {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
    end_seq: Option<u64>,
}

/// A cursor over the spool, from the first unacknowledged record on.
pub struct SpoolReader {
    spool: Arc<Spool>,
    next_seq: u64,
    open: Option<Open>,
}

impl SpoolReader {
    /// A reader starting at the first unacknowledged sequence number.
    pub fn new(spool: Arc<Spool>) -> SpoolReader {
        let next_seq = spool.first_unacked_seq();
        SpoolReader {
            spool,
            next_seq,
            open: None,
        }
    }

    /// The next sequence number this reader will return.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Starts over from the first unacknowledged sequence number (after a reconnect).
    pub fn rewind(&mut self) {
        self.next_seq = self.spool.first_unacked_seq();
        self.open = None;
    }

    /// Reads up to `max_events` events (plus any Gap items met on the way) that are durably
    /// written. Returns an empty vector when there is nothing new. Blocking file I/O.
    pub fn read(&mut self, max_events: usize) -> Result<Vec<Item>, SpoolError> {
        let mut items = Vec::new();
        let mut events = 0;
        while events < max_events {
            let written = self.spool.published.borrow().written_seq;
            if self.next_seq > written {
                break;
            }
            let Some(item) = self.next_item(written)? else {
                break;
            };
            if let Item::Event { .. } = item {
                events += 1;
            }
            self.next_seq = item.last_seq() + 1;
            items.push(item);
        }
        Ok(items)
    }

    /// The next item at or after `self.next_seq`, or `None` when the written data is exhausted.
    fn next_item(&mut self, written: u64) -> Result<Option<Item>, SpoolError> {
        loop {
            let Some(at) = self.locate() else {
                // No segment holds it: the files are gone (removed by hand?).
                let gap = self.lost(written + 1, "unknown", 0, 0);
                return Ok(Some(gap));
            };
            if at.first_seq > self.next_seq {
                // The segments before this one are missing.
                return Ok(Some(self.lost(at.first_seq, "unknown", 0, 0)));
            }
            let end = at.end_seq.unwrap_or(written + 1);
            if self
                .open
                .as_ref()
                .is_none_or(|o| o.first_seq != at.first_seq)
            {
                match self.open_segment(&at)? {
                    Ok(open) => self.open = Some(open),
                    Err(reason) => {
                        self.report(&at.path, 0, &reason, end);
                        self.open = None;
                        return Ok(Some(self.lost(end, "unknown", 0, 0)));
                    }
                }
            }
            let open = self.open.as_mut().expect("opened above");
            let next = match open.cursor.next(at.bytes) {
                Ok(next) => next,
                Err(e) if unreadable(&e) => {
                    // Removed, replaced or failing under the reader: what it held is lost,
                    // the segments after it are not.
                    let (path, offset) = (open.path.clone(), open.cursor.offset());
                    self.report(&path, offset, &format!("unreadable: {e}"), end);
                    self.open = None;
                    return Ok(Some(self.lost(end, "unknown", 0, 0)));
                }
                Err(e) => return Err(io_err(&open.path)(e)),
            };
            match next {
                Next::Record { header, body } => {
                    if header.seq < self.next_seq {
                        continue;
                    }
                    if header.seq > self.next_seq {
                        // Records missing inside the segment (should not happen): report them.
                        let path = open.path.clone();
                        let offset = open.cursor.offset() - header.record_len();
                        self.report(&path, offset, "sequence numbers missing", header.seq);
                        self.open = None;
                        return Ok(Some(self.lost(header.seq.min(end), "unknown", 0, 0)));
                    }
                    let path = open.path.clone();
                    return Ok(Some(self.item(&path, header, body)));
                }
                Next::BodyDamaged { header, offset } => {
                    if header.seq < self.next_seq {
                        continue;
                    }
                    let path = open.path.clone();
                    // The header's checksum held, but its number may still be anything.
                    let lost_end = header.seq.saturating_add(1).min(end);
                    self.report(&path, offset, "record checksum mismatch", lost_end);
                    let kind = match header.record_type {
                        RecordType::Event => kind_name(header.kind),
                        RecordType::Gap => "gap",
                    };
                    return Ok(Some(self.lost(
                        lost_end,
                        kind,
                        header.time_unix_ns,
                        header.time_unix_ns,
                    )));
                }
                Next::HeaderDamaged { offset, reason, .. } => {
                    let path = open.path.clone();
                    self.report(&path, offset, &reason, end);
                    self.open = None;
                    return Ok(Some(self.lost(end, "unknown", 0, 0)));
                }
                Next::Torn { offset } => {
                    let path = open.path.clone();
                    self.report(&path, offset, "truncated record", end);
                    self.open = None;
                    return Ok(Some(self.lost(end, "unknown", 0, 0)));
                }
                Next::End => {
                    let Some(end_seq) = at.end_seq else {
                        // The active segment: nothing more written yet.
                        return Ok(None);
                    };
                    self.open = None;
                    if self.next_seq < end_seq {
                        self.report(&at.path, at.bytes, "segment ends early", end_seq);
                        return Ok(Some(self.lost(end_seq, "unknown", 0, 0)));
                    }
                    // On to the next segment.
                }
            }
        }
    }

    /// The last segment whose first sequence number is at most `next_seq`, else the first one.
    fn locate(&self) -> Option<Located> {
        let index = self.spool.lock_index();
        let meta = index
            .segments
            .iter()
            .rev()
            .find(|s| s.first_seq <= self.next_seq)
            .or_else(|| index.segments.front())?;
        Some(Located {
            first_seq: meta.first_seq,
            path: meta.path.clone(),
            bytes: meta.bytes,
            end_seq: meta.end_seq,
        })
    }

    /// Opens the segment at its first record; `Ok(Err(reason))` when it is gone or unusable.
    fn open_segment(&self, at: &Located) -> Result<Result<Open, String>, SpoolError> {
        let unusable = |e: std::io::Error| {
            if unreadable(&e) {
                Ok(Err(format!("unreadable: {e}")))
            } else {
                Err(io_err(&at.path)(e))
            }
        };
        let mut file = match File::open(&at.path) {
            Ok(file) => file,
            Err(e) => return unusable(e),
        };
        let header = match segment::read_file_header(&mut file) {
            Ok(header) => header,
            Err(e) => return unusable(e),
        };
        match header {
            Ok((epoch, _)) if epoch != self.spool.epoch => {
                return Ok(Err(format!(
                    "segment of epoch {epoch}, not this spool's {}",
                    self.spool.epoch
                )))
            }
            Ok(_) => {}
            Err(reason) => return Ok(Err(reason)),
        }
        let cursor = match RecordCursor::new(file) {
            Ok(cursor) => cursor,
            Err(e) => return unusable(e),
        };
        Ok(Ok(Open {
            first_seq: at.first_seq,
            path: at.path.clone(),
            cursor,
        }))
    }

    /// The item a record whose checksum held stands for. An event is sent as the spool holds it:
    /// the checksum shows these are the bytes the writer encoded, and the framing check keeps
    /// a record that is not protobuf (written by something else) from reaching the collector,
    /// which would refuse the whole batch, again at every resend.
    fn item(&self, path: &std::path::Path, header: Header, body: Vec<u8>) -> Item {
        match header.record_type {
            RecordType::Event => match kestrel_proto::wire::check_framing(&body) {
                Ok(()) => Item::Event {
                    seq: header.seq,
                    body,
                },
                Err(e) => {
                    self.report(
                        path,
                        0,
                        &format!("event does not decode: {e}"),
                        header.seq + 1,
                    );
                    self.lost(
                        header.seq + 1,
                        kind_name(header.kind),
                        header.time_unix_ns,
                        header.time_unix_ns,
                    )
                }
            },
            RecordType::Gap => match Gap::decode(&body[..]) {
                Ok(mut gap) => {
                    gap.first_seq = header.seq;
                    gap.last_seq = header.seq;
                    Item::Gap(gap)
                }
                Err(e) => {
                    self.report(
                        path,
                        0,
                        &format!("gap does not decode: {e}"),
                        header.seq + 1,
                    );
                    self.lost(header.seq + 1, "gap", 0, 0)
                }
            },
        }
    }

    /// A Gap for the sequence numbers from `self.next_seq` up to (not including) `end`.
    fn lost(&self, end: u64, kind: &str, first_time: u64, last_time: u64) -> Item {
        let end = end.max(self.next_seq + 1);
        Item::Gap(Gap {
            kind: kind.to_owned(),
            cpu: 0,
            count: end - self.next_seq,
            first_time_unix_ns: first_time,
            last_time_unix_ns: last_time,
            reason: "spool_corrupt".to_owned(),
            first_seq: self.next_seq,
            last_seq: end - 1,
        })
    }

    /// Logs damage once per place and run, naming the segment file.
    fn report(&self, path: &std::path::Path, offset: u64, reason: &str, end: u64) {
        if self.spool.first_report(path, offset) {
            tracing::error!(
                segment = %path.display(),
                offset,
                %reason,
                first_seq = self.next_seq,
                last_seq = end.max(self.next_seq + 1) - 1,
                "spool segment damaged: its unreadable records are reported lost in a Gap"
            );
        }
    }
}

/// True for a read error that says the segment itself is gone or broken (removed, replaced by
/// something else, failing media), so that its records are reported lost; false for a shortage
/// of this process (descriptors, memory) or an interruption, which a later read may not meet.
pub(super) fn unreadable(e: &std::io::Error) -> bool {
    !matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::EAGAIN)
    )
}
