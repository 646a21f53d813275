//! One segment: a preallocated file of record batches, with its two sparse indexes.
//!
//! Files of a segment whose first record has position `base`, in its shard's directory:
//! `<base>.log`, `<base>.idx`, `<base>.tix`, with `base` in 20 decimal digits so that names
//! sort by position. A segment is created as `<base>.log.tmp` (preallocated, header written
//! and synced) and renamed into place, so a `.log` file always has a valid header.
//!
//! # Segment header (64 bytes, little-endian)
//!
//! | offset | width | field            | meaning                                           |
//! |-------:|------:|------------------|---------------------------------------------------|
//! | 0      | 8     | `magic`          | the bytes `RIFFLSEG`                              |
//! | 8      | 2     | `version`        | `1`                                               |
//! | 10     | 2     | reserved         | `0`                                               |
//! | 12     | 4     | `header_bytes`   | `64`: batches start here                          |
//! | 16     | 8     | `base_position`  | position of the segment's first record            |
//! | 24     | 8     | `capacity_bytes` | preallocated file size                            |
//! | 32     | 8     | `created_ms`     | creation time, ms since the Unix epoch (age roll) |
//! | 40     | 20    | reserved         | `0`                                               |
//! | 60     | 4     | `crc`            | CRC-32 of bytes `[0, 60)`                          |
//!
//! Batches ([`crate::batch`]) follow back to back. The active segment's file stays at its
//! preallocated size and reads as zeros after the last batch; a sealed segment is trimmed
//! to exactly its last batch's end.
//!
//! # Invariants
//! - Batches are contiguous in position: each starts where the previous one ended, the
//!   first at `base_position`.
//! - `durable_len` (bytes readable) and `end_position` only grow, and are published by the
//!   segment's one writer after the bytes below them are durable under the log's mode.
//! - Index entries point at batch starts below `durable_len`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, RecordIter, BATCH_HEADER_BYTES};
use crate::error::{Error, Result};
use crate::index::offset::{self, OffsetEntry, OffsetKind};
use crate::index::time::{self, TimeEntry, TimeKind};
use crate::index::SparseIndex;
use crate::io::{self, DataFile};
use crate::mmap::LogMap;

const SEGMENT_MAGIC: [u8; 8] = *b"RIFFLSEG";
const SEGMENT_VERSION: u16 = 1;
/// Size of the segment header; the first batch starts here.
pub const SEGMENT_HEADER_BYTES: u64 = 64;
const HEADER_CRC_OFFSET: usize = 60;

/// File name of a segment's file with extension `ext`.
pub(crate) fn file_name(base_position: u64, ext: &str) -> String {
    format!("{base_position:020}.{ext}")
}

/// Parses `<20 digits>.log` into a base position.
pub(crate) fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_header(
    base_position: u64,
    capacity: u64,
    created_ms: u64,
) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
    h[16..24].copy_from_slice(&base_position.to_le_bytes());
    h[24..32].copy_from_slice(&capacity.to_le_bytes());
    h[32..40].copy_from_slice(&created_ms.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_CRC_OFFSET]);
    h[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    h
}

struct SegmentHeader {
    base_position: u64,
    capacity: u64,
    created_ms: u64,
}

fn decode_header(h: &[u8], path: &Path) -> Result<SegmentHeader> {
    let bad = |reason: &str| Error::corrupt(path, 0, format!("segment header: {reason}"));
    if h.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(bad("file shorter than the header"));
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Err(bad("bad magic"));
    }
    let stored = u32::from_le_bytes([h[60], h[61], h[62], h[63]]);
    if crc32fast::hash(&h[..HEADER_CRC_OFFSET]) != stored {
        return Err(bad("checksum mismatch"));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != SEGMENT_VERSION {
        return Err(bad(&format!("unsupported version {version}")));
    }
    let word = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&h[at..at + 8]);
        u64::from_le_bytes(a)
    };
    if u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as u64 != SEGMENT_HEADER_BYTES {
        return Err(bad("unexpected header size"));
    }
    Ok(SegmentHeader { base_position: word(16), capacity: word(24), created_ms: word(32) })
}

/// Most index entries a segment of `capacity` bytes can need.
pub(crate) fn index_capacity(capacity: u64, index_interval_bytes: u32) -> usize {
    (capacity / u64::from(index_interval_bytes.max(1))) as usize + 2
}

