//! The durable spool between the pipeline and the shipper: every event is written to disk,
//! numbered, before it is sent, and stays there until the collector acknowledges it.
//!
//! Layout of the spool directory:
//! - `state`: the epoch and the highest acknowledged sequence number ([`state`]);
//! - `seg-<first seq>.spool`: append-only segment files of checksummed records ([`segment`],
//!   [`record`]); a new one starts when the active one reaches `segment_bytes`;
//! - `lock`: held (`flock`) by the running agent, so two agents never share a spool;
//! - `run`: when the current run started and, after a clean stop, when it stopped ([`runs`]).
//!
//! The directory is owner-only (0700) and its files 0600 ([`modes`]).
//!
//! Guarantees:
//! - **Numbering survives restarts.** The epoch is chosen once, when the spool is created, and
//!   stored in `state`; a restarted agent continues after the highest sequence number on disk and
//!   resends everything not acknowledged (the collector drops duplicates by identity, epoch and
//!   sequence).
//! - **Crash-safe ordering.** A record is sent only after it is fsynced; the acknowledged
//!   position is fsynced to `state` before any segment is removed; a torn record at the end of the
//!   last segment (an interrupted write) is cut off at start-up, and was never sent.
//! - **Bounded.** At most `max_bytes` on disk (plus small Gap records). As the bound nears, event
//!   kinds are shed by priority ([`priority`]): low kinds first, exec, credential and module events
//!   last. Each shed event is counted and reported in a sequenced Gap record.
//! - **Damage is reported, not fatal.** A record whose checksum fails becomes a Gap
//!   (`spool_corrupt`) for exactly the sequence numbers it made unreadable, logged with the
//!   segment's path; later records and segments are still delivered.

pub mod age;
pub mod inspect;
pub mod modes;
pub mod priority;
mod reader;
pub mod record;
pub mod runs;
pub mod segment;
mod sender;
pub mod state;
mod writer;

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    fs::File,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::sync::watch;

pub use priority::{Priorities, ShedLedger, ShedReason, Tier};
pub use reader::{Item, SpoolReader};
pub use sender::{run_writer, NotQueued, SpoolSender};
pub use writer::SpoolWriter;

use segment::{Next, RecordCursor};
use state::State;

/// The `[spool]` table: the spool options of `kestrel-agent` (see its `--spool*` flags, which
/// win over these).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// Spool directory (`--spool`).
    pub dir: Option<PathBuf>,
    /// Most bytes the spool may hold (`--spool-max-bytes`, default 256 MiB): a number of bytes
    /// or a size such as `"256MiB"`.
    pub max_bytes: Option<bytesize::ByteSize>,
    /// Size of one segment file (`--spool-segment-bytes`, default 8 MiB), as `max_bytes`.
    pub segment_bytes: Option<bytesize::ByteSize>,
    /// Shedding tier per event kind: `low`, `normal` or `high` (`--spool-priority`).
    pub priority: BTreeMap<String, String>,
}

/// Size bounds and shedding policy of a spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Most bytes the segment files may hold together.
    pub max_bytes: u64,
    /// Size at which the active segment is closed and a new one started.
    pub segment_bytes: u64,
    /// Which kinds are shed first when the spool fills.
    pub priorities: Priorities,
    /// How often counts of shed events are written as Gap records.
    pub gap_interval: Duration,
    /// Longest an event waits in the writer's queue for its burst to fill (one write and one
    /// fsync per burst). 50 ms by default: against 20 ms, an eighth less agent CPU over a
    /// trickle of execs (fewer fsyncs), and still far inside the second an alert may take.
    pub linger: Duration,
}

impl Default for SpoolConfig {
    fn default() -> SpoolConfig {
        SpoolConfig {
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
            priorities: Priorities::default(),
            gap_interval: Duration::from_secs(1),
            linger: Duration::from_millis(50),
        }
    }
}

/// A spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Reading or writing a spool file failed.
    #[error("spool {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A spool file does not hold what it should.
    #[error("spool {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the spool directory.
    #[error("spool directory {} is in use by another agent", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How far the writer has durably written, as seen by readers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Every sequence number up to this one is on disk (or was acknowledged, or is reported lost).
    pub written_seq: u64,
    /// The writer has stopped: nothing more will be written in this run.
    pub closed: bool,
}

