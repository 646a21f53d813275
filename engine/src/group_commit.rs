//! Group commit: one committing thread per group, one write per dirty segment and one
//! `fdatasync` per cycle (of the group's journal, [`crate::journal`]; without a journal,
//! one per dirty segment), every waiter of the cycle acknowledged at once.
//!
//! A group owns one thread (in the server, one per core) and any number of shard logs.
//! Producers append to a log's open batch and wait; the first producer to make a log dirty
//! queues it. The committer's cycle takes every dirty log, hands each log's encoded batches
//! to the I/O backend as one positioned write (plus one `fdatasync` under `sync`), and runs
//! all of them together, so that N shards' syncs overlap. Then it publishes each log's
//! durable watermark and completes its waiters.
//!
//! Back of the envelope: a cycle costs about one sync (0.15–4 ms on the measured disks) no
//! matter how many records it carries, so with P producers each waiting for its ack the
//! log commits about P records per sync; throughput grows with P until the write itself
//! dominates, and latency stays near one sync plus the time spent waiting for the previous
//! cycle (at most one more sync).
//!
//! # Invariants
//! - This module's thread is the only code that moves a log's durable watermark.
//! - A failed write or sync completes that cycle's waiters with the error and poisons the
//!   log: nothing from the cycle is acknowledged, and the log takes no more writes.

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::handoff::{DirtyQueue, Taken};
use crate::io::{self, CommitIo, CycleOp, IoBackend};
use crate::journal::Journal;
use crate::prepare::{Preparer, PreparerHandle};
use crate::shard_log::{Answer, LogInner, Prepared};
use crate::sync::Arc;

/// When an append is acknowledged, and what readers may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge after `fdatasync` (the default). Nothing acknowledged is ever lost.
    #[default]
    Sync,
    /// Acknowledge after the write reaches the page cache; `fdatasync` every `interval_ms`.
    /// A machine crash may lose up to the last interval of acknowledged records.
    Interval {
        /// Milliseconds between two `fdatasync`s (more than 0).
        interval_ms: u64,
    },
    /// Acknowledge after the write; never sync except when sealing. Benchmarks only.
    None,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Durability::Sync),
            "none" => Ok(Durability::None),
            other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(Durability::Interval { interval_ms: ms }),
                _ => Err(format!(
                    "unknown durability {other:?}; expected sync, interval:<ms> or none"
                )),
            },
        }
    }
}

/// Settings of a commit group.
#[derive(Debug, Clone, Default)]
pub struct CommitConfig {
    /// When appends are acknowledged (default [`Durability::Sync`]).
    pub durability: Durability,
    /// Which implementation runs the writes and syncs (default [`IoBackend::Auto`]:
    /// io_uring, except under a journal, where plain calls cost less).
    pub io_backend: IoBackend,
    /// Under [`Durability::Sync`], a journal file for this group (see [`crate::journal`]):
    /// one `fdatasync` per cycle instead of one per dirty segment. Replayed when the group
    /// starts. `None` (the default): segments are synced directly.
    pub journal: Option<std::path::PathBuf>,
    /// Size of the journal file (0: [`crate::journal::JOURNAL_BYTES_DEFAULT`]).
    pub journal_bytes: u64,
}

pub(crate) type Queue = DirtyQueue<Arc<LogInner>>;

/// Holds commit groups back while one call appends to several logs (PutRecords), so that
/// each group commits them in one cycle; released on drop. See [`DirtyQueue::hold`].
#[derive(Default)]
pub(crate) struct CommitHold(Vec<Arc<Queue>>);

impl CommitHold {
    /// Holds `queue` (once, however often it is passed).
    pub(crate) fn add(&mut self, queue: &Arc<Queue>) {
        if !self.0.iter().any(|q| Arc::ptr_eq(q, queue)) {
            queue.hold();
            self.0.push(Arc::clone(queue));
        }
    }
}

impl Drop for CommitHold {
    fn drop(&mut self) {
        self.0.iter().for_each(|q| q.release());
    }
}

