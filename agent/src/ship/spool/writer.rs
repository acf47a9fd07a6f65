//! The spool's single writer: numbers events, sheds by priority when the spool is full, appends
//! records to the active segment, fsyncs, then publishes how far it got.

use std::{
    fs::File, io::Write, os::unix::fs::MetadataExt, path::PathBuf, sync::Arc, time::Instant,
};

use kestrel_proto::{Event, Gap};
use prost::Message;

use super::{
    io_err,
    priority::{kind_code, ShedReason},
    record::{self, RecordType, HEADER_LEN, MAX_BODY_LEN},
    runs,
    segment::{self, FILE_HEADER_LEN},
    state, SegmentMeta, Spool, SpoolError,
};

/// The segment being appended to.
#[derive(Debug)]
struct Active {
    path: PathBuf,
    file: File,
    /// Bytes in the file (written, maybe not yet synced).
    bytes: u64,
}

/// A record in the write buffer, kept so a failed write can be accounted for.
#[derive(Debug)]
enum Buffered {
    Event { kind: u8, time_unix_ns: u64 },
    Gap(Gap),
}

/// Appends to a [`Spool`]; there is exactly one per open spool ([`Spool::open`] returns it).
#[derive(Debug)]
pub struct SpoolWriter {
    spool: Arc<Spool>,
    active: Option<Active>,
    next_seq: u64,
    buf: Vec<u8>,
    buffered: Vec<Buffered>,
    /// Sequence number of the first record in `buf`.
    buf_first_seq: u64,
    /// The active segment has bytes not yet fsynced and published.
    dirty: bool,
    body: Vec<u8>,
    last_gap_flush: Instant,
}

impl SpoolWriter {
    pub(super) fn new(spool: Arc<Spool>, next_seq: u64) -> SpoolWriter {
        SpoolWriter {
            spool,
            active: None,
            next_seq,
            buf: Vec::with_capacity(256 * 1024),
            buffered: Vec::new(),
            buf_first_seq: next_seq,
            dirty: false,
            body: Vec::with_capacity(4096),
            last_gap_flush: Instant::now(),
        }
    }

