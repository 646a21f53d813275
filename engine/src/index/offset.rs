//! `.idx`: relative position -> file offset of the batch that starts there.
//!
//! One entry is one u64 word: low 32 bits the position relative to the segment base, high
//! 32 bits the file offset of that batch's first byte. The first batch of a segment always
//! has an entry, so the file offset is never 0 (it is at least the segment header size)
//! and a zero word marks the end. A lookup finds the last entry at or before a position;
//! the segment then walks batch headers forward, at most `index_interval_bytes` of them.

use super::{IndexKind, SparseIndex};

pub(crate) struct OffsetKind;

impl IndexKind for OffsetKind {
    const MAGIC: [u8; 8] = *b"RIFFLIDX";
    const ENTRY_WORDS: usize = 1;
}

/// A decoded offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_position: u32,
    pub file_offset: u32,
}

impl OffsetEntry {
    pub(crate) fn encode(self) -> u64 {
        (u64::from(self.file_offset) << 32) | u64::from(self.relative_position)
    }

    pub(crate) fn decode(word: u64) -> Self {
        OffsetEntry { relative_position: word as u32, file_offset: (word >> 32) as u32 }
    }
}

/// Entries must grow in both position and file offset.
pub(crate) fn ordered(previous: &[u64], next: &[u64]) -> bool {
    let (p, n) = (OffsetEntry::decode(previous[0]), OffsetEntry::decode(next[0]));
    n.relative_position > p.relative_position && n.file_offset > p.file_offset
}

pub(crate) fn entry(index: &SparseIndex, i: usize) -> OffsetEntry {
    OffsetEntry::decode(index.read_word(i, 0))
}

/// The last entry at or before `relative_position`.
pub(crate) fn lookup(index: &SparseIndex, relative_position: u32) -> Option<OffsetEntry> {
    index
        .floor(u64::from(relative_position), |ix, i| u64::from(entry(ix, i).relative_position))
        .map(|i| entry(index, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_search() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.idx");
        let index = SparseIndex::create::<OffsetKind>(&path, 16).expect("create");
        for i in 0..10u32 {
            assert!(index.push(&[OffsetEntry {
                relative_position: i * 10,
                file_offset: 64 + i * 4096
            }
            .encode()]));
        }
        assert_eq!(lookup(&index, 0).map(|e| e.file_offset), Some(64));
        assert_eq!(lookup(&index, 55).map(|e| e.relative_position), Some(50));
        assert_eq!(lookup(&index, 1_000).map(|e| e.relative_position), Some(90));
        drop(index);
        let reopened =
            SparseIndex::open::<OffsetKind>(&path, 16, true, ordered).expect("open").expect("ours");
        assert_eq!(reopened.len(), 10);
    }

    #[test]
    fn reopen_stops_at_the_first_disordered_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.idx");
        let index = SparseIndex::create::<OffsetKind>(&path, 16).expect("create");
        index.push(&[OffsetEntry { relative_position: 0, file_offset: 64 }.encode()]);
        index.push(&[OffsetEntry { relative_position: 5, file_offset: 900 }.encode()]);
        index.push(&[OffsetEntry { relative_position: 4, file_offset: 1900 }.encode()]);
        drop(index);
        let reopened =
            SparseIndex::open::<OffsetKind>(&path, 16, true, ordered).expect("open").expect("ours");
        assert_eq!(reopened.len(), 2);
    }

    #[test]
    fn foreign_files_are_not_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.idx");
        std::fs::write(&path, vec![0xFFu8; 64]).expect("write");
        assert!(SparseIndex::open::<OffsetKind>(&path, 16, true, ordered).expect("open").is_none());
        std::fs::write(&path, b"short").expect("write");
        assert!(SparseIndex::open::<OffsetKind>(&path, 16, true, ordered).expect("open").is_none());
    }
}