/// A committing thread and the logs it serves. Dropping the group commits what is queued
/// and stops the thread; logs opened in it then refuse appends.
#[derive(Debug)]
pub struct CommitGroup {
    queue: Arc<Queue>,
    durability: Durability,
    /// Commits through a journal (under `sync`, with one configured).
    journaled: bool,
    backend_name: &'static str,
    thread: Option<JoinHandle<()>>,
    preparer: Preparer,
}

impl CommitGroup {
    /// Starts the committing thread and its I/O backend.
    pub fn start(config: CommitConfig) -> Result<Self> {
        let backend = config.io_backend;
        let journal_bytes = match config.journal_bytes {
            0 => crate::journal::JOURNAL_BYTES_DEFAULT,
            n => n.max(crate::journal::JOURNAL_BYTES_MIN),
        };
        let journal = match (&config.journal, config.durability) {
            (Some(path), Durability::Sync) => Some(path.clone()),
            (Some(path), _) => {
                // Not used in this mode, but what it holds must reach the segments; then
                // it is marked empty, so that it is not replayed again later.
                if crate::journal::replay(path)?.is_some() {
                    crate::journal::mark_empty(path)?;
                }
                None
            }
            (None, _) => None,
        };
        let journaled = journal.is_some();
        // Under a journal a cycle syncs one file (the journal) and writes the segments
        // through the page cache: io_uring's gain, overlapping many segments' syncs, is
        // not there, and ext4 hands each buffered write io_uring gets to an io-wq worker
        // (a thread wake-up per write). Measured in riffled (5 paired rounds, single-record
        // puts over 16 shards): plain calls took 16 % less CPU per record and carried 17 %
        // more records per second; batched puts did not lose (bench/README.md). So `Auto`
        // means std there.
        let backend = match backend {
            IoBackend::Auto if journaled => IoBackend::Std,
            other => other,
        };
        let mut group = Self::start_with(config.durability, move || {
            let io = io::commit_io(backend)?;
            let journal = match journal {
                Some(path) => Some(Journal::open(&path, journal_bytes)?),
                None => None,
            };
            Ok((io, journal))
        })?;
        group.journaled = journaled;
        Ok(group)
    }