    /// The spool this writer appends to.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends `events` (each numbered in turn), or counts them as shed when their kind's share of
    /// the spool is used up; writes due Gap records; then fsyncs and publishes. Blocking file I/O.
    ///
    /// On a write error the events of this call that were not yet durable are counted as lost
    /// (`spool_error`) and their sequence numbers reused; the error is returned for logging.
    pub fn append(&mut self, events: &[Event]) -> Result<(), SpoolError> {
        let config = self.spool.config.clone();
        let mut used = self.spool.used_bytes();
        let mut first_error = None;
        for event in events {
            let kind = kind_code(event.kind_name());
            self.body.clear();
            event.encode(&mut self.body).expect("a Vec grows as needed");
            let len = (HEADER_LEN + self.body.len()) as u64;
            let limit = config.priorities.limit(kind, config.max_bytes);
            if used + len > limit || self.body.len() > MAX_BODY_LEN as usize {
                self.spool
                    .record_shed(ShedReason::SpoolFull, kind, event.time_unix_ns);
                continue;
            }
            let body = std::mem::take(&mut self.body);
            let result = self.push(RecordType::Event, kind, event.time_unix_ns, &body);
            self.body = body;
            match result {
                Ok(overhead) => {
                    used += len + overhead;
                    self.buffered.push(Buffered::Event {
                        kind,
                        time_unix_ns: event.time_unix_ns,
                    });
                }
                Err(e) => {
                    self.spool
                        .record_shed(ShedReason::WriteError, kind, event.time_unix_ns);
                    first_error.get_or_insert(e);
                }
            }
        }
        let result = self.flush_gaps(false).and_then(|()| self.commit());
        match first_error {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Writes due Gap records and makes everything durable (call periodically when idle).
    pub fn tick(&mut self) -> Result<(), SpoolError> {
        self.flush_gaps(false)?;
        self.commit()
    }

    /// Writes every pending Gap record, makes everything durable and tells readers that nothing
    /// more will come.
    pub fn close(&mut self) -> Result<(), SpoolError> {
        let result = self
            .flush_gaps(true)
            .and_then(|()| self.commit())
            // Only a run whose every record is durable ended cleanly.
            .and_then(|()| {
                runs::end(
                    &self.spool.dir,
                    self.spool.started_unix_ns,
                    super::unix_now_ns(),
                )
            });
        self.spool.published.send_modify(|p| p.closed = true);
        result
    }

    /// Turns the shed counts into sequenced Gap records, if `force` or they are due.
    fn flush_gaps(&mut self, force: bool) -> Result<(), SpoolError> {
        if !force && self.last_gap_flush.elapsed() < self.spool.config.gap_interval {
            return Ok(());
        }
        self.last_gap_flush = Instant::now();
        let gaps = self.spool.lock_ledger().take_gaps();
        for mut gap in gaps {
            gap.first_seq = self.next_seq;
            gap.last_seq = self.next_seq;
            tracing::warn!(
                kind = %gap.kind,
                reason = %gap.reason,
                count = gap.count,
                seq = gap.first_seq,
                "events given up; a Gap record reports them"
            );
            let body = gap.encode_to_vec();
            // Gap records are small and rate-limited: they are written even into a full spool.
            self.push(RecordType::Gap, 0, gap.last_time_unix_ns, &body)?;
            self.buffered.push(Buffered::Gap(gap));
        }
        Ok(())
    }

    /// Buffers one record with the next sequence number, closing the active segment first when
    /// the record would take it past `segment_bytes`. Returns the bytes of any segment header
    /// this created (on top of the record itself).
    fn push(
        &mut self,
        record_type: RecordType,
        kind: u8,
        time_unix_ns: u64,
        body: &[u8],
    ) -> Result<u64, SpoolError> {
        let len = (HEADER_LEN + body.len()) as u64;
        let mut overhead = 0;
        if let Some(active) = &self.active {
            let size = active.bytes + self.buf.len() as u64;
            if size > FILE_HEADER_LEN && size + len > self.spool.config.segment_bytes {
                self.commit()?;
                self.roll()?;
            }
        }
        if self.active.is_none() {
            self.start_segment()?;
            overhead = FILE_HEADER_LEN;
        }
        if self.buf.is_empty() {
            self.buf_first_seq = self.next_seq;
        }
        record::encode(
            &mut self.buf,
            record_type,
            kind,
            self.next_seq,
            time_unix_ns,
            body,
        );
        self.next_seq += 1;
        Ok(overhead)
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let (path, file) = segment::create(&self.spool.dir, self.spool.epoch, self.next_seq)?;
        state::sync_dir(&self.spool.dir)?;
        self.spool.lock_index().segments.push_back(SegmentMeta {
            first_seq: self.next_seq,
            path: path.clone(),
            bytes: 0,
            end_seq: None,
        });
        self.active = Some(Active {
            path,
            file,
            bytes: FILE_HEADER_LEN,
        });
        self.dirty = true;
        Ok(())
    }

    /// Closes the active segment (its records are committed) and removes it at once if it is
    /// already fully acknowledged.
    fn roll(&mut self) -> Result<(), SpoolError> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        {
            let mut index = self.spool.lock_index();
            if let Some(meta) = index
                .segments
                .iter_mut()
                .rev()
                .find(|s| s.path == active.path)
            {
                meta.end_seq = Some(self.next_seq);
            }
        }
        self.spool.reclaim()
    }

    /// Writes the buffer to the active segment, fsyncs, and publishes the new end.
    fn commit(&mut self) -> Result<(), SpoolError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        if self.buf.is_empty() && !self.dirty {
            return Ok(());
        }
        let written = active
            .file
            .write_all(&self.buf)
            .and_then(|()| active.file.sync_data());
        if let Err(source) = written {
            return Err(self.write_failed(source));
        }
        active.bytes += self.buf.len() as u64;
        let earliest_event = self
            .buffered
            .iter()
            .filter_map(|record| match record {
                Buffered::Event { time_unix_ns, .. } => Some(*time_unix_ns),
                Buffered::Gap(_) => None,
            })
            .min();
        if let Some(time_unix_ns) = earliest_event {
            self.spool.note_written(self.buf_first_seq, time_unix_ns);
        }
        self.buf.clear();
        self.buffered.clear();
        self.dirty = false;
        let bytes = active.bytes;
        {
            let mut index = self.spool.lock_index();
            let index = &mut *index;
            if let Some(meta) = index
                .segments
                .iter_mut()
                .rev()
                .find(|s| s.path == active.path)
            {
                index.used_bytes += bytes - meta.bytes;
                meta.bytes = bytes;
            }
        }
        let written_seq = self.next_seq - 1;
        self.spool
            .published
            .send_modify(|p| p.written_seq = p.written_seq.max(written_seq));
        // A segment removed from the directory (by hand, by a cleaner) while it is appended to:
        // its records are reported lost by the reader; later ones go to a new segment.
        let removed = active.file.metadata().is_ok_and(|m| m.nlink() == 0);
        if removed {
            tracing::error!(
                segment = %active.path.display(),
                "the active spool segment was removed: continuing in a new one"
            );
            self.roll()?;
        }
        Ok(())
    }

    /// A write or fsync failed: drop what the buffer held (counted as lost, sequence numbers
    /// reused, since none of it was published), cut the file back, and report the error.
    fn write_failed(&mut self, source: std::io::Error) -> SpoolError {
        let active = self.active.as_mut().expect("commit checked");
        let error = io_err(&active.path)(source);
        {
            let mut ledger = self.spool.lock_ledger();
            for record in self.buffered.drain(..) {
                match record {
                    Buffered::Event { kind, time_unix_ns } => {
                        ledger.record(ShedReason::WriteError, kind, time_unix_ns)
                    }
                    Buffered::Gap(gap) if ShedReason::parse(&gap.reason).is_some() => {
                        ledger.restore(&gap)
                    }
                    Buffered::Gap(gap) => ledger.requeue(gap),
                }
            }
        }
        self.buf.clear();
        self.next_seq = self.buf_first_seq;
        if active.file.set_len(active.bytes).is_err() {
            // Readers never go past the published end; start afresh in a new segment.
            let _ = self.roll();
        }
        error
    }
}
