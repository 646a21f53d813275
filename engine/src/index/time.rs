//! `.tix`: arrival timestamp -> relative position of the batch that starts there.
//!
//! One entry is two u64 words: the batch's first arrival timestamp in ms since the Unix
//! epoch (never 0 for real data, so an all-zero entry marks the end), then the position
//! relative to the segment base. Entries are added at the same batches as offset entries.
//! Arrival timestamps are non-decreasing within a shard (the log clamps them), so the
//! entries are sorted by both words and a lookup is a binary search.

use super::{IndexKind, SparseIndex};

pub(crate) struct TimeKind;

impl IndexKind for TimeKind {
    const MAGIC: [u8; 8] = *b"RIFFLTIX";
    const ENTRY_WORDS: usize = 2;
}

/// A decoded time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: u64,
    pub relative_position: u32,
}

impl TimeEntry {
    pub(crate) fn encode(self) -> [u64; 2] {
        [self.timestamp_ms, u64::from(self.relative_position)]
    }
}

pub(crate) fn ordered(previous: &[u64], next: &[u64]) -> bool {
    next[0] >= previous[0] && next[1] > previous[1] && next[1] <= u64::from(u32::MAX)
}

pub(crate) fn entry(index: &SparseIndex, i: usize) -> TimeEntry {
    TimeEntry {
        timestamp_ms: index.read_word(i, 0),
        relative_position: index.read_word(i, 1) as u32,
    }
}

/// The last entry whose batch starts strictly before `timestamp_ms`: every record at or
/// after the target time is at or after this entry's position.
pub(crate) fn lookup_before(index: &SparseIndex, timestamp_ms: u64) -> Option<TimeEntry> {
    let target = timestamp_ms.checked_sub(1)?;
    index.floor(target, |ix, i| entry(ix, i).timestamp_ms).map(|i| entry(index, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_entry_before_the_target_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = SparseIndex::create::<TimeKind>(&dir.path().join("0.tix"), 8).expect("create");
        for (ts, pos) in [(100, 0), (200, 10), (200, 20), (300, 30)] {
            assert!(index.push(&TimeEntry { timestamp_ms: ts, relative_position: pos }.encode()));
        }
        assert_eq!(lookup_before(&index, 100), None);
        assert_eq!(lookup_before(&index, 101).map(|e| e.relative_position), Some(0));
        assert_eq!(lookup_before(&index, 200).map(|e| e.relative_position), Some(0));
        assert_eq!(lookup_before(&index, 250).map(|e| e.relative_position), Some(20));
        assert_eq!(lookup_before(&index, 10_000).map(|e| e.relative_position), Some(30));
    }
}