    /// Starts the committing thread with the I/O backend `make_io` builds on that thread.
    pub(crate) fn start_with(
        durability: Durability,
        make_io: impl FnOnce() -> Result<(Box<dyn CommitIo>, Option<Journal>)> + Send + 'static,
    ) -> Result<Self> {
        let queue = Arc::new(Queue::new());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_queue = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("riffle-commit".into())
            .spawn(move || match make_io() {
                Ok((io, journal)) => {
                    let (acks, ack_rx) = std::sync::mpsc::channel::<Acks>();
                    let acker =
                        std::thread::Builder::new().name("riffle-ack".into()).spawn(move || {
                            for batch in ack_rx {
                                for (waiters, result) in batch {
                                    waiters.iter().for_each(|w| w.complete(result.clone()));
                                }
                            }
                        });
                    let acker = match acker {
                        Ok(a) => a,
                        Err(e) => {
                            let _ = ready_tx.send(Err(Error::io("riffle-ack thread", e)));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(io.name()));
                    run(&thread_queue, durability, io, journal, &acks);
                    drop(acks);
                    let _ = acker.join();
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| Error::io("riffle-commit thread", e))?;
        let backend_name = ready_rx.recv().map_err(|_| Error::Closed)??;
        let preparer = Preparer::start()?;
        Ok(CommitGroup {
            queue,
            durability,
            journaled: false,
            backend_name,
            thread: Some(thread),
            preparer,
        })
    }

    /// The I/O backend in use: `"io_uring"` or `"std"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    /// The durability mode the group commits under.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Whether the group commits through a journal: then segments are synced only at the
    /// journal's background checkpoints, never on an acknowledgement's path.
    pub fn journaled(&self) -> bool {
        self.journaled
    }

    pub(crate) fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    pub(crate) fn preparer(&self) -> PreparerHandle {
        self.preparer.handle()
    }
}

impl Drop for CommitGroup {
    fn drop(&mut self) {
        self.queue.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answers of one cycle: each log's waiters and their common result.
type Acks = Vec<Answer>;

/// The committer's loop. Waiters are answered by a second thread (`riffle-ack`), so that
/// waking tens of blocked producers (a futex wake each) overlaps with the next cycle's
/// write and sync instead of delaying it: measured, acknowledging 55 waiters cost the
/// commit thread about as much CPU as the write and sync themselves.
fn run(
    queue: &Queue,
    durability: Durability,
    mut io: Box<dyn CommitIo>,
    mut journal: Option<Journal>,
    acks: &Sender<Acks>,
) {
    let interval = match durability {
        Durability::Interval { interval_ms } => Some(Duration::from_millis(interval_ms)),
        _ => None,
    };
    let mut unsynced: Vec<Arc<LogInner>> = Vec::new();
    let mut last_sync = Instant::now();
    loop {
        let (logs, stopping) = match queue.take(interval) {
            Taken::Items(items) => (items, false),
            Taken::Shutdown(items) => (items, true),
        };
        let sync_due = interval.is_some_and(|i| last_sync.elapsed() >= i) || stopping;
        let answers = cycle(&mut *io, durability, logs, sync_due, &mut unsynced, &mut journal);
        if !answers.is_empty() {
            // The acker outlives this loop; a send can only fail if it panicked.
            let _ = acks.send(answers);
        }
        if sync_due && interval.is_some() {
            sync_unsynced(&mut *io, &mut unsynced);
            last_sync = Instant::now();
        }
        if stopping {
            sync_unsynced(&mut *io, &mut unsynced);
            if let Some(mut j) = journal.take() {
                if let Err(e) = j.close() {
                    tracing::error!(error = %e, "journal checkpoint at stop failed; the next start replays it");
                }
            }
            return;
        }
    }
}

/// One commit cycle over the dirty logs.
fn cycle(
    io: &mut dyn CommitIo,
    durability: Durability,
    logs: Vec<Arc<LogInner>>,
    sync_due: bool,
    unsynced: &mut Vec<Arc<LogInner>>,
    journal: &mut Option<Journal>,
) -> Acks {
    if logs.is_empty() {
        return Vec::new();
    }
    let sync = match durability {
        Durability::Sync => true,
        Durability::Interval { .. } => sync_due,
        Durability::None => false,
    };
    let journaled = journal.is_some() && durability == Durability::Sync;
    let mut prepared: Vec<(Arc<LogInner>, Prepared)> = Vec::with_capacity(logs.len());
    let mut ops: Vec<CycleOp> = Vec::with_capacity(logs.len() + 1);
    // With a journal, the cycle's logs are watched for a failed commit (below).
    let mut journaled_logs: Vec<Arc<LogInner>> = Vec::new();
    for log in logs {
        if journaled {
            journaled_logs.push(Arc::clone(&log));
        }
        if let Some(p) = log.prepare(io, sync && !journaled, &mut ops) {
            prepared.push((log, p));
        }
    }
    let staged = match journal.as_mut().filter(|_| journaled) {
        Some(j) => match j.stage(&mut ops) {
            Ok(staged) => staged,
            Err(e) => {
                // A checkpoint sync failed: the journal keeps what it holds (the next start
                // replays it) and the group syncs segments directly from now on.
                tracing::error!(error = %e, "journal checkpoint failed; syncing segments directly");
                *journal = None;
                false
            }
        },
        None => false,
    };
    if journaled && !staged {
        ops.iter_mut().for_each(|op| op.sync = true);
    }
    io.run(&mut ops);
    if staged {
        if let Some(j) = journal.as_mut() {
            j.finish(&mut ops);
        }
    }
    let mut ops = ops.into_iter();
    let mut answers = Vec::with_capacity(prepared.len());
    for (log, p) in prepared {
        let mine: Vec<CycleOp> = ops.by_ref().take(p.op_count()).collect();
        let ok = mine.iter().all(|op| op.result.is_ok());
        answers.push(log.finish(p, mine, io, matches!(durability, Durability::None)));
        let interval = matches!(durability, Durability::Interval { .. });
        if ok && !sync && interval && !unsynced.iter().any(|l| Arc::ptr_eq(l, &log)) {
            unsynced.push(log);
        }
    }
    if journal.is_some() && journaled_logs.iter().any(|l| l.is_poisoned()) {
        // A segment write or sync failed (a seal, a roll, this cycle's write). A failed
        // fdatasync may have dropped journaled bytes of that segment from the page cache's
        // path to the disk, so that a later checkpoint's sync would succeed without them:
        // the journal must keep them. It is left as it is, replayed at the next start, and
        // the group syncs segments directly from now on. (Found by the simulated disk.)
        tracing::error!("a commit failed; the journal is kept for replay and no longer used");
        *journal = None;
    }
    answers
}

/// `Interval` mode: sync every log written since the last sync, all together.
fn sync_unsynced(io: &mut dyn CommitIo, unsynced: &mut Vec<Arc<LogInner>>) {
    let mut ops: Vec<CycleOp> = Vec::new();
    let mut logs = Vec::new();
    for log in unsynced.drain(..) {
        if let Some(op) = log.sync_op() {
            ops.push(op);
            logs.push(log);
        }
    }
    io.run(&mut ops);
    for (log, op) in logs.into_iter().zip(ops) {
        match op.result {
            Ok(()) => log.synced(),
            Err(e) => log.poison(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Record;
    use crate::io::std_file::StdIo;
    use crate::shard_log::{LogConfig, ShardLog};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The std backend, except that the `fail_at`-th op (counting from 0) fails its sync.
    struct FailingSync {
        ops: std::sync::Arc<AtomicUsize>,
        fail_at: usize,
    }

    impl CommitIo for FailingSync {
        fn run(&mut self, ops: &mut [CycleOp]) {
            StdIo.run(ops);
            for op in ops.iter_mut() {
                if self.ops.fetch_add(1, Ordering::SeqCst) == self.fail_at && op.sync {
                    op.result =
                        Err(Error::io(op.file.path(), std::io::Error::from_raw_os_error(5)));
                }
            }
        }
        fn forget(&mut self, _: u64) {}
        fn name(&self) -> &'static str {
            "failing"
        }
    }

    fn rec(data: &[u8]) -> Record<'_> {
        Record { partition_key: b"k", explicit_hash_key: None, data }
    }

    #[test]
    fn a_failed_fdatasync_acknowledges_nothing_and_stops_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ops = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = ops.clone();
        let group = CommitGroup::start_with(Durability::Sync, move || {
            Ok((Box::new(FailingSync { ops: counter, fail_at: 3 }) as Box<dyn CommitIo>, None))
        })
        .expect("group");
        let log = ShardLog::open(dir.path(), LogConfig::default(), &group).expect("open");
        for i in 0..3u8 {
            assert_eq!(log.append_wait(&[rec(&[i])]).expect("acked"), u64::from(i));
        }
        match log.append_wait(&[rec(b"lost")]) {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(5)),
            other => panic!("the failed cycle must not be acknowledged: {other:?}"),
        }
        assert_eq!(log.end_position(), 3, "nothing from the failed cycle becomes readable");
        let reason = log.poisoned().expect("the log says why it stopped");
        assert!(reason.contains("I/O error"), "{reason}");
        assert!(matches!(log.append(&[rec(b"after")]), Err(Error::Poisoned { .. })));
        assert!(matches!(log.flush(), Err(Error::Poisoned { .. })));
        drop(log);
        drop(group);
        // Reopening recovers what is on disk; the acknowledged records are all there.
        let group = CommitGroup::start(CommitConfig {
            io_backend: IoBackend::Std,
            ..CommitConfig::default()
        })
        .expect("group");
        let log = ShardLog::open(dir.path(), LogConfig::default(), &group).expect("reopen");
        assert!(log.end_position() >= 3);
        assert_eq!(
            log.append_wait(&[rec(b"again")]).expect("appends work after reopen"),
            log.end_position() - 1
        );
    }
}