/// One segment as the index knows it.
#[derive(Debug, Clone)]
struct SegmentMeta {
    first_seq: u64,
    path: PathBuf,
    /// Bytes that are durably written and may be read.
    bytes: u64,
    /// First sequence number after this segment; `None` while the writer appends to it.
    end_seq: Option<u64>,
}

#[derive(Debug)]
struct Index {
    segments: VecDeque<SegmentMeta>,
    acked_seq: u64,
    persisted_acked: u64,
    persisted_at: Instant,
    used_bytes: u64,
}

/// The spool shared by its writer, its reader and whoever acknowledges; see the module docs.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    epoch: u64,
    /// When this run of the agent opened the spool, ns since the Unix epoch.
    started_unix_ns: u64,
    index: Mutex<Index>,
    published: watch::Sender<Published>,
    ledger: Mutex<ShedLedger>,
    /// When the unacknowledged records were written (see [`age`]).
    marks: Mutex<age::WriteMarks>,
    reported_damage: Mutex<HashSet<(PathBuf, u64)>>,
    /// Events queued by [`SpoolSender`]s and not yet taken by the writer.
    queued: AtomicU64,
    _lock: File,
}

/// The acknowledged position is written to `state` at least this often while acks arrive.
const PERSIST_INTERVAL: Duration = Duration::from_secs(5);

