//! The commit journal: one write and one `fdatasync` per commit cycle, whatever the number
//! of shards in it.
//!
//! Without a journal, a `sync` cycle issues one `fdatasync` per dirty segment, and a disk
//! that does not absorb concurrent syncs makes a cycle over 16 shards cost up to 16 syncs
//! (bench/README.md: single-record puts over 16 shards ran at 0.31x Redis against 0.84x over
//! one). With a journal, a cycle writes its segments' bytes without syncing them, appends
//! one record per segment write to the group's journal file (target path, file offset,
//! bytes), and syncs the journal alone; the cycle is acknowledged when that sync completes.
//!
//! The file is two halves, written in turn. When the half being written is full, the
//! segments its records went to are synced (a checkpoint) by a background thread, while
//! the cycles go on in the other half; a half is written over only once its checkpoint is
//! done. So a cycle waits for a checkpoint only if a whole half filled up before the
//! previous one finished (before, one file was checkpointed inline when it wrapped, and
//! the wrapping cycle stalled for all of it: p99.9 29-43 ms against 11-22 ms without a
//! journal). On a simulated disk ([`crate::io::sim`]) the checkpoint runs inline at the
//! switch, so that a seeded run stays deterministic; the halves, laps and replay are the
//! same code.
//!
//! A segment whose `fdatasync` ever failed (in a cycle, or in a seal outside one) may have
//! lost journaled bytes on the way to the disk, and Linux would let a later sync of it
//! succeed regardless. So a checkpoint that would cover such a segment fails instead, and
//! so does any failed commit in a cycle: the journal is then left as it is, to be replayed
//! at the next start, and the group syncs its segments directly until then.
//!
//! Opening a journal replays it first: every record of each half's current run is written
//! again into its segment (if the file still exists: retention may have deleted it), the
//! older half first; the segments are synced, and the journal is marked empty. Replay is
//! idempotent, so a crash during it is harmless. It runs before any log of the group is
//! opened, so shard-log recovery then finds every acknowledged batch in place.
//!
//! # Format
//! A file of `capacity` bytes (created sparse; after its first pass every write overwrites
//! allocated blocks, so a journal sync rarely has to commit extent changes), read as two
//! halves of `capacity / 2` bytes. Records follow each other from the start of a half and
//! never cross into the next:
//!
//! ```text
//! magic u32 "RJNL" | lap u64 | body_len u32 | crc32c-less CRC-32 of (lap, body_len, body) u32
//! body: path_len u16 | path (UTF-8, relative to the journal's directory) | file_offset u64 | bytes
//! ```
//!
//! All little-endian. A half's run is the records from its start that carry the lap of its
//! first record; records left over from an earlier pass over that half (all checkpointed
//! before it was written over) have another lap and are never replayed. Laps start at a
//! random value at each open and grow by one at each switch of halves, so of two runs the
//! one with the smaller lap (by wrapping distance) is older. A torn or failed write ends a
//! run there; its cycle was not acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::handoff::JobQueue;
use crate::io::{self, CycleOp, DataFile};

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
    /// Bytes per half.
    half: u64,
    /// The half being written (0 or 1).
    active: u64,
    /// Where the next record goes (an offset in the file, inside the active half).
    at: u64,
    lap: u64,
    /// Segment files written by the active half's records (synced at its checkpoint).
    touched: Vec<Arc<DataFile>>,
    /// Each half's submitted checkpoint, until it is known to be done.
    pending: [Option<u64>; 2],
    checkpoints: Checkpointer,
}

/// Runs checkpoints: on a background thread, or inline on a simulated disk.
#[derive(Debug)]
struct Checkpointer {
    jobs: Arc<JobQueue<Vec<Arc<DataFile>>, Error>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(inline: bool) -> Result<Checkpointer> {
        let jobs: Arc<JobQueue<Vec<Arc<DataFile>>, Error>> = Arc::new(JobQueue::default());
        let thread = if inline {
            None
        } else {
            let worker = Arc::clone(&jobs);
            let thread = std::thread::Builder::new()
                .name("riffle-checkpoint".into())
                .spawn(move || {
                    while let Some(files) = worker.next() {
                        worker.done(sync_segments(&files));
                    }
                })
                .map_err(|e| Error::io("riffle-checkpoint thread", e))?;
            Some(thread)
        };
        Ok(Checkpointer { jobs, thread })
    }

