//! The log of one shard: its segments, its appenders, its readers.
//!
//! Three watermarks, in positions (record numbers within the shard):
//!
//! - **appended**: the next position to assign; moved by producers under the pending lock.
//! - **written**: bytes handed to the file; moved by the committer only.
//! - **durable**: readable and acknowledged; published by the committer only, after the
//!   write (and, under `sync`, the `fdatasync`) of everything below it.
//!
//! # Invariants
//! - `durable <= written <= appended`.
//! - The next segment's base is the previous segment's end position.
//! - Readers touch only bytes below a segment's published durable length, with no lock:
//!   an acquire load of the watermark, and an `ArcSwap` load of the segment list.
//! - Arrival timestamps never decrease within a shard: each append takes
//!   `max(clock, previous timestamp)`, so the time index is sorted.
//!
//! Thread use: `append`, `read`, and the position queries may be called from any thread;
//! the commit path runs on the log's commit group thread.

use std::fs::File;
use std::path::{Path, PathBuf};

use arc_swap::ArcSwap;

use crate::batch::{BatchBuilder, BatchHeader, EncodedBatches, Record, BATCH_HEADER_BYTES};
use crate::clock::{Clock, SystemClock};
use crate::constants::{
    BATCH_BYTES_MAX, BATCH_BYTES_TARGET_DEFAULT, INDEX_INTERVAL_BYTES_DEFAULT,
    SEGMENT_AGE_MS_DEFAULT, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
use crate::error::{Error, Result};
use crate::group_commit::{CommitGroup, Durability, Queue};
use crate::handoff::{Completion, CompletionFuture};
use crate::io::{self, CommitIo, CycleOp};
use crate::prepare::{PrepSlot, PreparerHandle, PREPARED_NAME};
use crate::segment::{self, Segment, SegmentRead, SEGMENT_HEADER_BYTES};
use crate::sync::{lock, Arc, Mutex};
use crate::watermark::Watermark;

/// Settings of one shard log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Preallocated size of each segment file (64 KiB..=1 GiB, default 128 MiB).
    pub segment_bytes: u64,
    /// Log bytes between two sparse index entries (default 4 KiB).
    pub index_interval_bytes: u32,
    /// Size at which an open batch is closed and the next record starts a new one.
    pub batch_bytes_target: usize,
    /// Age at which the active segment is rolled even if not full (default 1 hour).
    pub segment_age_ms: u64,
    /// Source of arrival timestamps and segment ages.
    pub clock: std::sync::Arc<dyn Clock>,
    /// Zero-fill the next segment file in the background once the active one is a quarter full
    /// (default on), so that writes overwrite existing blocks; see [`crate::prepare`].
    pub prepare_segments: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            batch_bytes_target: BATCH_BYTES_TARGET_DEFAULT,
            segment_age_ms: SEGMENT_AGE_MS_DEFAULT,
            clock: std::sync::Arc::new(SystemClock),
            prepare_segments: true,
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(Error::Config(format!(
                "segment size {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX} bytes",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::Config("index interval must be at least 1 byte".into()));
        }
        let room = (self.segment_bytes - SEGMENT_HEADER_BYTES) as usize;
        if self.batch_bytes_target < BATCH_HEADER_BYTES
            || self.batch_bytes_target > room.min(BATCH_BYTES_MAX)
        {
            return Err(Error::Config(format!(
                "batch target {} must be between {BATCH_HEADER_BYTES} and {} bytes",
                self.batch_bytes_target,
                room.min(BATCH_BYTES_MAX)
            )));
        }
        Ok(())
    }
}

/// The acknowledgement of an append: wait for it (blocking or `.await`).
#[must_use = "an append is acknowledged only when its ticket completes"]
#[derive(Debug)]
pub struct AppendTicket {
    /// Position of the first appended record; the rest follow contiguously.
    pub first_position: u64,
    /// Number of records appended.
    pub count: u32,
    completion: Arc<Completion<Result<()>>>,
}

impl AppendTicket {
    /// Blocks until the records are durable (under the group's durability mode). Returns
    /// the first record's position, or the commit error (nothing was acknowledged).
    pub fn wait(self) -> Result<u64> {
        self.completion.wait().map(|()| self.first_position)
    }

    /// True once the outcome is known.
    pub fn is_done(&self) -> bool {
        self.completion.is_ready()
    }

