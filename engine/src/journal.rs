//! The commit journal: one write and one `fdatasync` per commit cycle, whatever the number
//! of shards in it.
//!
//! Without a journal, a `sync` cycle issues one `fdatasync` per dirty segment, and a disk
//! that does not absorb concurrent syncs makes a cycle over 16 shards cost up to 16 syncs
//! (bench/README.md: single-record puts over 16 shards ran at 0.31x Redis against 0.84x over
//! one). With a journal, a cycle writes its segments' bytes without syncing them, appends
//! one record per segment write to the group's journal file (target path, file offset,
//! bytes), and syncs the journal alone; the cycle is acknowledged when that sync completes.
//! The segments are synced later, all together, when the journal wraps (a checkpoint), and
//! when the group stops.
//!
//! A segment whose `fdatasync` ever failed (in a cycle, or in a seal outside one) may have
//! lost journaled bytes on the way to the disk, and Linux would let a later sync of it
//! succeed regardless. So a checkpoint that would cover such a segment fails instead, and
//! so does any failed commit in a cycle: the journal is then left as it is, to be replayed
//! at the next start, and the group syncs its segments directly until then.
//!
//! Opening a journal replays it first: every record of its current lap is written again
//! into its segment (if the file still exists: retention may have deleted it), the segments
//! are synced, and the journal is marked empty. Replay is idempotent, so a crash during it
//! is harmless. It runs before any log of the group is opened, so shard-log recovery then
//! finds every acknowledged batch in place.
//!
//! # Format
//! A file of `capacity` bytes (created sparse; after its first pass every write overwrites
//! allocated blocks, so a journal sync rarely has to commit extent changes). Records follow
//! each other from offset 0:
//!
//! ```text
//! magic u32 "RJNL" | lap u64 | body_len u32 | crc32c-less CRC-32 of (lap, body_len, body) u32
//! body: path_len u16 | path (UTF-8, relative to the journal's directory) | file_offset u64 | bytes
//! ```
//!
//! All little-endian. `lap` is random per pass over the file: replay reads from offset 0
//! while records are valid and carry the first record's lap, so records left over from an
//! earlier pass (all checkpointed before the wrap) are never replayed. A torn or failed
//! write ends the replay there; its cycle was not acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{self, CommitIo, CycleOp, DataFile};

/// Default size of a journal file.
pub const JOURNAL_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;
/// Smallest journal file.
pub const JOURNAL_BYTES_MIN: u64 = 64 * 1024;
/// Largest journal file replay reads (a bound on what a damaged size can make it allocate).
const JOURNAL_BYTES_MAX: u64 = 1 << 30;
const MAGIC: [u8; 4] = *b"RJNL";
const HEADER_BYTES: usize = 20;

/// A commit group's journal, owned by its committing thread.
#[derive(Debug)]
pub(crate) struct Journal {
    file: Arc<DataFile>,
    dir: PathBuf,
    capacity: u64,
    /// Where the next record goes.
    at: u64,
    lap: u64,
    /// Segment files written since the last checkpoint (synced at the next one).
    touched: Vec<Arc<DataFile>>,
}

/// One journal record, as replay reads it.
struct Entry<'a> {
    path: &'a str,
    file_offset: u64,
    bytes: &'a [u8],
}