    /// Queues a checkpoint of `files` (inline: runs it now); returns its ticket.
    fn submit(&self, files: Vec<Arc<DataFile>>) -> u64 {
        let ticket = self.jobs.submit(files);
        if self.thread.is_none() {
            if let Some(files) = self.jobs.next() {
                self.jobs.done(sync_segments(&files));
            }
        }
        ticket
    }

    fn wait(&self, ticket: u64) -> Result<()> {
        self.jobs.wait(ticket)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.jobs.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A checkpoint: syncs every segment file a half's records went to.
fn sync_segments(files: &[Arc<DataFile>]) -> Result<()> {
    // A segment whose sync failed anywhere (a seal during a merge, say) may have lost
    // journaled bytes on their way to the disk; a checkpoint sync would succeed without
    // them, so the journal must not be written over. (Found by the simulated disk.) The
    // check runs again after the syncs: a seal on another thread may fail while they run,
    // and its error is not reported to them. A failure after that check came after these
    // syncs returned, so what they made durable stays so.
    let poisoned = || {
        files.iter().find(|f| f.sync_failed()).map(|f| Error::Poisoned {
            reason: format!("an fdatasync of {} failed", f.path().display()).into(),
        })
    };
    if let Some(e) = poisoned() {
        return Err(e);
    }
    files.iter().try_for_each(|f| f.sync_data())?;
    poisoned().map_or(Ok(()), Err)
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
        // Mark it empty: zeroed first headers end every later replay at once.
        mark_empty(path)?;
        let checkpoints = Checkpointer::start(file.is_simulated())?;
        Ok(Journal {
            file,
            dir,
            half: capacity / 2,
            active: 0,
            at: 0,
            lap: new_lap(),
            touched: Vec::new(),
            pending: [None, None],
            checkpoints,
        })
    }

    /// Adds the journal write for this cycle's segment writes (which must not sync) to
    /// `ops`, switching halves first if the active one is full. Returns false if the cycle
    /// is too large for a half: then the caller syncs the segments themselves. An error
    /// means a checkpoint failed: the journal must then be kept for replay, not written.
    pub(crate) fn stage(&mut self, ops: &mut Vec<CycleOp>) -> Result<bool> {
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
        if len > self.half {
            return Ok(false);
        }
        if self.at + len > (self.active + 1) * self.half {
            self.switch()?;
            // Records carry their lap, and the switch began a new one: encode again.
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

    /// Hands the active half's segments to a checkpoint, and moves to the other half once
    /// its own checkpoint (submitted at the previous switch) is done.
    fn switch(&mut self) -> Result<()> {
        let ticket = self.checkpoints.submit(std::mem::take(&mut self.touched));
        self.pending[self.active as usize] = Some(ticket);
        let other = 1 - self.active;
        if let Some(ticket) = self.pending[other as usize] {
            self.checkpoints.wait(ticket)?;
            self.pending[other as usize] = None;
        }
        self.active = other;
        self.at = other * self.half;
        self.lap = self.lap.wrapping_add(1);
        Ok(())
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

    /// At a clean stop: checkpoints both halves, then marks the journal empty, so that the
    /// next open has nothing to replay.
    pub(crate) fn close(&mut self) -> Result<()> {
        let ticket = self.checkpoints.submit(std::mem::take(&mut self.touched));
        self.checkpoints.wait(ticket)?; // and every earlier checkpoint
        self.pending = [None, None];
        self.file.write_all_at(&[0u8; HEADER_BYTES], 0)?;
        self.file.write_all_at(&[0u8; HEADER_BYTES], self.half)?;
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

/// Marks the journal at `path` empty (the first header of each half zeroed, synced).
pub(crate) fn mark_empty(path: &Path) -> Result<()> {
    let file = DataFile::open(path)?;
    let half = file.len()? / 2;
    file.write_all_at(&[0u8; HEADER_BYTES], 0)?;
    if half >= HEADER_BYTES as u64 {
        file.write_all_at(&[0u8; HEADER_BYTES], half)?;
    }
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

/// Replays the journal at `path` into its segments (the older half's run first) and syncs
/// them. Returns the journal file, or `None` if there is none.
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
    let half = len / 2;
    let halves = [(0, half), (half, len)];
    // Each half's run, by the lap of its first record; the older (smaller) lap first.
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for (start, end) in halves {
        let mut lap = None;
        if read_record(&file, start, end, &mut lap)?.is_some() {
            runs.extend(lap.map(|lap| (lap, start, end)));
        }
    }
    if let [(a, ..), (b, ..)] = runs[..] {
        if (a.wrapping_sub(b) as i64) > 0 {
            runs.swap(0, 1);
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut targets: Vec<Arc<DataFile>> = Vec::new();
    for (lap, start, end) in runs {
        replay_run(&file, path, dir, (start, end), lap, &mut targets)?;
    }
    for segment in &targets {
        segment.sync_data()?;
    }
    Ok(Some(file))
}

/// Writes the records of one half's run (`lap`, from `start`, within `end`) into their
/// segments, opening each segment once (kept in `targets`).
fn replay_run(
    file: &DataFile,
    path: &Path,
    dir: &Path,
    (start, end): (u64, u64),
    lap: u64,
    targets: &mut Vec<Arc<DataFile>>,
) -> Result<()> {
    let mut at = start;
    let mut lap = Some(lap);
    // Record by record, so that an empty journal costs one small read.
    while let Some((entry_bytes, next)) = read_record(file, at, end, &mut lap)? {
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
    Ok(())
}

/// Reads the record at `at` if it is valid, ends by `end`, and is of the run's lap (`lap`;
/// a first read sets it): its body and where the next record starts.
fn read_record(
    file: &DataFile,
    at: u64,
    end: u64,
    lap: &mut Option<u64>,
) -> Result<Option<(Vec<u8>, u64)>> {
    if at + HEADER_BYTES as u64 > end {
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
    if body_len < 10 || body_at + body_len > end {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One journaled cycle: `bytes` at `offset` of `segment`, written as the commit thread
    /// would (the segment write and the journal record), without a sync.
    fn commit(journal: &mut Journal, segment: &Arc<DataFile>, offset: u64, bytes: &[u8]) {
        let mut ops = vec![CycleOp {
            file: Arc::clone(segment),
            file_offset: offset,
            buf: bytes.to_vec(),
            range: 0..bytes.len(),
            sync: false,
            result: Ok(()),
        }];
        assert!(journal.stage(&mut ops).expect("stage"), "fits a half");
        for op in &ops {
            op.file.write_all_at(&op.buf[op.range.clone()], op.file_offset).expect("write");
        }
        journal.finish(&mut ops);
    }

    /// Records in both halves (the first one written over in a later lap): replay applies
    /// the older half's run first, so the newest bytes win, and the stale tail of the
    /// earlier lap is not replayed. Ten segment slots are written over and over, so any
    /// other order leaves older bytes in some of them.
    #[test]
    fn replay_applies_the_older_half_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = DataFile::create_new(&dir.path().join("seg.log")).expect("segment");
        segment.set_len(10 * 1000).expect("size");
        let path = dir.path().join("journal-0.log");
        let mut journal = Journal::open(&path, JOURNAL_BYTES_MIN).expect("open");
        let mut expect = vec![0u8; 10 * 1000];
        // 1,000-byte records: about 31 per 32 KiB half, so 80 of them fill half 0, half 1,
        // and part of half 0 again.
        for i in 0..80u64 {
            let slot = (i % 10) * 1000;
            let bytes = vec![i as u8 + 1; 1000];
            commit(&mut journal, &segment, slot, &bytes);
            expect[slot as usize..slot as usize + 1000].copy_from_slice(&bytes);
        }
        assert_eq!(journal.active, 0, "the writes went around both halves");
        drop(journal); // a crash: no close, nothing marked empty
        segment.write_all_at(&vec![0u8; 10 * 1000], 0).expect("lose the segment's bytes");
        replay(&path).expect("replay").expect("a journal");
        let mut got = vec![0u8; 10 * 1000];
        segment.read_exact_at(&mut got, 0).expect("read");
        let slots = |v: &[u8]| v.chunks(1000).map(|c| c[0]).collect::<Vec<_>>();
        assert_eq!(slots(&got), slots(&expect));
    }
}