    /// The outcome as a future, for async callers.
    pub fn into_future(self) -> impl std::future::Future<Output = Result<u64>> {
        let first = self.first_position;
        let fut = CompletionFuture { completion: self.completion };
        async move { fut.await.map(|()| first) }
    }
}

/// What producers share, under the pending lock.
#[derive(Debug)]
struct Pending {
    builder: BatchBuilder,
    /// The appended watermark: next position to assign.
    next_position: u64,
    last_timestamp_ms: u64,
    waiters: Vec<Arc<Completion<Result<()>>>>,
    /// True while the log sits in the commit group's dirty queue.
    enqueued: bool,
    state: LogState,
}

#[derive(Debug, Clone)]
enum LogState {
    Open,
    Sealed,
    Closed,
    Poisoned(std::sync::Arc<str>),
}

/// The committer's state; locked only by the commit thread (and by `seal`/`close`).
#[derive(Debug)]
struct Writer {
    /// The segment being appended to; `None` after a seal or before the first append.
    active: Option<std::sync::Arc<Segment>>,
    /// Bytes written to the active segment (header included): the written watermark.
    written_len: u64,
    spare: EncodedBatches,
}

/// A log's share of a commit cycle, between `prepare` and `finish`: one placement per
/// segment the cycle writes to (more than one only when the cycle rolls a segment).
pub(crate) struct Prepared {
    placements: Vec<Placement>,
    batches: Vec<(usize, BatchHeader)>,
    waiters: Vec<Arc<Completion<Result<()>>>>,
}

/// Batches of one cycle going to one segment: each batch's (file offset, header), the
/// range of the cycle's buffer they occupy, and whether the segment is full after them
/// (sealed once the cycle's writes succeed).
struct Placement {
    segment: std::sync::Arc<Segment>,
    batches: Vec<(u64, BatchHeader)>,
    range: std::ops::Range<usize>,
    seal_after: bool,
}

impl Prepared {
    /// Number of I/O ops this log contributes to the cycle.
    pub(crate) fn op_count(&self) -> usize {
        self.placements.len()
    }
}

/// A cycle's waiters of one log and the answer they all get.
pub(crate) type Answer = (Vec<Arc<Completion<Result<()>>>>, Result<()>);

/// Shared state of one log.
#[derive(Debug)]
pub(crate) struct LogInner {
    dir: PathBuf,
    config: LogConfig,
    pending: Mutex<Pending>,
    writer: Mutex<Writer>,
    segments: ArcSwap<Vec<std::sync::Arc<Segment>>>,
    durable: Watermark,
    queue: Arc<Queue>,
    prep: std::sync::Arc<PrepSlot>,
    preparer: PreparerHandle,
    /// Zero-fill next segments in the background (config, and never under `None`: the
    /// zero-fill doubles the disk writes and buys nothing without syncs).
    prepare_segments: bool,
    /// Seal segments durably (sync, trim); false under `Durability::None`.
    durable_seals: bool,
    /// Tasks waiting for the durable watermark to move (push subscriptions).
    watchers: crate::handoff::WakeList,
    _lock: File,
}

/// Completes when the log's durable end passes a position, or the log stops taking writes
/// (sealed, closed, poisoned). See [`ShardLog::durable_beyond`].
#[derive(Debug)]
pub struct DurableBeyond {
    log: ShardLog,
    position: u64,
}

impl std::future::Future for DurableBeyond {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let inner = &self.log.inner;
        let ready = || {
            inner.durable.load() > self.position
                || !matches!(lock(&inner.pending).state, LogState::Open)
        };
        if ready() {
            return std::task::Poll::Ready(());
        }
        inner.watchers.register(cx.waker());
        // Re-check after registering: a publish in between would otherwise be missed.
        if ready() {
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    }
}

/// The durable, segmented log of one shard. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct ShardLog {
    inner: Arc<LogInner>,
}