impl Journal {
    /// Replays the journal at `path` if there is one, then opens it empty (creating and
    /// zero-filling it if it is missing or of another size).
    pub(crate) fn open(path: &Path, capacity: u64) -> Result<Journal> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let existing = replay(path)?;
        let file = match existing {
            Some(file) if file.len()? == capacity => file,
            _ => create(path, capacity)?,
        };
        // Mark it empty: a zeroed first header ends every later replay at once.
        mark_empty(path)?;
        Ok(Journal { file, dir, capacity, at: 0, lap: new_lap(), touched: Vec::new() })
    }

    /// Adds the journal write for this cycle's segment writes (which must not sync) to
    /// `ops`, checkpointing first if the journal is full. Returns false if the cycle is too
    /// large for the journal: then the caller syncs the segments themselves.
    pub(crate) fn stage(&mut self, io: &mut dyn CommitIo, ops: &mut Vec<CycleOp>) -> Result<bool> {
        let mut buf = Vec::new();
        for op in ops.iter() {
            if !op.range.is_empty() && !self.encode(op, &mut buf) {
                return Ok(false);
            }
        }
        if buf.is_empty() {
            return Ok(false);
        }
        let len = buf.len() as u64;
        if len > self.capacity {
            return Ok(false);
        }
        if self.at + len > self.capacity {
            self.checkpoint(io)?;
            // Records carry their lap, and the checkpoint began a new one: encode again.
            // (Found by the simulated disk: a wrap's first record kept the old lap, so
            // replay stopped right after it and lost the acknowledged records that followed.)
            buf.clear();
            for op in ops.iter().filter(|op| !op.range.is_empty()) {
                self.encode(op, &mut buf);
            }
        }
        ops.push(CycleOp {
            file: Arc::clone(&self.file),
            file_offset: self.at,
            range: 0..buf.len(),
            buf,
            sync: true,
            result: Ok(()),
        });
        Ok(true)
    }

    /// After the cycle ran: takes the journal op back off `ops`. If its write or sync
    /// failed, every segment write of the cycle fails with it (nothing is acknowledged, and
    /// the same journal space is used again). Otherwise the segment writes count as synced.
    pub(crate) fn finish(&mut self, ops: &mut Vec<CycleOp>) {
        let Some(journal_op) = ops.pop() else { return };
        match journal_op.result {
            Ok(()) => {
                self.at += journal_op.range.len() as u64;
                for op in ops.iter_mut() {
                    if op.result.is_ok() {
                        op.sync = true; // durable through the journal
                        if !self.touched.iter().any(|f| f.uid() == op.file.uid()) {
                            self.touched.push(Arc::clone(&op.file));
                        }
                    }
                }
            }
            Err(e) => {
                for op in ops.iter_mut() {
                    if op.result.is_ok() {
                        op.result = Err(e.clone());
                    }
                }
            }
        }
    }

    /// Syncs every segment written since the last checkpoint; the journal can then be
    /// written over from the start, in a new lap.
    pub(crate) fn checkpoint(&mut self, io: &mut dyn CommitIo) -> Result<()> {
        // A segment whose sync failed anywhere (a seal during a merge, say) may have lost
        // journaled bytes on their way to the disk; a checkpoint sync would succeed without
        // them, so the journal must not be written over. (Found by the simulated disk.)
        if let Some(f) = self.touched.iter().find(|f| f.sync_failed()) {
            return Err(Error::Poisoned {
                reason: format!("an fdatasync of {} failed earlier", f.path().display()).into(),
            });
        }
        let mut ops: Vec<CycleOp> = self
            .touched
            .iter()
            .map(|file| CycleOp {
                file: Arc::clone(file),
                file_offset: 0,
                buf: Vec::new(),
                range: 0..0,
                sync: true,
                result: Ok(()),
            })
            .collect();
        io.run(&mut ops);
        if let Some(e) = ops.into_iter().find_map(|op| op.result.err()) {
            return Err(e);
        }
        self.touched.clear();
        self.at = 0;
        self.lap = new_lap();
        Ok(())
    }

    /// A checkpoint that also marks the journal empty (at a clean stop), so that the next
    /// open has nothing to replay.
    pub(crate) fn close(&mut self, io: &mut dyn CommitIo) -> Result<()> {
        self.checkpoint(io)?;
        self.file.write_all_at(&[0u8; HEADER_BYTES], 0)?;
        self.file.sync_data()
    }

    /// Appends the record for `op` to `buf`; false if its path cannot be recorded.
    fn encode(&self, op: &CycleOp, buf: &mut Vec<u8>) -> bool {
        let path = op.file.path();
        let relative = path.strip_prefix(&self.dir).unwrap_or(path);
        let Some(text) = relative.to_str() else { return false };
        let Ok(path_len) = u16::try_from(text.len()) else { return false };
        let bytes = &op.buf[op.range.clone()];
        let body_len = 2 + text.len() + 8 + bytes.len();
        let Ok(body_len) = u32::try_from(body_len) else { return false };
        let start = buf.len();
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&self.lap.to_le_bytes());
        buf.extend_from_slice(&body_len.to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&path_len.to_le_bytes());
        buf.extend_from_slice(text.as_bytes());
        buf.extend_from_slice(&op.file_offset.to_le_bytes());
        buf.extend_from_slice(bytes);
        let crc = record_crc(&buf[start + 4..start + 16], &buf[start + HEADER_BYTES..]);
        buf[start + 16..start + 20].copy_from_slice(&crc.to_le_bytes());
        true
    }
}