/// Zero-copy bytes of whole batches from one segment.
#[derive(Debug, Clone)]
pub struct SegmentRead {
    /// Concatenated batches, exactly as on disk.
    pub bytes: Bytes,
    /// Position of the first record in `bytes` (at or before the requested position).
    pub first_position: u64,
    /// Position one past the last record in `bytes`.
    pub next_position: u64,
}

/// One segment, shared by its writer and any number of readers.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_position: u64,
    pub created_ms: u64,
    pub capacity: u64,
    dir: PathBuf,
    file: Arc<DataFile>,
    map: Arc<LogMap>,
    offset_index: SparseIndex,
    time_index: SparseIndex,
    index_interval_bytes: u32,
    /// Bytes from the start of the file that readers may read (header included).
    durable_len: AtomicU64,
    /// Position one past the last record below `durable_len`.
    end_position: AtomicU64,
    /// File offset of the last indexed batch (writer bookkeeping, read by the writer only).
    last_indexed_offset: AtomicU64,
    /// Published batches not yet indexed because their bytes are not yet synced (the
    /// `Interval` mode). Index entries only ever cover synced bytes, because recovery trusts
    /// what lies below the last entry. Writer only.
    unindexed: std::sync::Mutex<Vec<(u64, BatchHeader)>>,
    sealed: AtomicBool,
}

impl Segment {
    /// Creates a new, empty segment and makes its existence durable.
    ///
    /// `prepared` is a zero-filled, synced file of `capacity` bytes made ready in the
    /// background ([`crate::prepare`]); it is renamed into place. Without one, the file is
    /// created sparse with `set_len`.
    pub(crate) fn create(
        dir: &Path,
        base_position: u64,
        capacity: u64,
        created_ms: u64,
        index_interval_bytes: u32,
        prepared: Option<PathBuf>,
    ) -> Result<Arc<Self>> {
        let log_path = dir.join(file_name(base_position, "log"));
        let prepared = match prepared {
            Some(path) => match DataFile::open(&path) {
                Ok(file) if file.len()? == capacity => Some((path, file)),
                _ => None,
            },
            None => None,
        };
        let (tmp_path, file) = match prepared {
            Some(p) => p,
            None => {
                let tmp_path = dir.join(format!("{}.tmp", file_name(base_position, "log")));
                io::remove_file(&tmp_path)?;
                let file = DataFile::create_new(&tmp_path)?;
                file.set_len(capacity)?;
                (tmp_path, file)
            }
        };
        file.write_all_at(&encode_header(base_position, capacity, created_ms), 0)?;
        file.sync_data()?;
        io::rename(&tmp_path, &log_path)?;
        let entries = index_capacity(capacity, index_interval_bytes);
        let offset_index =
            SparseIndex::create::<OffsetKind>(&dir.join(file_name(base_position, "idx")), entries)?;
        let time_index =
            SparseIndex::create::<TimeKind>(&dir.join(file_name(base_position, "tix")), entries)?;
        io::sync_dir(dir)?;
        let file = DataFile::open(&log_path)?;
        let map = LogMap::map(file.std_file(), capacity).map_err(|e| Error::io(&log_path, e))?;
        Ok(Arc::new(Segment {
            base_position,
            created_ms,
            capacity,
            dir: dir.to_path_buf(),
            file,
            map,
            offset_index,
            time_index,
            index_interval_bytes,
            durable_len: AtomicU64::new(SEGMENT_HEADER_BYTES),
            end_position: AtomicU64::new(base_position),
            last_indexed_offset: AtomicU64::new(0),
            unindexed: std::sync::Mutex::new(Vec::new()),
            sealed: AtomicBool::new(false),
        }))
    }