impl Spool {
    /// Opens (creating when missing) the spool in `dir`: takes its lock, recovers the epoch and
    /// acknowledged position, cuts off a torn tail, removes acknowledged segments, and returns
    /// the shared spool with the one writer that appends to it.
    pub fn open(dir: &Path, config: SpoolConfig) -> Result<(Arc<Spool>, SpoolWriter), SpoolError> {
        modes::secure_dir(dir)?;
        let lock_path = dir.join("lock");
        let lock = modes::open_private(
            &lock_path,
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true),
        )?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => SpoolError::Locked {
                path: dir.to_owned(),
            },
            std::fs::TryLockError::Error(source) => SpoolError::Io {
                path: lock_path.clone(),
                source,
            },
        })?;

        let found = segment::list(dir)?;
        let loaded = state::load(dir).and_then(|state| match state {
            Some(state) => check_state(dir, state, &found).map(Some),
            None if found.is_empty() => Ok(None),
            None => Err(SpoolError::Corrupt {
                path: dir.join(state::STATE_FILE),
                reason: format!("state file missing beside {} segments", found.len()),
            }),
        });
        let (state, state_damage) = match loaded {
            Ok(Some(state)) => (state, None),
            Ok(None) => {
                let state = recover_state(&found);
                state::store(dir, &state)?;
                (state, None)
            }
            Err(e) => {
                tracing::error!(error = %e, "spool state unusable: recovering it from the segments (their unacknowledged events are resent)");
                let state = recover_state(&found);
                state::store(dir, &state)?;
                (state, Some(e))
            }
        };

        let mut segments: VecDeque<SegmentMeta> = found
            .iter()
            .enumerate()
            .map(|(i, f)| SegmentMeta {
                first_seq: f.first_seq,
                path: f.path.clone(),
                bytes: f.bytes,
                end_seq: found.get(i + 1).map(|n| n.first_seq),
            })
            .collect();
        let mut next_seq = state.acked_seq + 1;
        let mut last_spooled_unix_ns = None;
        if let Some(tail) = segments.back_mut() {
            let (tail_next, last_time) = scan_tail(tail, state.epoch)?;
            last_spooled_unix_ns = last_time;
            tail.end_seq = Some(tail_next.max(tail.first_seq));
            next_seq = next_seq.max(tail_next);
            if tail_next <= tail.first_seq {
                // No record in it (all torn): the writer will start a segment with this name.
                let empty = segments.pop_back().expect("tail exists");
                std::fs::remove_file(&empty.path).map_err(io_err(&empty.path))?;
            }
        }
        // Closed segments whose every sequence number is acknowledged are no longer needed.
        while segments
            .front()
            .is_some_and(|s| s.end_seq.is_some_and(|end| end <= state.acked_seq + 1))
        {
            let gone = segments.pop_front().expect("front exists");
            remove_segment(&gone.path)?;
        }
        let used_bytes = segments.iter().map(|s| s.bytes).sum();
        tracing::info!(
            dir = %dir.display(),
            epoch = state.epoch,
            acked_seq = state.acked_seq,
            next_seq,
            segments = segments.len(),
            bytes = used_bytes,
            "spool opened"
        );

        let (published, _) = watch::channel(Published {
            written_seq: next_seq - 1,
            closed: false,
        });
        let spool = Arc::new(Spool {
            dir: dir.to_owned(),
            config,
            epoch: state.epoch,
            started_unix_ns: unix_now_ns(),
            index: Mutex::new(Index {
                segments,
                acked_seq: state.acked_seq,
                persisted_acked: state.acked_seq,
                persisted_at: Instant::now(),
                used_bytes,
            }),
            published,
            ledger: Mutex::new(ShedLedger::default()),
            marks: Mutex::new(age::WriteMarks::default()),
            reported_damage: Mutex::new(HashSet::new()),
            queued: AtomicU64::new(0),
            _lock: lock,
        });
        if let Some(gap) = runs::begin(dir, last_spooled_unix_ns, spool.started_unix_ns)? {
            tracing::warn!(
                reason = %gap.reason,
                from_unix_ns = gap.first_time_unix_ns,
                to_unix_ns = gap.last_time_unix_ns,
                "no agent observed this host in the meantime; a Gap record reports the window"
            );
            spool.report_gap(gap);
        }
        if state_damage.is_some() {
            // Nothing is known lost (the segments are resent), but a state file does not break
            // by itself: the collector hears of it.
            spool.report_gap(kestrel_proto::Gap {
                kind: "state".to_owned(),
                count: 0,
                first_time_unix_ns: spool.started_unix_ns,
                last_time_unix_ns: spool.started_unix_ns,
                reason: "spool_corrupt".to_owned(),
                ..kestrel_proto::Gap::default()
            });
        }
        let writer = SpoolWriter::new(spool.clone(), next_seq);
        Ok((spool, writer))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The epoch of this spool's sequence numbers.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// The first sequence number not yet acknowledged.
    pub fn first_unacked_seq(&self) -> u64 {
        self.lock_index().acked_seq + 1
    }

    /// The highest acknowledged sequence number (0: none).
    pub fn acked_seq(&self) -> u64 {
        self.lock_index().acked_seq
    }

    /// Bytes the segment files hold.
    pub fn used_bytes(&self) -> u64 {
        self.lock_index().used_bytes
    }

    /// Records written but not acknowledged.
    pub fn unacked(&self) -> u64 {
        let written = self.published.borrow().written_seq;
        written.saturating_sub(self.acked_seq())
    }

    /// Events given up since the spool was opened (spool full, queue full, write errors).
    pub fn shed_total(&self) -> u64 {
        self.lock_ledger().total
    }

    /// Events handed to a [`SpoolSender`] that the writer has not taken yet.
    pub fn queue_depth(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues a Gap produced elsewhere in the agent (for example, kernel ring buffer drops) to be
    /// written as a sequenced Gap record, so it reaches the collector exactly once. An empty
    /// `reason` becomes `kernel`.
    pub fn report_gap(&self, mut gap: kestrel_proto::Gap) {
        if gap.reason.is_empty() {
            gap.reason = "kernel".to_owned();
        }
        self.lock_ledger().report(gap);
    }

    /// Watches how far the writer has written.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.published.subscribe()
    }

    /// Records that the collector stored everything up to `up_to_seq`: removes the segments that
    /// became unnecessary, after writing the new position to `state`. Blocking file I/O.
    pub fn ack(&self, up_to_seq: u64) -> Result<(), SpoolError> {
        let written = self.published.borrow().written_seq;
        let mut index = self.lock_index();
        let up_to_seq = up_to_seq.min(written);
        if up_to_seq <= index.acked_seq {
            return Ok(());
        }
        index.acked_seq = up_to_seq;
        self.lock_marks().forget_acked(up_to_seq);
        self.reclaim_locked(&mut index)
    }

    /// How long the oldest record not yet acknowledged has waited since its event happened
    /// (an upper bound, see [`age`]); zero when everything written is acknowledged. Records
    /// left from an earlier run count from when this run opened the spool.
    pub fn oldest_unacked_age(&self) -> Duration {
        let acked = self.acked_seq();
        if self.published.borrow().written_seq <= acked {
            return Duration::ZERO;
        }
        let since = self
            .lock_marks()
            .oldest_unacked_unix_ns(acked)
            .unwrap_or(self.started_unix_ns);
        Duration::from_nanos(unix_now_ns().saturating_sub(since))
    }

    /// Notes that a commit starting at `first_seq` held events from `time_unix_ns` on.
    fn note_written(&self, first_seq: u64, time_unix_ns: u64) {
        self.lock_marks().note(first_seq, time_unix_ns);
    }

    fn lock_marks(&self) -> MutexGuard<'_, age::WriteMarks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the closed segments that are fully acknowledged (after persisting the position).
    fn reclaim(&self) -> Result<(), SpoolError> {
        self.reclaim_locked(&mut self.lock_index())
    }

    fn reclaim_locked(&self, index: &mut Index) -> Result<(), SpoolError> {
        let acked = index.acked_seq;
        let removable = index
            .segments
            .iter()
            .take_while(|s| s.end_seq.is_some_and(|end| end <= acked + 1))
            .count();
        let stale =
            index.persisted_acked != acked && index.persisted_at.elapsed() >= PERSIST_INTERVAL;
        if (removable > 0 && index.persisted_acked != acked) || stale {
            self.persist_locked(index)?;
        }
        for _ in 0..removable {
            let gone = index.segments.pop_front().expect("counted");
            remove_segment(&gone.path)?;
            index.used_bytes -= gone.bytes;
        }
        Ok(())
    }

    /// Writes the acknowledged position to `state` now (on shutdown). Blocking file I/O.
    pub fn persist(&self) -> Result<(), SpoolError> {
        let mut index = self.lock_index();
        if index.persisted_acked != index.acked_seq {
            self.persist_locked(&mut index)?;
        }
        Ok(())
    }

    fn persist_locked(&self, index: &mut Index) -> Result<(), SpoolError> {
        state::store(
            &self.dir,
            &State {
                epoch: self.epoch,
                acked_seq: index.acked_seq,
            },
        )?;
        index.persisted_acked = index.acked_seq;
        index.persisted_at = Instant::now();
        Ok(())
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_ledger(&self) -> MutexGuard<'_, ShedLedger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an event given up before it reached the spool.
    pub fn record_shed(&self, reason: ShedReason, kind: u8, time_unix_ns: u64) {
        self.lock_ledger().record(reason, kind, time_unix_ns);
    }

    /// Logs damage at `offset` of `path` once per run; returns whether this call logged it.
    fn first_report(&self, path: &Path, offset: u64) -> bool {
        self.reported_damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((path.to_owned(), offset))
    }
}

