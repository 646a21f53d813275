//! Fixed-width sparse indexes, one pair per segment, mapped with memmap2.
//!
//! Indexes are caches: the log wins. They are written through the mapping without fsync
//! on the hot path, flushed when a segment is sealed, and on open they are checked against
//! the log and cut back (or rebuilt) wherever they disagree with it.
//!
//! # File layout (all words little-endian u64)
//!
//! | word | meaning                                                                 |
//! |-----:|-------------------------------------------------------------------------|
//! | 0    | magic: `RIFFLIDX` (offset index) or `RIFFLTIX` (time index), as bytes    |
//! | 1    | low 32 bits: format version `1`; high 32 bits: words per entry (1 or 2)  |
//! | 2..  | entries, `words per entry` words each; an all-zero entry ends the list   |
//!
//! The file is preallocated to hold the most entries a segment can need (one per
//! `index_interval_bytes` of log, plus one) and trimmed to the entries in use at seal.
//! Entry formats are in [`offset`] and [`time`].
//!
//! # Invariants
//! - Entries are strictly increasing in relative position (and in file offset, or
//!   non-decreasing in timestamp), so a lookup is a binary search.
//! - Only the segment's writer appends. It writes an entry's words, then publishes the new
//!   count with a release store; readers load the count (acquire) and read only below it.

pub mod offset;
pub mod time;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::mmap::IndexMap;

const VERSION: u64 = 1;
const HEADER_WORDS: usize = 2;

/// The shape of one index kind.
pub(crate) trait IndexKind {
    const MAGIC: [u8; 8];
    const ENTRY_WORDS: usize;
}

/// A sparse index file of fixed-width entries.
#[derive(Debug)]
pub(crate) struct SparseIndex {
    path: PathBuf,
    file: File,
    map: IndexMap,
    entry_words: usize,
    /// Entries published to readers.
    count: AtomicUsize,
    /// Entries the mapping has room for (shrinks to `count` at seal).
    capacity: AtomicUsize,
}