/// Marks the journal at `path` empty (its first header zeroed, synced).
pub(crate) fn mark_empty(path: &Path) -> Result<()> {
    let file = DataFile::open(path)?;
    file.write_all_at(&[0u8; HEADER_BYTES], 0)?;
    file.sync_data()
}

fn record_crc(lap_and_len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(lap_and_len);
    h.update(body);
    h.finalize()
}

/// A lap number unlikely to equal any earlier one.
fn new_lap() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser: spread the bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn create(path: &Path, capacity: u64) -> Result<Arc<DataFile>> {
    let tmp = path.with_extension("tmp");
    io::remove_file(&tmp)?;
    let file = DataFile::create_new(&tmp)?;
    file.set_len(capacity)?;
    file.sync_data()?;
    io::rename(&tmp, path)?;
    io::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    DataFile::open(path)
}

/// Replays the journal at `path` into its segments and syncs them. Returns the journal
/// file, or `None` if there is none.
pub(crate) fn replay(path: &Path) -> Result<Option<Arc<DataFile>>> {
    let file = match DataFile::open(path) {
        Ok(f) => f,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let len = file.len()?;
    if len > JOURNAL_BYTES_MAX {
        return Err(Error::corrupt(path, 0, format!("journal of {len} bytes is too large")));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut targets: Vec<Arc<DataFile>> = Vec::new();
    let mut at = 0u64;
    let mut lap = None;
    // Record by record, so that an empty journal costs one small read.
    while let Some((entry_bytes, next)) = read_record(&file, at, len, &mut lap)? {
        at = next;
        let Some(entry) = parse_body(&entry_bytes) else { break };
        if Path::new(entry.path).components().any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Error::corrupt(
                path,
                at,
                format!("journal names a path outside: {}", entry.path),
            ));
        }
        let target = dir.join(entry.path);
        let segment = match targets.iter().find(|f| f.path() == target) {
            Some(f) => Arc::clone(f),
            None => match DataFile::open(&target) {
                Ok(f) => {
                    targets.push(Arc::clone(&f));
                    f
                }
                // Deleted since (retention, a deleted stream): nothing to restore.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue
                }
                Err(e) => return Err(e),
            },
        };
        let end = entry.file_offset.saturating_add(entry.bytes.len() as u64);
        if end > segment.len()? {
            return Err(Error::corrupt(
                &target,
                entry.file_offset,
                "the journal holds bytes past the end of this segment",
            ));
        }
        segment.write_all_at(entry.bytes, entry.file_offset)?;
    }
    for segment in &targets {
        segment.sync_data()?;
    }
    Ok(Some(file))
}

/// Reads the record at `at` if it is valid and of the current lap: its body and where the
/// next record starts.
fn read_record(
    file: &DataFile,
    at: u64,
    len: u64,
    lap: &mut Option<u64>,
) -> Result<Option<(Vec<u8>, u64)>> {
    if at + HEADER_BYTES as u64 > len {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut header, at)?;
    if header[..4] != MAGIC {
        return Ok(None);
    }
    let word = |range: std::ops::Range<usize>| -> u64 {
        header[range].iter().rev().fold(0u64, |v, b| v << 8 | u64::from(*b))
    };
    let this_lap = word(4..12);
    if *lap.get_or_insert(this_lap) != this_lap {
        return Ok(None);
    }
    let body_len = word(12..16);
    let crc = word(16..20) as u32;
    let body_at = at + HEADER_BYTES as u64;
    if body_len < 10 || body_at + body_len > len {
        return Ok(None); // bounded by the file before anything is allocated
    }
    let mut body = vec![0u8; body_len as usize];
    file.read_exact_at(&mut body, body_at)?;
    if record_crc(&header[4..16], &body) != crc {
        return Ok(None);
    }
    Ok(Some((body, body_at + body_len)))
}

/// A record body: path, file offset, bytes.
fn parse_body(body: &[u8]) -> Option<Entry<'_>> {
    let path_len = usize::from(u16::from_le_bytes(body.get(..2)?.try_into().ok()?));
    let path = std::str::from_utf8(body.get(2..2 + path_len)?).ok()?;
    let offset_at = 2 + path_len;
    let file_offset = u64::from_le_bytes(body.get(offset_at..offset_at + 8)?.try_into().ok()?);
    Some(Entry { path, file_offset, bytes: body.get(offset_at + 8..)? })
}