    /// Opens and recovers a segment found on disk.
    ///
    /// A segment whose file is shorter than its preallocated capacity was sealed (trimmed):
    /// its data ends at the file's end and is walked by batch header from the last index
    /// entry. Otherwise it was the active segment: batches are validated by CRC from the
    /// last good index entry on, and everything after the last valid batch is discarded.
    pub(crate) fn open(
        dir: &Path,
        base_position: u64,
        index_interval_bytes: u32,
    ) -> Result<Arc<Self>> {
        let log_path = dir.join(file_name(base_position, "log"));
        let file = DataFile::open(&log_path)?;
        let file_len = file.len()?;
        let mut header_bytes = [0u8; SEGMENT_HEADER_BYTES as usize];
        if file_len < SEGMENT_HEADER_BYTES {
            return Err(Error::corrupt(&log_path, 0, "segment file shorter than its header"));
        }
        file.read_exact_at(&mut header_bytes, 0)?;
        let header = decode_header(&header_bytes, &log_path)?;
        if header.base_position != base_position {
            return Err(Error::corrupt(
                &log_path,
                16,
                format!(
                    "header says base position {}, file name says {base_position}",
                    header.base_position
                ),
            ));
        }
        if header.capacity < SEGMENT_HEADER_BYTES
            || header.capacity > crate::constants::SEGMENT_BYTES_MAX
        {
            return Err(Error::corrupt(
                &log_path,
                24,
                format!("capacity {} out of bounds", header.capacity),
            ));
        }
        if file_len > header.capacity {
            return Err(Error::corrupt(
                &log_path,
                24,
                format!("file of {file_len} bytes exceeds its capacity"),
            ));
        }
        let sealed = file_len < header.capacity;
        let map = LogMap::map(file.std_file(), file_len).map_err(|e| Error::io(&log_path, e))?;
        let entries = index_capacity(header.capacity, index_interval_bytes);
        let open_index = |ext: &str, time: bool| -> Result<(SparseIndex, bool)> {
            let path = dir.join(file_name(base_position, ext));
            let opened = if time {
                SparseIndex::open::<TimeKind>(&path, entries, !sealed, time::ordered)?
            } else {
                SparseIndex::open::<OffsetKind>(&path, entries, !sealed, offset::ordered)?
            };
            match opened {
                Some(ix) => Ok((ix, false)),
                None if time => Ok((SparseIndex::create::<TimeKind>(&path, entries)?, true)),
                None => Ok((SparseIndex::create::<OffsetKind>(&path, entries)?, true)),
            }
        };
        let (offset_index, _) = open_index("idx", false)?;
        let (time_index, _) = open_index("tix", true)?;
        let segment = Segment {
            base_position,
            created_ms: header.created_ms,
            capacity: header.capacity,
            dir: dir.to_path_buf(),
            file,
            map,
            offset_index,
            time_index,
            index_interval_bytes,
            durable_len: AtomicU64::new(SEGMENT_HEADER_BYTES),
            end_position: AtomicU64::new(base_position),
            last_indexed_offset: AtomicU64::new(0),
            unindexed: std::sync::Mutex::new(Vec::new()),
            sealed: AtomicBool::new(sealed),
        };
        segment.recover(file_len, sealed)?;
        Ok(Arc::new(segment))
    }

