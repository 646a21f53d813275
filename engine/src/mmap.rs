//! The engine's only `unsafe` code: memory maps of segment and index files.
//!
//! Two kinds of mapping exist, and both follow the rules in `DESIGN.md`:
//!
//! - [`LogMap`]: a read-only map of a whole preallocated segment file, taken once and never
//!   remapped. Readers get [`Bytes`] that borrow it (`Bytes::from_owner`, no copy); the map
//!   lives until the last such `Bytes` drops, so a segment deleted by retention stays
//!   readable by whoever still holds bytes of it.
//! - [`IndexMap`]: a read-write map of an index file, accessed only as `AtomicU64` words
//!   through raw pointers, one word at a time.
//!
//! # Invariants that make this sound
//!
//! 1. **One process owns a data directory** (an exclusive lock file, taken at open), so no
//!    other process writes into mapped files.
//! 2. **Readers see only immutable bytes.** A `LogMap` slice is created only for
//!    `[0, durable_len)` of its segment, and bytes below the durable length are never
//!    written again. The writer appends above that length with `pwrite` (a different path
//!    to the same page cache), which never touches bytes a reader can reference.
//! 3. **Nothing mapped is truncated below what may be read.** Segment files are never
//!    truncated while mapped, except the unreferenced region above the durable length when
//!    a segment is sealed, which no slice covers. Retention unlinks whole files. This avoids
//!    SIGBUS, which would kill the process.
//! 4. **No reference spans more than what is valid.** We never hold a `&[u8]` or
//!    `&[AtomicU64]` over a whole mapping: slices are built for exactly the valid range, so
//!    no reference is "dereferenceable" over pages past the end of a trimmed file.

#![allow(unsafe_code)]

use std::fs::File;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// A read-only map of a whole segment file.
#[derive(Debug)]
pub struct LogMap {
    raw: MmapRaw,
}

impl LogMap {
    /// Maps `len` bytes of `file` read-only. `len` is the segment's preallocated size; the
    /// file must be at least that long (it is never shortened below the readable length).
    pub fn map(file: &File, len: u64) -> std::io::Result<Arc<Self>> {
        let len = usize::try_from(len).map_err(|_| std::io::Error::other("segment too large"))?;
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(Arc::new(LogMap { raw }))
    }

    /// Zero-copy bytes `[start, end)` of the segment.
    ///
    /// The caller guarantees (invariant 2) that the range lies below the segment's durable
    /// length, so the bytes are immutable for as long as the mapping lives.
    pub fn bytes(self: &Arc<Self>, start: usize, end: usize) -> Bytes {
        assert!(start <= end, "inverted range {start}..{end}");
        assert!(end <= self.raw.len(), "range end {end} beyond mapping of {}", self.raw.len());
        Bytes::from_owner(LogSlice { map: Arc::clone(self), start, len: end - start })
    }

    /// A borrowed view of `[start, end)` for in-place scans (recovery, lookups). Same
    /// contract as [`LogMap::bytes`].
    pub fn slice(&self, start: usize, end: usize) -> &[u8] {
        assert!(start <= end, "inverted range {start}..{end}");
        assert!(end <= self.raw.len(), "range end {end} beyond mapping of {}", self.raw.len());
        // SAFETY: the range is inside the live mapping (checked above), the mapping outlives
        // the returned borrow of `self`, and by invariant 2 no one writes these bytes while
        // they can be read. u8 has no alignment or validity requirements.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(start), end - start) }
    }

    /// Asks the kernel to read `[start, end)` ahead, so that a consumer catching up from a
    /// cold segment does not stall its thread on page faults one page at a time.
    pub fn will_need(&self, start: usize, end: usize) {
        let end = end.min(self.raw.len());
        if start < end {
            // Advice is only a hint; a failure changes nothing we rely on.
            let _ = self.raw.advise_range(memmap2::Advice::WillNeed, start, end - start);
        }
    }
}

/// The owner behind a zero-copy `Bytes`: keeps the mapping alive and exposes one range.
struct LogSlice {
    map: Arc<LogMap>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for LogSlice {
    fn as_ref(&self) -> &[u8] {
        self.map.slice(self.start, self.start + self.len)
    }
}

/// A read-write map of an index file, accessed word by word as atomics.
#[derive(Debug)]
pub struct IndexMap {
    raw: MmapRaw,
    words: usize,
}

impl IndexMap {
    /// Maps the first `len` bytes of `file` read-write; `len` is a multiple of 8 and the
    /// file is at least that long.
    pub fn map(file: &File, len: u64) -> std::io::Result<Self> {
        let len = usize::try_from(len).map_err(|_| std::io::Error::other("index too large"))?;
        assert!(len % 8 == 0, "index length {len} is not a whole number of words");
        if len == 0 {
            return Ok(IndexMap { raw: MmapOptions::new().len(8).map_anon()?.into(), words: 0 });
        }
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        Ok(IndexMap { raw, words: len / 8 })
    }

    /// The `i`-th word of the file as an atomic.
    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words, "index word {i} beyond mapping of {} words", self.words);
        // SAFETY: `i` is inside the mapping (checked above). Mappings are page-aligned, so
        // every 8-byte word is aligned for AtomicU64. All access to mapped index memory in
        // this process goes through these atomics (invariant 4: no plain references), and by
        // invariant 1 no other process writes the file. The word is in bounds of the file
        // because index files are only trimmed past the last word in use.
        unsafe { &*self.raw.as_mut_ptr().cast::<AtomicU64>().add(i) }
    }

    /// Writes dirty index pages to disk (`msync(MS_SYNC)`).
    pub fn flush(&self) -> std::io::Result<()> {
        if self.words == 0 {
            return Ok(());
        }
        self.raw.flush()
    }
}