impl ShardLog {
    /// Opens (creating if needed) the log in `dir`, recovering it from what is on disk, and
    /// attaches it to `group`, whose thread will commit its appends.
    pub fn open(dir: &Path, config: LogConfig, group: &CommitGroup) -> Result<ShardLog> {
        config.validate()?;
        if !dir.exists() {
            io::create_dir_all(dir)?;
        }
        // The directory's own entry must be durable before anything in it is. It is synced
        // at every open, not only at creation: a directory sync that failed before the
        // process restarted leaves entries that the page cache shows and the disk may not
        // hold (found by the simulated disk).
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            io::sync_dir(parent)?;
        }
        let lock_path = dir.join("LOCK");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: dir.to_path_buf() })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let segments = crate::recovery::open_segments(dir, config.index_interval_bytes)?;
        // Likewise the segments' entries (a roll whose directory sync failed).
        io::sync_dir(dir)?;
        let end = segments.last().map_or(0, |s| s.end_position());
        let last_timestamp_ms = match segments.last() {
            Some(s) => s.max_timestamp_ms()?.unwrap_or(0),
            None => 0,
        };
        let (active, written_len) = match segments.last() {
            Some(s) if !s.is_sealed() => (Some(std::sync::Arc::clone(s)), s.durable_len()),
            _ => (None, 0),
        };
        let inner = LogInner {
            dir: dir.to_path_buf(),
            pending: Mutex::new(Pending {
                builder: BatchBuilder::with_capacity(
                    config.batch_bytes_target + BATCH_HEADER_BYTES,
                ),
                next_position: end,
                last_timestamp_ms,
                waiters: Vec::new(),
                enqueued: false,
                state: LogState::Open,
            }),
            writer: Mutex::new(Writer { active, written_len, spare: EncodedBatches::default() }),
            segments: ArcSwap::from_pointee(segments),
            durable: Watermark::new(end),
            watchers: crate::handoff::WakeList::default(),
            queue: Arc::clone(group.queue()),
            prep: std::sync::Arc::new(PrepSlot::default()),
            preparer: group.preparer(),
            // Zero-filled segments make the syncs that acknowledge appends cheaper. Under a
            // journal those syncs are the journal's, and segments are synced only by its
            // background checkpoints, so filling them would only write every byte twice
            // (measured: the preparer took 56 % of riffled's CPU under batched puts).
            prepare_segments: config.prepare_segments
                && group.durability() != Durability::None
                && !group.journaled(),
            durable_seals: group.durability() != Durability::None,
            config,
            _lock: lock_file,
        };
        Ok(ShardLog { inner: Arc::new(inner) })
    }

    /// Appends records as one unit: they get contiguous positions and are acknowledged
    /// together. Returns at once; the ticket completes after the commit.
    pub fn append(&self, records: &[Record<'_>]) -> Result<AppendTicket> {
        if records.is_empty() {
            return Err(Error::InvalidArgument("an append needs at least one record".into()));
        }
        let room =
            (self.inner.config.segment_bytes - SEGMENT_HEADER_BYTES) as usize - BATCH_HEADER_BYTES;
        for r in records {
            r.check_bounds().map_err(Error::InvalidArgument)?;
            if r.encoded_bytes() > room {
                return Err(Error::InvalidArgument(format!(
                    "a record of {} bytes does not fit in a segment of {} bytes",
                    r.encoded_bytes(),
                    self.inner.config.segment_bytes
                )));
            }
        }
        let count = u32::try_from(records.len())
            .map_err(|_| Error::InvalidArgument("too many records in one append".into()))?;
        let completion = Arc::new(Completion::new());
        let target = self.inner.config.batch_bytes_target;
        let mut pending = lock(&self.inner.pending);
        pending.check_open()?;
        let now = self.inner.config.clock.now_ms();
        let timestamp_ms = now.max(pending.last_timestamp_ms);
        pending.last_timestamp_ms = timestamp_ms;
        let first_position = pending.next_position;
        for r in records {
            let open = pending.builder.open_batch_bytes();
            if !pending.builder.has_open_batch()
                || (open > BATCH_HEADER_BYTES && open + r.encoded_bytes() > target)
            {
                let base = pending.next_position;
                pending.builder.begin(base);
            }
            pending.builder.push(r, timestamp_ms);
            pending.next_position += 1;
        }
        pending.waiters.push(Arc::clone(&completion));
        LogInner::enqueue(&self.inner, pending)?;
        Ok(AppendTicket { first_position, count, completion })
    }

    /// The queue of the commit group this log belongs to.
    pub(crate) fn commit_queue(&self) -> &Arc<Queue> {
        &self.inner.queue
    }

    /// Appends and waits for the acknowledgement; returns the first position.
    pub fn append_wait(&self, records: &[Record<'_>]) -> Result<u64> {
        self.append(records)?.wait()
    }

    /// Waits until everything appended before this call is durable.
    pub fn flush(&self) -> Result<()> {
        let completion = Arc::new(Completion::new());
        let mut pending = lock(&self.inner.pending);
        if let LogState::Poisoned(reason) = &pending.state {
            return Err(Error::Poisoned { reason: reason.clone() });
        }
        if pending.next_position == self.inner.durable.load() && !pending.enqueued {
            return Ok(());
        }
        pending.waiters.push(Arc::clone(&completion));
        LogInner::enqueue(&self.inner, pending)?;
        completion.wait()
    }

    /// Reads whole batches from the one containing `position`, about `max_bytes` at most
    /// (always at least one batch), from a single segment. The bytes borrow the segment's
    /// mapping. `None` when `position` is at or past the durable end. A position before the
    /// first retained record reads from the first retained record.
    pub fn read(&self, position: u64, max_bytes: usize) -> Result<Option<SegmentRead>> {
        let max_bytes = max_bytes.min(crate::constants::READ_BYTES_MAX);
        if position >= self.inner.durable.load() {
            return Ok(None);
        }
        let segments = self.inner.segments.load();
        let at = segments.partition_point(|s| s.base_position <= position);
        let start = at.saturating_sub(1);
        for segment in &segments[start..] {
            if let Some(read) = segment.read(position, max_bytes)? {
                return Ok(Some(read));
            }
        }
        Ok(None)
    }

    /// The first position whose record arrived at or after `timestamp_ms`, or `None` if no
    /// durable record did.
    pub fn position_at_timestamp(&self, timestamp_ms: u64) -> Result<Option<u64>> {
        for segment in self.inner.segments.load().iter() {
            if let Some(p) = segment.position_at_timestamp(timestamp_ms)? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// First retained position (the start of the oldest segment).
    pub fn start_position(&self) -> u64 {
        self.inner
            .segments
            .load()
            .first()
            .map_or_else(|| self.inner.durable.load(), |s| s.base_position)
    }

    /// One past the last durable (readable, acknowledged) position.
    pub fn end_position(&self) -> u64 {
        self.inner.durable.load()
    }

    /// A future that completes when a record at `position` or later is durable, or when
    /// the log stops taking writes (sealed as a parent shard, closed, or stopped by a failed
    /// commit): what a push subscription waits on at the tip.
    pub fn durable_beyond(&self, position: u64) -> DurableBeyond {
        DurableBeyond { log: self.clone(), position }
    }

    /// One past the last appended (not necessarily durable) position.
    pub fn appended_position(&self) -> u64 {
        lock(&self.inner.pending).next_position
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.inner.segments.load().len()
    }

    /// Arrival time of the newest durable record, if any.
    pub fn last_timestamp_ms(&self) -> Result<Option<u64>> {
        for segment in self.inner.segments.load().iter().rev() {
            if let Some(ts) = segment.max_timestamp_ms()? {
                return Ok(Some(ts));
            }
        }
        Ok(None)
    }

    /// Retention: deletes whole segments all of whose records arrived before `cutoff_ms`,
    /// oldest first, and returns how many it deleted.
    ///
    /// The newest segment is never deleted, because its base position is what a reopened
    /// log continues from. When it is fully expired too (a quiet shard) and no append is in
    /// flight, the log rolls: it seals it, starts an empty segment at the same end position,
    /// and deletes the old one. Readers that hold bytes of a deleted segment keep them (the
    /// mapping lives until the last `Bytes` drops), and only whole files are unlinked, never
    /// truncated. A crash part-way leaves segments that the next call deletes again.
    pub fn expire_segments(&self, cutoff_ms: u64) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let segments = self.inner.segments.load_full();
            let Some(first) = segments.first() else { return Ok(deleted) };
            let expired = match first.max_timestamp_ms()? {
                Some(ts) => ts < cutoff_ms,
                // An empty segment holds nothing to expire; an empty sole segment is kept
                // (it carries the log's position, and a roll would reuse its file names).
                None => first.is_sealed() && segments.len() > 1,
            };
            if !expired {
                return Ok(deleted);
            }
            if segments.len() == 1 && !self.roll_expired(first)? {
                return Ok(deleted);
            }
            self.remove_first_segment(first)?;
            deleted += 1;
        }
    }

    /// Replaces the fully expired active segment `old` by an empty one at the same end
    /// position. False if the log is busy (appends in flight) or no longer open.
    fn roll_expired(&self, old: &std::sync::Arc<Segment>) -> Result<bool> {
        let mut writer = lock(&self.inner.writer);
        let pending = lock(&self.inner.pending);
        let idle = pending.next_position == self.inner.durable.load() && !pending.enqueued;
        if !idle || !matches!(pending.state, LogState::Open) {
            return Ok(false);
        }
        let still_first = self.inner.segments.load().first().map(std::sync::Arc::as_ptr)
            == Some(std::sync::Arc::as_ptr(old));
        if !still_first
            || pending.next_position != old.end_position()
            || old.end_position() == old.base_position
        {
            return Ok(false);
        }
        if let Some(active) = writer.active.take() {
            active.seal(self.inner.durable_seals)?;
        }
        self.inner.create_segment(&mut writer, pending.next_position)?;
        Ok(true)
    }

    /// Unlists `first` for readers and unlinks its files (log first: index files without a
    /// log are removed by recovery).
    fn remove_first_segment(&self, first: &std::sync::Arc<Segment>) -> Result<()> {
        {
            let _writer = lock(&self.inner.writer);
            let list = self.inner.segments.load();
            let rest: Vec<_> =
                list.iter().filter(|s| !std::sync::Arc::ptr_eq(s, first)).cloned().collect();
            self.inner.segments.store(std::sync::Arc::new(rest));
        }
        io::remove_file(&first.log_path())?;
        for ext in ["idx", "tix"] {
            io::remove_file(&self.inner.dir.join(segment::file_name(first.base_position, ext)))?;
        }
        Ok(())
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Seals the log: waits for pending appends, then closes it for writes (as a parent
    /// shard after a split or merge) and seals the active segment. The sealed state itself
    /// is not stored in the log directory: a reopened log takes appends again, so whoever
    /// owns the shard's lifecycle (the stream catalog) records that it is closed.
    pub fn seal(&self) -> Result<()> {
        self.flush()?;
        lock(&self.inner.pending).state = LogState::Sealed;
        self.inner.watchers.wake_all();
        self.flush()?;
        let mut writer = lock(&self.inner.writer);
        if let Some(active) = writer.active.take() {
            active.seal(self.inner.durable_seals)?;
        }
        Ok(())
    }

    /// Waits for pending appends, flushes the active segment's indexes and refuses further
    /// appends. Dropping the last handle without closing is also safe: recovery handles it.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        lock(&self.inner.pending).state = LogState::Closed;
        self.inner.watchers.wake_all();
        let writer = lock(&self.inner.writer);
        if let Some(active) = &writer.active {
            active.flush_indexes()?;
        }
        Ok(())
    }

    /// The reason the log stopped taking writes, if a commit failed.
    pub fn poisoned(&self) -> Option<std::sync::Arc<str>> {
        match &lock(&self.inner.pending).state {
            LogState::Poisoned(reason) => Some(reason.clone()),
            _ => None,
        }
    }
}

impl Pending {
    fn check_open(&self) -> Result<()> {
        match &self.state {
            LogState::Open => Ok(()),
            LogState::Sealed => Err(Error::Sealed),
            LogState::Closed => Err(Error::Closed),
            LogState::Poisoned(reason) => Err(Error::Poisoned { reason: reason.clone() }),
        }
    }
}

impl LogInner {
    /// Queues the log for the next commit cycle unless it is queued already. If the commit
    /// group has shut down, nobody will commit: the log is closed and every waiter,
    /// including the caller's, is answered with `Closed`.
    fn enqueue(this: &Arc<Self>, mut pending: crate::sync::MutexGuard<'_, Pending>) -> Result<()> {
        let enqueue = !pending.enqueued;
        pending.enqueued = true;
        drop(pending);
        if !enqueue || this.queue.mark(Arc::clone(this)) {
            return Ok(());
        }
        let mut pending = lock(&this.pending);
        pending.state = LogState::Closed;
        let waiters = std::mem::take(&mut pending.waiters);
        drop(pending);
        waiters.iter().for_each(|w| w.complete(Err(Error::Closed)));
        Err(Error::Closed)
    }

    /// Takes the log's pending batches and turns them into this cycle's writes (appended
    /// to `ops`). Creates the segments the cycle rolls into *before* anything is written,
    /// so that a failed roll leaves nothing of the cycle on disk. Returns `None` if there
    /// is nothing to write (waiters are then completed at once).
    pub(crate) fn prepare(
        &self,
        io: &mut dyn CommitIo,
        sync: bool,
        ops: &mut Vec<CycleOp>,
    ) -> Option<Prepared> {
        let mut writer = lock(&self.writer);
        let spare = std::mem::take(&mut writer.spare);
        let (encoded, waiters) = {
            let mut pending = lock(&self.pending);
            pending.enqueued = false;
            if let LogState::Poisoned(reason) = &pending.state {
                let error = Error::Poisoned { reason: reason.clone() };
                let waiters = std::mem::take(&mut pending.waiters);
                drop(pending);
                waiters.iter().for_each(|w| w.complete(Err(error.clone())));
                return None;
            }
            (pending.builder.take(spare), std::mem::take(&mut pending.waiters))
        };
        if encoded.batches.is_empty() {
            writer.spare = encoded;
            drop(writer);
            waiters.iter().for_each(|w| w.complete(Ok(())));
            return None;
        }
        match self.place(&mut writer, io, &encoded) {
            Ok(placements) => {
                let EncodedBatches { bytes, batches } = encoded;
                let mut bytes = Some(bytes);
                for (i, p) in placements.iter().enumerate() {
                    // The common case is one placement, which takes the buffer itself;
                    // a cycle that rolls copies the later parts (rare, and at most a cycle).
                    let (buf, range) = if i + 1 == placements.len() {
                        (bytes.take().unwrap_or_default(), p.range.clone())
                    } else {
                        let src = bytes.as_ref().map_or(&[][..], |b| &b[p.range.clone()]);
                        (src.to_vec(), 0..p.range.len())
                    };
                    let file_offset = p.batches.first().map_or(0, |b| b.0);
                    ops.push(CycleOp {
                        file: std::sync::Arc::clone(p.segment.file()),
                        file_offset,
                        range,
                        buf,
                        sync,
                        result: Ok(()),
                    });
                }
                Some(Prepared { placements, batches, waiters })
            }
            Err(e) => {
                drop(writer);
                self.poison(&e);
                waiters.iter().for_each(|w| w.complete(Err(e.clone())));
                None
            }
        }
    }

    /// Assigns the cycle's batches to segments and file offsets, creating the segments it
    /// rolls into. Writes no record bytes.
    fn place(
        &self,
        writer: &mut Writer,
        io: &mut dyn CommitIo,
        encoded: &EncodedBatches,
    ) -> Result<Vec<Placement>> {
        let first_base = encoded.batches[0].1.base_position;
        let now = self.config.clock.now_ms();
        let aged = writer.active.as_ref().is_some_and(|s| {
            s.end_position() > s.base_position
                && now.saturating_sub(s.created_ms) >= self.config.segment_age_ms
        });
        if aged {
            // Everything in the aged segment is durable already (earlier cycles).
            if let Some(active) = writer.active.take() {
                io.forget(active.file().uid());
                active.seal(self.durable_seals)?;
            }
        }
        if writer.active.is_none() {
            self.create_segment(writer, first_base)?;
        }
        let mut placements: Vec<Placement> = Vec::new();
        let mut current = Placement {
            segment: writer.active.clone().expect("an active segment was ensured"),
            batches: Vec::with_capacity(encoded.batches.len()),
            range: 0..0,
            seal_after: false,
        };
        for (buf_offset, header) in &encoded.batches {
            if writer.written_len + u64::from(header.batch_bytes) > current.segment.capacity {
                current.range.end = *buf_offset;
                current.seal_after = true;
                self.create_segment(writer, header.base_position)?;
                let next = Placement {
                    segment: writer.active.clone().expect("just created"),
                    batches: Vec::new(),
                    range: *buf_offset..*buf_offset,
                    seal_after: false,
                };
                placements.push(std::mem::replace(&mut current, next));
            }
            current.batches.push((writer.written_len, *header));
            writer.written_len += u64::from(header.batch_bytes);
        }
        current.range.end = encoded.bytes.len();
        placements.push(current);
        // A placement with no batches writes nothing (a roll at the cycle's first batch).
        placements.retain(|p| !p.batches.is_empty() || p.seal_after);
        let segment = writer.active.clone().expect("an active segment was ensured");
        if self.prepare_segments && writer.written_len > segment.capacity / 4 && self.prep.begin() {
            self.preparer.request(&self.dir, self.config.segment_bytes, &self.prep);
        }
        Ok(placements)
    }

    /// Creates the segment starting at `base`, makes it the active one and lists it for
    /// readers (empty until the cycle that fills it publishes).
    fn create_segment(&self, writer: &mut Writer, base: u64) -> Result<()> {
        let segment = Segment::create(
            &self.dir,
            base,
            self.config.segment_bytes,
            self.config.clock.now_ms(),
            self.config.index_interval_bytes,
            self.prep.take_ready(self.config.segment_bytes),
        )?;
        let mut list: Vec<_> = self.segments.load().iter().cloned().collect();
        list.push(std::sync::Arc::clone(&segment));
        self.segments.store(std::sync::Arc::new(list));
        writer.written_len = SEGMENT_HEADER_BYTES;
        writer.active = Some(segment);
        Ok(())
    }

    /// Completes a cycle with this log's ops (in the order `prepare` pushed them): if every
    /// write (and sync) succeeded, publishes the batches segment by segment, seals the
    /// segments the cycle filled, and answers every waiter `Ok`; otherwise publishes
    /// nothing, stops the log, and answers every waiter with the error.
    ///
    /// `index_now`: the written bytes may be indexed now (they were synced, or the mode is
    /// `None`, which never syncs and whose power-loss behaviour is undefined anyway).
    /// Returns the waiters and their answer; the caller delivers it (off the commit path).
    pub(crate) fn finish(
        &self,
        prepared: Prepared,
        ops: Vec<CycleOp>,
        io: &mut dyn CommitIo,
        index_now: bool,
    ) -> Answer {
        let Prepared { placements, batches, waiters } = prepared;
        debug_assert_eq!(placements.len(), ops.len());
        let failed = ops.iter().find_map(|op| op.result.as_ref().err().cloned());
        let result = match failed {
            Some(e) => {
                self.poison(&e);
                Err(e)
            }
            None => {
                for (p, op) in placements.iter().zip(&ops) {
                    if let Some((_, last)) = p.batches.last() {
                        let durable_len = op.file_offset + op.range.len() as u64;
                        p.segment.publish(&p.batches, durable_len, index_now || op.sync);
                        self.durable.publish(last.end_position());
                    }
                    if p.seal_after {
                        io.forget(p.segment.file().uid());
                        // The records are durable and published; a failed seal (index
                        // flush, trim) stops further writes but acknowledges them.
                        if let Err(e) = p.segment.seal(self.durable_seals) {
                            self.poison(&e);
                        }
                    }
                }
                Ok(())
            }
        };
        if let Some(op) = ops.into_iter().last() {
            let mut writer = lock(&self.writer);
            writer.spare = EncodedBatches { bytes: op.buf, batches };
        }
        self.watchers.wake_all();
        (waiters, result)
    }

    /// A sync-only op for the active segment (`Interval` mode's periodic sync).
    pub(crate) fn sync_op(&self) -> Option<CycleOp> {
        let writer = lock(&self.writer);
        let segment = writer.active.as_ref()?;
        Some(CycleOp {
            file: std::sync::Arc::clone(segment.file()),
            file_offset: writer.written_len,
            buf: Vec::new(),
            range: 0..0,
            sync: true,
            result: Ok(()),
        })
    }

    /// After a successful sync-only op: index what that sync made durable.
    pub(crate) fn synced(&self) {
        let writer = lock(&self.writer);
        if let Some(segment) = &writer.active {
            segment.index_synced();
        }
    }

    /// Stops the log after a failed commit.
    pub(crate) fn is_poisoned(&self) -> bool {
        matches!(lock(&self.pending).state, LogState::Poisoned(_))
    }

    pub(crate) fn poison(&self, error: &Error) {
        let reason: std::sync::Arc<str> = error.to_string().into();
        tracing::error!(dir = %self.dir.display(), %reason, "shard log stopped after a failed commit");
        let mut pending = lock(&self.pending);
        if !matches!(pending.state, LogState::Poisoned(_)) {
            pending.state = LogState::Poisoned(reason);
        }
        drop(pending);
        self.watchers.wake_all();
    }
}

/// Removes segment files left half-created (and a prepared next segment, which may be
/// incomplete) and returns the bases of the directory's segments in order.
pub(crate) fn segment_paths(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".log.tmp") || name == PREPARED_NAME {
            io::remove_file(&entry.path())?;
        } else if let Some(base) = segment::parse_log_name(name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