    /// Re-derives `durable_len` and `end_position` from the bytes on disk, cutting the
    /// indexes back to what the log confirms and adding the entries they lack.
    fn recover(&self, file_len: u64, sealed: bool) -> Result<()> {
        let start = self.trusted_index_prefix(file_len);
        let (scan_from, mut position) = match start {
            Some(e) => {
                (u64::from(e.file_offset), self.base_position + u64::from(e.relative_position))
            }
            None => (SEGMENT_HEADER_BYTES, self.base_position),
        };
        if let Some(e) = start {
            self.last_indexed_offset.store(u64::from(e.file_offset), Ordering::Relaxed);
        }
        let mut at = scan_from;
        // The active segment's batches are indexed only once they are durable (below):
        // recovery trusts what lies under an index entry.
        let mut unindexed: Vec<(u64, BatchHeader)> = Vec::new();
        // Sealed segments were synced in full when sealed, so walking headers suffices;
        // the active segment's tail may be torn, so every batch is checked by CRC.
        loop {
            let rest = self.map.slice(at as usize, file_len as usize);
            if rest.len() < BATCH_HEADER_BYTES || rest[..BATCH_HEADER_BYTES].iter().all(|b| *b == 0)
            {
                break;
            }
            let header = if sealed { batch::parse_header(rest) } else { batch::validate(rest) };
            let header = match header {
                Ok(h) if h.base_position == position && (h.batch_bytes as usize) <= rest.len() => h,
                Ok(h) if sealed => {
                    return Err(Error::corrupt(
                        self.log_path(),
                        at,
                        format!(
                            "batch at position {} where {position} was expected",
                            h.base_position
                        ),
                    ))
                }
                Err(e) if sealed => return Err(Error::corrupt(self.log_path(), at, e.to_string())),
                _ => break, // torn or stale tail of the active segment: cut here
            };
            self.durable_len.store(at, Ordering::Relaxed);
            if sealed {
                self.index_batch(at, &header);
            } else {
                unindexed.push((at, header));
            }
            at += u64::from(header.batch_bytes);
            position = header.end_position();
        }
        if at == scan_from && start.is_some() {
            // The batch the last trusted entry points at was cut: drop that entry too.
            let keep = self.offset_index.len().saturating_sub(1);
            self.offset_index.truncate(keep);
            self.time_index.truncate(keep.min(self.time_index.len()));
            let last = keep
                .checked_sub(1)
                .map_or(0, |i| u64::from(offset::entry(&self.offset_index, i).file_offset));
            self.last_indexed_offset.store(last, Ordering::Relaxed);
        }
        if sealed && at != file_len {
            return Err(Error::corrupt(self.log_path(), at, "sealed segment ends inside a batch"));
        }
        self.durable_len.store(at, Ordering::Release);
        self.end_position.store(position, Ordering::Release);
        if sealed {
            return Ok(());
        }
        // The batches accepted past the last index entry were read from the page cache,
        // which may hold bytes the disk does not: those of a commit whose fdatasync failed
        // (Linux then marks the pages clean, so no later sync writes them) or, under the
        // `interval` and `none` modes, of a process that died before syncing. New records
        // will be acknowledged after them, so make them durable first: write them again
        // (dirtying the pages) and sync. Found by the simulated disk (tests/simulation.rs).
        let tail = at > scan_from;
        if tail {
            let bytes = self.map.slice(scan_from as usize, at as usize).to_vec();
            self.file.write_all_at(&bytes, scan_from)?;
        }
        if at < file_len {
            // Drop whatever lies past the last valid batch, so that stale bytes from before
            // the crash can never be mistaken for batches written after it. Punching a hole
            // keeps the file's size, so a crash here cannot make the segment look sealed.
            self.file.punch_hole(at, file_len - at)?;
        }
        if tail || at < file_len {
            self.file.sync_data()?;
        }
        // Only now: an entry written before a failed sync would point at bytes the disk may
        // not hold, and the next open would trust it (found by the simulated disk).
        for (file_offset, header) in &unindexed {
            self.index_batch(*file_offset, header);
        }
        Ok(())
    }

