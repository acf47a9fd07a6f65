//! How long the oldest unacknowledged event has waited: the writer notes the event time of the
//! first record of each commit ([`WriteMarks::note`]), acknowledgements drop the marks they
//! pass ([`WriteMarks::forget_acked`]), and the oldest mark still covering an unacknowledged
//! record gives the age ([`WriteMarks::oldest_unacked_unix_ns`]).
//!
//! Bounded: at most one mark per [`MARK_SPACING`] and [`MAX_MARKS`] in all; when full, every
//! other mark is dropped, so a backlog of hours costs the same memory as one of minutes and the
//! age is still an upper bound (never younger than the truth), coarser the longer the backlog.
//! Records left unacknowledged by an earlier run of the agent carry no mark: their age counts
//! from the time this run opened the spool.

use std::collections::VecDeque;

/// Marks closer together than this (ns) are folded into the earlier one.
pub const MARK_SPACING: u64 = 1_000_000_000;

/// Most marks kept.
pub const MAX_MARKS: usize = 4096;

/// `(first sequence number of a commit, earliest event time in it, ns since the Unix epoch)`,
/// oldest first.
#[derive(Debug, Default)]
pub struct WriteMarks {
    marks: VecDeque<(u64, u64)>,
}

impl WriteMarks {
    /// Records that `first_seq` and what follows it were written holding events from
    /// `time_unix_ns` on.
    pub fn note(&mut self, first_seq: u64, time_unix_ns: u64) {
        if let Some(&(_, last)) = self.marks.back() {
            if time_unix_ns < last.saturating_add(MARK_SPACING) {
                return;
            }
        }
        if self.marks.len() >= MAX_MARKS {
            let mut index = 0;
            self.marks.retain(|_| {
                index += 1;
                index % 2 == 1
            });
        }
        self.marks.push_back((first_seq, time_unix_ns));
    }

    /// Drops the marks that only cover records up to `acked_seq`, keeping the one that covers
    /// `acked_seq + 1`.
    pub fn forget_acked(&mut self, acked_seq: u64) {
        while self
            .marks
            .get(1)
            .is_some_and(|&(seq, _)| seq <= acked_seq + 1)
        {
            self.marks.pop_front();
        }
    }

    /// Event time of the oldest unacknowledged record, at most as late as the truth; `None`
    /// when no mark covers it (records from an earlier run).
    pub fn oldest_unacked_unix_ns(&self, acked_seq: u64) -> Option<u64> {
        self.marks
            .front()
            .filter(|&&(seq, _)| seq <= acked_seq + 1)
            .map(|&(_, time)| time)
    }

    /// Marks held (for tests and bounds).
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// True when no mark is held.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = MARK_SPACING;

    #[test]
    fn the_oldest_unacknowledged_commit_gives_the_time() {
        let mut marks = WriteMarks::default();
        marks.note(1, 10 * S);
        marks.note(5, 20 * S);
        marks.note(9, 30 * S);
        assert_eq!(marks.oldest_unacked_unix_ns(0), Some(10 * S));
        marks.forget_acked(4);
        assert_eq!(marks.oldest_unacked_unix_ns(4), Some(20 * S));
        // Record 6 is in the commit that started at 5: its time is not earlier than 20 s.
        marks.forget_acked(5);
        assert_eq!(marks.oldest_unacked_unix_ns(5), Some(20 * S));
        marks.forget_acked(8);
        assert_eq!(marks.oldest_unacked_unix_ns(8), Some(30 * S));
    }

    #[test]
    fn commits_within_the_spacing_share_the_earlier_mark() {
        let mut marks = WriteMarks::default();
        marks.note(1, 10 * S);
        marks.note(2, 10 * S + S / 2);
        assert_eq!(marks.len(), 1);
        marks.forget_acked(1);
        assert_eq!(marks.oldest_unacked_unix_ns(1), Some(10 * S));
    }

    #[test]
    fn a_long_backlog_stays_bounded_and_never_looks_younger() {
        let mut marks = WriteMarks::default();
        for i in 0..(MAX_MARKS as u64 * 10) {
            marks.note(i * 10 + 1, i * S);
        }
        assert!(marks.len() <= MAX_MARKS);
        // Whatever was acknowledged, the answer is no later than the record's own time.
        for acked in [0, 12_345, 200_000, 409_000] {
            marks.forget_acked(acked);
            let first_unacked = acked + 1;
            let true_time = (first_unacked - 1) / 10 * S;
            let reported = marks.oldest_unacked_unix_ns(acked).expect("covered");
            assert!(
                reported <= true_time,
                "acked {acked}: {reported} > {true_time}"
            );
        }
    }

    #[test]
    fn records_without_a_mark_have_no_time() {
        let mut marks = WriteMarks::default();
        assert_eq!(marks.oldest_unacked_unix_ns(0), None);
        marks.note(100, 5 * S);
        assert_eq!(marks.oldest_unacked_unix_ns(10), None);
    }
}