impl SparseIndex {
    /// Creates (or replaces) an empty index with room for `capacity` entries.
    pub(crate) fn create<K: IndexKind>(path: &Path, capacity: usize) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        crate::io::note_mapped_file(path, true)?;
        let bytes = ((HEADER_WORDS + capacity * K::ENTRY_WORDS) * 8) as u64;
        file.set_len(bytes).map_err(|e| Error::io(path, e))?;
        let map = IndexMap::map(&file, bytes).map_err(|e| Error::io(path, e))?;
        map.word(0).store(u64::from_le_bytes(K::MAGIC), Ordering::Relaxed);
        map.word(1).store(VERSION | ((K::ENTRY_WORDS as u64) << 32), Ordering::Relaxed);
        Ok(SparseIndex {
            path: path.to_path_buf(),
            file,
            map,
            entry_words: K::ENTRY_WORDS,
            count: AtomicUsize::new(0),
            capacity: AtomicUsize::new(capacity),
        })
    }

    /// Opens an existing index and loads its entries up to the first one that is zero or
    /// out of order (`ordered(previous, next)` decides). Returns `None` when the file is
    /// missing or its header is not ours, meaning: rebuild it from the log.
    ///
    /// `capacity` is the most entries the segment can need. A `writable` index (the active
    /// segment's) is grown back to that capacity if it was trimmed; a sealed one is mapped
    /// as it is and can take no more entries.
    pub(crate) fn open<K: IndexKind>(
        path: &Path,
        capacity: usize,
        writable: bool,
        ordered: impl Fn(&[u64], &[u64]) -> bool,
    ) -> Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        crate::io::note_mapped_file(path, false)?;
        let file_bytes = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let want_bytes = ((HEADER_WORDS + capacity * K::ENTRY_WORDS) * 8) as u64;
        if file_bytes < (HEADER_WORDS * 8) as u64 || file_bytes > want_bytes || file_bytes % 8 != 0
        {
            return Ok(None);
        }
        let map_bytes = if writable { want_bytes } else { file_bytes };
        if file_bytes < map_bytes {
            file.set_len(map_bytes).map_err(|e| Error::io(path, e))?;
        }
        let map = IndexMap::map(&file, map_bytes).map_err(|e| Error::io(path, e))?;
        let header_ok = map.word(0).load(Ordering::Relaxed) == u64::from_le_bytes(K::MAGIC)
            && map.word(1).load(Ordering::Relaxed) == VERSION | ((K::ENTRY_WORDS as u64) << 32);
        if !header_ok {
            return Ok(None);
        }
        let index = SparseIndex {
            path: path.to_path_buf(),
            file,
            map,
            entry_words: K::ENTRY_WORDS,
            count: AtomicUsize::new(0),
            capacity: AtomicUsize::new(0),
        };
        let in_file = ((file_bytes as usize / 8) - HEADER_WORDS) / K::ENTRY_WORDS;
        let mut count = 0;
        let mut previous: Option<Vec<u64>> = None;
        while count < in_file {
            let entry = index.read_entry(count);
            if entry.iter().all(|w| *w == 0) {
                break;
            }
            if let Some(p) = &previous {
                if !ordered(p, &entry) {
                    break;
                }
            }
            previous = Some(entry);
            count += 1;
        }
        index.count.store(count, Ordering::Release);
        index.capacity.store(if writable { capacity } else { count }, Ordering::Relaxed);
        Ok(Some(index))
    }

    /// Entries visible to readers.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn word_of(&self, entry: usize, word: usize) -> usize {
        HEADER_WORDS + entry * self.entry_words + word
    }

    /// Reads entry `i`'s words (host order). `i` must be below `len()` for readers.
    pub(crate) fn read_entry(&self, i: usize) -> Vec<u64> {
        (0..self.entry_words)
            .map(|w| u64::from_le(self.map.word(self.word_of(i, w)).load(Ordering::Relaxed)))
            .collect()
    }

    /// Reads word `w` of entry `i` (host order).
    pub(crate) fn read_word(&self, i: usize, w: usize) -> u64 {
        u64::from_le(self.map.word(self.word_of(i, w)).load(Ordering::Relaxed))
    }

    /// Appends an entry and publishes it. Writer only. Returns false if full.
    pub(crate) fn push(&self, words: &[u64]) -> bool {
        assert_eq!(words.len(), self.entry_words);
        let count = self.count.load(Ordering::Relaxed);
        if count >= self.capacity.load(Ordering::Relaxed) {
            return false;
        }
        for (w, value) in words.iter().enumerate() {
            self.map.word(self.word_of(count, w)).store(value.to_le(), Ordering::Relaxed);
        }
        self.count.store(count + 1, Ordering::Release);
        true
    }

    /// Forgets entries from `len` on and zeroes them in the file. Writer only, and only
    /// while no reader can use the dropped entries (at recovery, before readers exist).
    pub(crate) fn truncate(&self, len: usize) {
        let count = self.count.load(Ordering::Relaxed);
        if len >= count {
            return;
        }
        self.count.store(len, Ordering::Release);
        for i in len..count {
            for w in 0..self.entry_words {
                self.map.word(self.word_of(i, w)).store(0, Ordering::Relaxed);
            }
        }
    }

    /// Binary search: the last entry whose key (from `key`) is `<= target`, or `None`.
    pub(crate) fn floor(&self, target: u64, key: impl Fn(&Self, usize) -> u64) -> Option<usize> {
        let len = self.len();
        let (mut lo, mut hi) = (0usize, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(self, mid) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Flushes the mapping and trims the file to the entries in use. Called when a segment
    /// is sealed; the mapping stays valid for the entries below the new length.
    pub(crate) fn seal(&self) -> Result<()> {
        self.map.flush().map_err(|e| Error::io(&self.path, e))?;
        let len = self.len();
        let bytes = ((HEADER_WORDS + len * self.entry_words) * 8) as u64;
        self.file.set_len(bytes).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        self.capacity.store(len, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes dirty pages of the mapping (used at clean shutdown).
    pub(crate) fn flush(&self) -> Result<()> {
        self.map.flush().map_err(|e| Error::io(&self.path, e))
    }
}