    /// The last offset-index entry that points at a batch starting at the position it
    /// claims. Later entries, and time entries past it, are dropped.
    fn trusted_index_prefix(&self, file_len: u64) -> Option<OffsetEntry> {
        let mut count = self.offset_index.len();
        let mut trusted = None;
        while count > 0 {
            let e = offset::entry(&self.offset_index, count - 1);
            let at = u64::from(e.file_offset);
            let ok = at >= SEGMENT_HEADER_BYTES
                && at < file_len
                && batch::parse_header(self.map.slice(at as usize, file_len as usize)).is_ok_and(
                    |h| {
                        self.base_position.checked_add(u64::from(e.relative_position))
                            == Some(h.base_position)
                    },
                );
            if ok {
                trusted = Some(e);
                break;
            }
            count -= 1;
        }
        self.offset_index.truncate(count);
        let keep_time = match trusted {
            None => 0,
            Some(t) => (0..self.time_index.len())
                .take_while(|&i| {
                    time::entry(&self.time_index, i).relative_position <= t.relative_position
                })
                .count(),
        };
        self.time_index.truncate(keep_time);
        trusted
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base_position, "log"))
    }

    pub(crate) fn file(&self) -> &Arc<DataFile> {
        &self.file
    }

    pub(crate) fn durable_len(&self) -> u64 {
        self.durable_len.load(Ordering::Acquire)
    }

    pub(crate) fn end_position(&self) -> u64 {
        self.end_position.load(Ordering::Acquire)
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Adds index entries for a batch at `file_offset` if it is far enough from the last
    /// one. Writer only; the batch must already be below `durable_len` or about to be.
    fn index_batch(&self, file_offset: u64, header: &BatchHeader) {
        let last = self.last_indexed_offset.load(Ordering::Relaxed);
        let first = self.offset_index.len() == 0;
        if !first && file_offset < last + u64::from(self.index_interval_bytes) {
            return;
        }
        if first && self.time_index.len() > 0 {
            self.time_index.truncate(0);
        }
        let relative_position = (header.base_position - self.base_position) as u32;
        let offset_entry = OffsetEntry { relative_position, file_offset: file_offset as u32 };
        if self.offset_index.push(&[offset_entry.encode()]) {
            self.time_index.push(
                &TimeEntry { timestamp_ms: header.first_timestamp_ms, relative_position }.encode(),
            );
            self.last_indexed_offset.store(file_offset, Ordering::Relaxed);
        }
    }

    /// Publishes batches the writer has made durable under the log's mode: `batches` are
    /// their (file offset, header) pairs in order, ending at `durable_len`. `synced` says
    /// whether their bytes are also on disk (then they are indexed now; otherwise when
    /// [`Segment::index_synced`] is called after the next sync). Writer only.
    pub(crate) fn publish(&self, batches: &[(u64, BatchHeader)], durable_len: u64, synced: bool) {
        let Some((_, last)) = batches.last() else { return };
        assert!(durable_len <= self.capacity);
        assert!(durable_len > self.durable_len.load(Ordering::Relaxed), "durable length must grow");
        let end_position = last.end_position();
        assert_eq!(
            batches[0].1.base_position,
            self.end_position.load(Ordering::Relaxed),
            "positions must be contiguous"
        );
        self.durable_len.store(durable_len, Ordering::Release);
        self.end_position.store(end_position, Ordering::Release);
        let mut unindexed =
            self.unindexed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if synced {
            for (file_offset, header) in unindexed.drain(..).chain(batches.iter().copied()) {
                self.index_batch(file_offset, &header);
            }
        } else {
            unindexed.extend_from_slice(batches);
        }
    }

    /// Indexes the published batches that waited for a sync. Writer only, after a
    /// successful sync of this segment's file.
    pub(crate) fn index_synced(&self) {
        let mut unindexed =
            self.unindexed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (file_offset, header) in unindexed.drain(..) {
            self.index_batch(file_offset, &header);
        }
    }

    /// Seals the segment: flushes and trims the indexes, trims the file to its data, syncs.
    /// Writer only. Readers are unaffected: nothing they can map lies past the new end.
    ///
    /// `durable` is false under `Durability::None`, which promises nothing across a power
    /// loss: the segment is then only marked sealed (no sync of up to a segment of dirty
    /// pages on the commit path, no trim); it keeps its full size, so the next open treats
    /// it as written-to, validates its tail by CRC and seals it properly.
    pub(crate) fn seal(&self, durable: bool) -> Result<()> {
        if self.sealed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if !durable {
            self.index_synced();
            return Ok(());
        }
        // Data first: the trimmed size must never reach the disk before the bytes below it,
        // or a crash could leave a short file that reads as sealed with a torn tail.
        self.file.sync_data()?;
        self.index_synced();
        self.offset_index.seal()?;
        self.time_index.seal()?;
        self.file.set_len(self.durable_len())?;
        self.file.sync_data()?;
        Ok(())
    }

    /// Flushes index pages without sealing (clean shutdown of the active segment).
    pub(crate) fn flush_indexes(&self) -> Result<()> {
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// File offset of the batch containing `position`, found through the offset index and a
    /// short forward walk of batch headers. `position` must be in `[base, end_position)`.
    fn locate(&self, position: u64, durable_len: u64) -> Result<(u64, BatchHeader)> {
        let relative = (position - self.base_position) as u32;
        let mut at = offset::lookup(&self.offset_index, relative)
            .map_or(SEGMENT_HEADER_BYTES, |e| u64::from(e.file_offset));
        loop {
            if at >= durable_len {
                return Err(Error::corrupt(
                    self.log_path(),
                    at,
                    format!("position {position} not found below the durable end"),
                ));
            }
            let rest = self.map.slice(at as usize, durable_len as usize);
            let header = batch::parse_header(rest)
                .map_err(|e| Error::corrupt(self.log_path(), at, e.to_string()))?;
            if header.end_position() > position {
                return Ok((at, header));
            }
            at += u64::from(header.batch_bytes);
        }
    }

    /// Reads whole batches starting with the one that contains `position`, up to about
    /// `max_bytes` (at least one batch). Every returned batch is checked by CRC; a damaged
    /// one is reported as corruption with this file and the batch's offset.
    pub(crate) fn read(&self, position: u64, max_bytes: usize) -> Result<Option<SegmentRead>> {
        let end_position = self.end_position();
        let durable_len = self.durable_len();
        if position >= end_position {
            return Ok(None);
        }
        let position = position.max(self.base_position);
        let (start, first) = self.locate(position, durable_len)?;
        let mut at = start;
        let mut next_position = first.base_position;
        while at < durable_len {
            let rest = self.map.slice(at as usize, durable_len as usize);
            let header = batch::validate(rest)
                .map_err(|e| Error::corrupt(self.log_path(), at, e.to_string()))?;
            if header.base_position != next_position {
                return Err(Error::corrupt(
                    self.log_path(),
                    at,
                    "batch positions are not contiguous",
                ));
            }
            if at > start && (at - start) as usize + header.batch_bytes as usize > max_bytes {
                break;
            }
            at += u64::from(header.batch_bytes);
            next_position = header.end_position();
        }
        // Prefetch what a sequential reader asks for next, within the durable bytes only.
        self.map.will_need(
            at as usize,
            (at as usize).saturating_add(max_bytes).min(durable_len as usize),
        );
        Ok(Some(SegmentRead {
            bytes: self.map.bytes(start as usize, at as usize),
            first_position: first.base_position,
            next_position,
        }))
    }

    /// The first position whose record arrived at or after `timestamp_ms`, if this segment
    /// has one.
    pub(crate) fn position_at_timestamp(&self, timestamp_ms: u64) -> Result<Option<u64>> {
        let durable_len = self.durable_len();
        let end_position = self.end_position();
        if end_position == self.base_position {
            return Ok(None);
        }
        let start_position = time::lookup_before(&self.time_index, timestamp_ms)
            .map_or(self.base_position, |e| {
                self.base_position.saturating_add(u64::from(e.relative_position))
            });
        let (mut at, _) = self.locate(start_position.min(end_position - 1), durable_len)?;
        while at < durable_len {
            let rest = self.map.slice(at as usize, durable_len as usize);
            let header = batch::validate(rest)
                .map_err(|e| Error::corrupt(self.log_path(), at, e.to_string()))?;
            if header.max_timestamp_ms >= timestamp_ms {
                let batch_bytes = &rest[..header.batch_bytes as usize];
                let iter = RecordIter::new(batch_bytes)
                    .map_err(|e| Error::corrupt(self.log_path(), at, e.to_string()))?;
                for record in iter {
                    let record =
                        record.map_err(|e| Error::corrupt(self.log_path(), at, e.to_string()))?;
                    if record.timestamp_ms >= timestamp_ms {
                        return Ok(Some(record.position));
                    }
                }
            }
            at += u64::from(header.batch_bytes);
        }
        Ok(None)
    }

    /// Arrival time of the newest durable record, if any (for retention and lag).
    pub(crate) fn max_timestamp_ms(&self) -> Result<Option<u64>> {
        let end = self.end_position();
        if end == self.base_position {
            return Ok(None);
        }
        let durable_len = self.durable_len();
        let (_, header) = self.locate(end - 1, durable_len)?;
        Ok(Some(header.max_timestamp_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, EncodedBatches, Record};

    #[test]
    fn unsynced_batches_are_indexed_only_after_a_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = Segment::create(dir.path(), 0, 64 * 1024, 1, 1, None).expect("create");
        let mut builder = BatchBuilder::default();
        for position in 0..3u64 {
            builder.begin(position);
            builder.push(&Record { partition_key: b"k", explicit_hash_key: None, data: b"v" }, 5);
        }
        let encoded = builder.take(EncodedBatches::default());
        segment.file().write_all_at(&encoded.bytes, SEGMENT_HEADER_BYTES).expect("write");
        let placed: Vec<(u64, BatchHeader)> =
            encoded.batches.iter().map(|(at, h)| (SEGMENT_HEADER_BYTES + *at as u64, *h)).collect();
        let end = SEGMENT_HEADER_BYTES + encoded.bytes.len() as u64;
        segment.publish(&placed[..2], placed[2].0, false);
        assert_eq!(segment.offset_index.len(), 0, "no entry may cover bytes that are not synced");
        assert_eq!(segment.end_position(), 2, "readers see them under the Interval mode");
        segment.publish(&placed[2..], end, true);
        assert_eq!(segment.offset_index.len(), 3, "a sync indexes what waited for it");
    }
}