/// Removes a segment that is no longer needed; one already gone (removed by hand) is logged,
/// not an error, so that acknowledgements keep being recorded.
fn remove_segment(path: &Path) -> Result<(), SpoolError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(segment = %path.display(), "spool segment already removed");
            Ok(())
        }
        Err(source) => Err(SpoolError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Sequence numbers above this are not believed (a real spool never gets near it), so that
/// arithmetic on them cannot overflow.
pub(crate) const MAX_SEQ: u64 = 1 << 62;

/// Checks a state file that parsed against the segments beside it: its epoch must be theirs
/// and its position in range.
fn check_state(dir: &Path, state: State, found: &[segment::Found]) -> Result<State, SpoolError> {
    let corrupt = |reason: String| SpoolError::Corrupt {
        path: dir.join(state::STATE_FILE),
        reason,
    };
    if state.epoch == 0 {
        return Err(corrupt("epoch 0".into()));
    }
    if state.acked_seq > MAX_SEQ {
        return Err(corrupt(format!(
            "acknowledged position {} is out of range",
            state.acked_seq
        )));
    }
    for f in found {
        let header = File::open(&f.path).and_then(|mut file| segment::read_file_header(&mut file));
        if let Ok(Ok((epoch, _))) = header {
            if epoch != state.epoch {
                return Err(corrupt(format!(
                    "epoch {}, but segment {} is of epoch {epoch}",
                    state.epoch,
                    f.path.display()
                )));
            }
            break;
        }
    }
    Ok(state)
}

/// State for a spool whose state file is missing or unusable: the epoch of the oldest segment
/// (everything in it is resent; the collector drops what it already has), or a new epoch.
fn recover_state(found: &[segment::Found]) -> State {
    for f in found {
        let header = File::open(&f.path).and_then(|mut file| segment::read_file_header(&mut file));
        if let Ok(Ok((epoch, _))) = header {
            return State {
                epoch,
                acked_seq: found[0].first_seq.saturating_sub(1),
            };
        }
    }
    State {
        // The current time: it differs from every earlier epoch.
        epoch: unix_now_ns(),
        acked_seq: found.first().map_or(0, |f| f.first_seq.saturating_sub(1)),
    }
}

/// The current time in nanoseconds since the Unix epoch (at least 1).
fn unix_now_ns() -> u64 {
    crate::clock::now_unix_ns().max(1)
}

/// Scans the last segment left by an earlier run and returns the sequence number after it and
/// the time of its last readable record.
/// A torn record at its end (an interrupted write: it was never sent) is cut off. Damage that
/// hides how many records follow makes the count an upper bound (each record needs at least a
/// header), so no sequence number that may have been sent is ever reused.
fn scan_tail(tail: &mut SegmentMeta, epoch: u64) -> Result<(u64, Option<u64>), SpoolError> {
    let path = tail.path.clone();
    let upper_bound = |from_offset: u64, after_seq: u64| {
        after_seq + 1 + tail.bytes.saturating_sub(from_offset) / record::HEADER_LEN as u64
    };
    let opened = File::open(&path).and_then(|mut file| {
        let header = segment::read_file_header(&mut file)?;
        Ok((file, header))
    });
    let (file, header) = match opened {
        Ok(opened) => opened,
        Err(e) if reader::unreadable(&e) => {
            tracing::error!(segment = %path.display(), error = %e, "spool segment unreadable");
            return Ok((upper_bound(0, tail.first_seq.saturating_sub(1)), None));
        }
        Err(source) => return Err(SpoolError::Io { path, source }),
    };
    match header {
        Ok((found_epoch, _)) if found_epoch == epoch => {}
        Ok((found_epoch, _)) => {
            tracing::error!(segment = %path.display(), found_epoch, epoch, "spool segment from another epoch");
            return Ok((upper_bound(0, tail.first_seq.saturating_sub(1)), None));
        }
        Err(reason) => {
            tracing::error!(segment = %path.display(), %reason, "spool segment header damaged");
            return Ok((upper_bound(0, tail.first_seq.saturating_sub(1)), None));
        }
    }
    let mut cursor = RecordCursor::new(file).map_err(io_err(&path))?;
    let mut last = tail.first_seq.saturating_sub(1);
    let mut last_time = None;
    loop {
        match cursor.next(tail.bytes).map_err(io_err(&path))? {
            Next::Record { header, .. } | Next::BodyDamaged { header, .. }
                if header.seq <= MAX_SEQ =>
            {
                last = last.max(header.seq);
                last_time = Some(header.time_unix_ns);
            }
            Next::Record { header, .. } | Next::BodyDamaged { header, .. } => {
                let offset = cursor.offset() - header.record_len();
                tracing::error!(segment = %path.display(), offset, seq = header.seq, "spool record number out of range");
                return Ok((upper_bound(offset, last), last_time));
            }
            Next::End => return Ok((last + 1, last_time)),
            Next::Torn { offset }
            | Next::HeaderDamaged {
                offset,
                zeroed: true,
                ..
            } => {
                tracing::warn!(
                    segment = %path.display(),
                    offset,
                    discarded_bytes = tail.bytes - offset,
                    "spool segment ends in an incomplete record (interrupted write): cut off"
                );
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(offset).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
                tail.bytes = offset;
                return Ok((last + 1, last_time));
            }
            Next::HeaderDamaged { offset, reason, .. } => {
                let bound = upper_bound(offset, last);
                tracing::error!(
                    segment = %path.display(),
                    offset,
                    %reason,
                    next_seq = bound,
                    "spool segment damaged: the records after this offset are reported lost"
                );
                return Ok((bound, last_time));
            }
        }
    }
}

#[cfg(test)]
mod tests;
