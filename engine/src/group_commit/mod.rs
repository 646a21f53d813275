//! Group commit: one committer per group, one write per dirty segment and one
//! `fdatasync` per cycle (of the group's journal, [`crate::journal`]; without a journal,
//! one per dirty segment), every waiter of the cycle acknowledged at once.
//!
//! A group owns any number of shard logs and one committer: its own thread, or, handed
//! over with [`CommitGroup::driver`], a task on an event loop (in the server, the network
//! core the group belongs to; `driver.rs`). Exactly one of them runs cycles at a time.
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
//! - The group's committer (its thread or its driver, never both: the thread hands over
//!   between two cycles) is the only code that moves a log's durable watermark.
//! - A failed write or sync completes that cycle's waiters with the error and poisons the
//!   log: nothing from the cycle is acknowledged, and the log takes no more writes.

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::handoff::{DirtyQueue, Taken};
#[cfg(feature = "io-uring")]
use crate::io::std_file::StdIo;
use crate::io::{self, CommitIo, CycleOp, IoBackend};
use crate::journal::Journal;
use crate::prepare::{Preparer, PreparerHandle};
use crate::shard_log::{Answer, LogInner, Prepared};
use crate::sync::Arc;

#[cfg(feature = "io-uring")]
mod driver;
#[cfg(feature = "io-uring")]
pub use driver::CommitDriver;

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

/// What a committer carries from one cycle to the next. It moves between the group's
/// thread and a `CommitDriver` when one takes over or lets go.
struct Carry {
    journal: Option<Journal>,
    /// `Interval` mode: logs written since the last sync.
    unsynced: Vec<Arc<LogInner>>,
    last_sync: Instant,
}

impl Carry {
    fn new(journal: Option<Journal>) -> Self {
        Carry { journal, unsynced: Vec::new(), last_sync: Instant::now() }
    }
}

/// Who runs the group's cycles.
enum Runner {
    /// The group's own thread.
    Thread(JoinHandle<()>),
    /// A `CommitDriver`, polled on the thread given once it runs.
    #[cfg_attr(not(feature = "io-uring"), allow(dead_code))]
    Driver(Option<std::thread::ThreadId>),
    /// Nobody: the group shut down.
    Stopped,
}

/// The part of a group its thread and its driver share.
struct Shared {
    queue: Arc<Queue>,
    durability: Durability,
    /// The backend a restarted thread builds (after a driver lets go).
    #[cfg_attr(not(feature = "io-uring"), allow(dead_code))]
    backend: IoBackend,
    runner: std::sync::Mutex<Runner>,
    /// Notified when `runner` leaves `Driver`.
    runner_changed: std::sync::Condvar,
    /// Where a thread that yields leaves its carry for the driver taking over.
    handed: std::sync::Mutex<Option<Carry>>,
}

impl Shared {
    fn runner(&self) -> std::sync::MutexGuard<'_, Runner> {
        self.runner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("durability", &self.durability).finish_non_exhaustive()
    }
}

/// A commit group: the logs it serves and whoever runs their commit cycles, its own thread
/// or, once [`CommitGroup::driver`] has handed them over, a task on the caller's event loop.
/// Dropping the group commits what is queued and stops; logs opened in it then refuse
/// appends.
#[derive(Debug)]
pub struct CommitGroup {
    shared: std::sync::Arc<Shared>,
    /// Commits through a journal (under `sync`, with one configured).
    journaled: bool,
    backend_name: &'static str,
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
        let mut group = Self::start_with(config.durability, backend, move || {
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

    /// Starts the committing thread with the I/O backend `make_io` builds on that thread;
    /// `backend` is what a restarted thread builds.
    pub(crate) fn start_with(
        durability: Durability,
        backend: IoBackend,
        make_io: impl FnOnce() -> Result<(Box<dyn CommitIo>, Option<Journal>)> + Send + 'static,
    ) -> Result<Self> {
        let shared = std::sync::Arc::new(Shared {
            queue: Arc::new(Queue::new()),
            durability,
            backend,
            runner: std::sync::Mutex::new(Runner::Stopped),
            runner_changed: std::sync::Condvar::new(),
            handed: std::sync::Mutex::new(None),
        });
        let (thread, backend_name) = spawn_thread(&shared, move || {
            let (io, journal) = make_io()?;
            Ok((io, Carry::new(journal)))
        })?;
        *shared.runner() = Runner::Thread(thread);
        let preparer = Preparer::start()?;
        Ok(CommitGroup { shared, journaled: false, backend_name, preparer })
    }

    /// Hands this group's commit cycles over to a task on the caller's event loop: waits
    /// for the group's thread to finish its cycle and stop, and returns the driver that
    /// carries on where it stopped ([`CommitDriver::run`]). Dropping the driver (or the
    /// runtime it runs on) starts a thread again, so the group never stops committing.
    ///
    /// Fails if the group already has a driver, or has stopped.
    #[cfg(feature = "io-uring")]
    pub fn driver(&self) -> Result<CommitDriver> {
        let shared = &self.shared;
        let mut runner = shared.runner();
        match std::mem::replace(&mut *runner, Runner::Driver(None)) {
            Runner::Thread(thread) => {
                shared.queue.request_yield();
                let _ = thread.join();
                let handed =
                    shared.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                match handed {
                    Some(carry) => Ok(CommitDriver::new(std::sync::Arc::clone(shared), carry)),
                    None => {
                        // The thread ended without handing over (it panicked): what it
                        // carried is gone (a journal is replayed at the next start). The
                        // group stops here, answering what is queued, so nobody waits.
                        tracing::error!(
                            "a commit thread ended without handing over; its group stops"
                        );
                        stop_here(shared, &mut StdIo, Carry::new(None));
                        *runner = Runner::Stopped;
                        Err(Error::Closed)
                    }
                }
            }
            Runner::Driver(at) => {
                *runner = Runner::Driver(at);
                Err(Error::Config("this commit group already has a driver".into()))
            }
            Runner::Stopped => {
                *runner = Runner::Stopped;
                Err(Error::Closed)
            }
        }
    }

    /// The I/O backend in use: `"io_uring"` or `"std"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    /// The durability mode the group commits under.
    pub fn durability(&self) -> Durability {
        self.shared.durability
    }

    /// Whether the group commits through a journal: then segments are synced only at the
    /// journal's background checkpoints, never on an acknowledgement's path.
    pub fn journaled(&self) -> bool {
        self.journaled
    }

    pub(crate) fn queue(&self) -> &Arc<Queue> {
        &self.shared.queue
    }

    pub(crate) fn preparer(&self) -> PreparerHandle {
        self.preparer.handle()
    }
}

impl Drop for CommitGroup {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.queue.shutdown();
        let mut runner = shared.runner();
        loop {
            match std::mem::replace(&mut *runner, Runner::Stopped) {
                Runner::Thread(thread) => {
                    let _ = thread.join();
                    return;
                }
                // A driver being polled sees the shutdown at its next poll, commits what is
                // queued and stops; wait for that. One never polled yet, or polled on this
                // very thread (which is then not polling it), does so when it first runs or
                // when it is dropped (with its runtime): this drop returns before that.
                Runner::Driver(Some(at)) if at != std::thread::current().id() => {
                    *runner = Runner::Driver(Some(at));
                    let (guard, waited) = shared
                        .runner_changed
                        .wait_timeout(runner, Duration::from_secs(10))
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    runner = guard;
                    if waited.timed_out() {
                        tracing::warn!("still waiting for a commit driver to stop (is its runtime still polling it?)");
                    }
                }
                Runner::Driver(at) => {
                    *runner = Runner::Driver(at);
                    return;
                }
                Runner::Stopped => return,
            }
        }
    }
}

/// Starts a committing thread; `make` builds its I/O backend and carry on that thread.
/// Returns the thread and the backend's name.
fn spawn_thread(
    shared: &std::sync::Arc<Shared>,
    make: impl FnOnce() -> Result<(Box<dyn CommitIo>, Carry)> + Send + 'static,
) -> Result<(JoinHandle<()>, &'static str)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let shared = std::sync::Arc::clone(shared);
    let thread = std::thread::Builder::new()
        .name("riffle-commit".into())
        .spawn(move || match make() {
            Ok((io, carry)) => {
                let (acks, ack_rx) = std::sync::mpsc::channel::<Acks>();
                let acker =
                    std::thread::Builder::new().name("riffle-ack".into()).spawn(move || {
                        for batch in ack_rx {
                            acknowledge(batch);
                        }
                    });
                let acker = match acker {
                    Ok(a) => a,
                    Err(e) => {
                        // Whoever started this thread gets the carry back to stop with.
                        *shared.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(carry);
                        let _ = ready_tx.send(Err(Error::io("riffle-ack thread", e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(io.name()));
                run(&shared, io, carry, &acks);
                drop(acks);
                let _ = acker.join();
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| Error::io("riffle-commit thread", e))?;
    let name = ready_rx.recv().map_err(|_| Error::Closed)??;
    Ok((thread, name))
}

/// Longest an idle committer keeps its backend's handle of a file deleted elsewhere.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The answers of one cycle: each log's waiters and their common result.
type Acks = Vec<Answer>;

/// Completes every waiter of a cycle.
fn acknowledge(answers: Acks) {
    for (waiters, result) in answers {
        waiters.iter().for_each(|w| w.complete(result.clone()));
    }
}

/// The `Interval` mode's sync period, if that is the mode.
fn sync_interval(durability: Durability) -> Option<Duration> {
    match durability {
        Durability::Interval { interval_ms } => Some(Duration::from_millis(interval_ms)),
        _ => None,
    }
}

/// The committing thread's loop. Waiters are answered by a second thread (`riffle-ack`),
/// so that waking tens of blocked producers (a futex wake each) overlaps with the next
/// cycle's write and sync instead of delaying it: measured, acknowledging 55 waiters cost
/// the commit thread about as much CPU as the write and sync themselves.
fn run(shared: &Shared, mut io: Box<dyn CommitIo>, mut carry: Carry, acks: &Sender<Acks>) {
    let durability = shared.durability;
    let interval = sync_interval(durability);
    loop {
        let sweep = io.holds_files().then_some(SWEEP_EVERY);
        let wait = interval.into_iter().chain(sweep).min();
        let (logs, stopping, yielding) = match shared.queue.take(wait) {
            Taken::Items(items) => (items, false, false),
            Taken::Shutdown(items) => (items, true, false),
            Taken::Yield(items) => (items, false, true),
        };
        let answers = commit(&mut *io, durability, logs, stopping, &mut carry);
        if !answers.is_empty() {
            // The acker outlives this loop; a send can only fail if it panicked.
            let _ = acks.send(answers);
        }
        io.sweep();
        if stopping {
            finish(&mut *io, &mut carry);
            return;
        }
        if yielding {
            *shared.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(carry);
            return;
        }
    }
}

/// One turn of a committer, with its I/O run by `io`: a cycle over `logs`, then the
/// `Interval` mode's sync when it is due (or `stopping`).
fn commit(
    io: &mut dyn CommitIo,
    durability: Durability,
    logs: Vec<Arc<LogInner>>,
    stopping: bool,
    carry: &mut Carry,
) -> Acks {
    let sync_due = sync_due(durability, carry, stopping);
    let answers = match begin_cycle(io, durability, logs, sync_due, &mut carry.journal) {
        Some(mut work) => {
            io.run(&mut work.ops);
            end_cycle(io, durability, work, carry)
        }
        None => Vec::new(),
    };
    after_cycle(io, durability, sync_due, carry);
    answers
}

fn sync_due(durability: Durability, carry: &Carry, stopping: bool) -> bool {
    sync_interval(durability).is_some_and(|i| carry.last_sync.elapsed() >= i) || stopping
}

/// `Interval` mode: syncs what was written since the last sync, when due.
fn after_cycle(io: &mut dyn CommitIo, durability: Durability, sync_due: bool, carry: &mut Carry) {
    if sync_due && sync_interval(durability).is_some() {
        sync_unsynced(io, &mut carry.unsynced);
        carry.last_sync = Instant::now();
    }
}

/// The last turn: syncs everything and closes the journal (a checkpoint).
fn finish(io: &mut dyn CommitIo, carry: &mut Carry) {
    sync_unsynced(io, &mut carry.unsynced);
    if let Some(mut j) = carry.journal.take() {
        if let Err(e) = j.close() {
            tracing::error!(error = %e, "journal checkpoint at stop failed; the next start replays it");
        }
    }
}

/// Stops the group on the calling thread: shuts its queue down, commits what is queued
/// with `io`, syncs what is unsynced and closes the journal. Whoever calls it holds the
/// runner lock and sets `Runner::Stopped`.
#[cfg(feature = "io-uring")]
fn stop_here(shared: &Shared, io: &mut dyn CommitIo, mut carry: Carry) {
    shared.queue.shutdown();
    let logs = match shared.queue.take(Some(Duration::ZERO)) {
        Taken::Items(logs) | Taken::Shutdown(logs) | Taken::Yield(logs) => logs,
    };
    acknowledge(commit(io, shared.durability, logs, true, &mut carry));
    finish(io, &mut carry);
}

/// A cycle between taking its logs and running its I/O.
struct CycleWork {
    prepared: Vec<(Arc<LogInner>, Prepared)>,
    /// Every write and sync of the cycle, in the logs' order, then the journal's.
    ops: Vec<CycleOp>,
    /// With a journal, the cycle's logs, watched for a failed commit.
    journaled_logs: Vec<Arc<LogInner>>,
    /// The journal holds this cycle's bytes (its write and sync are among `ops`).
    staged: bool,
    sync: bool,
}

/// Starts a commit cycle over the dirty logs: takes their pending batches and lays out the
/// cycle's writes and syncs. `None` if there is nothing to write.
fn begin_cycle(
    io: &mut dyn CommitIo,
    durability: Durability,
    logs: Vec<Arc<LogInner>>,
    sync_due: bool,
    journal: &mut Option<Journal>,
) -> Option<CycleWork> {
    if logs.is_empty() {
        return None;
    }
    let sync = match durability {
        Durability::Sync => true,
        Durability::Interval { .. } => sync_due,
        Durability::None => false,
    };
    let journaled = journal.is_some() && durability == Durability::Sync;
    let mut prepared: Vec<(Arc<LogInner>, Prepared)> = Vec::with_capacity(logs.len());
    let mut ops: Vec<CycleOp> = Vec::with_capacity(logs.len() + 1);
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
    Some(CycleWork { prepared, ops, journaled_logs, staged, sync })
}

/// Ends a cycle whose I/O has run: publishes each log's new durable end (or poisons it)
/// and returns the waiters to answer.
fn end_cycle(
    io: &mut dyn CommitIo,
    durability: Durability,
    work: CycleWork,
    carry: &mut Carry,
) -> Acks {
    let CycleWork { prepared, mut ops, journaled_logs, staged, sync } = work;
    let journal = &mut carry.journal;
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
        if ok && !sync && interval && !carry.unsynced.iter().any(|l| Arc::ptr_eq(l, &log)) {
            carry.unsynced.push(log);
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
    let (logs, mut ops) = unsynced_ops(unsynced);
    io.run(&mut ops);
    unsynced_done(logs, ops);
}

/// The syncs of [`sync_unsynced`], one per log that has something to sync.
fn unsynced_ops(unsynced: &mut Vec<Arc<LogInner>>) -> (Vec<Arc<LogInner>>, Vec<CycleOp>) {
    let mut ops: Vec<CycleOp> = Vec::new();
    let mut logs = Vec::new();
    for log in unsynced.drain(..) {
        if let Some(op) = log.sync_op() {
            ops.push(op);
            logs.push(log);
        }
    }
    (logs, ops)
}

/// Publishes (or poisons) each log after its sync of [`unsynced_ops`] ran.
fn unsynced_done(logs: Vec<Arc<LogInner>>, ops: Vec<CycleOp>) {
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
        let group = CommitGroup::start_with(Durability::Sync, IoBackend::Std, move || {
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

    /// How many of this process's descriptors point below `dir`.
    pub(super) fn fds_under(dir: &std::path::Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    /// Waits (up to 30 s) until no descriptor of this process points below `dir`.
    pub(super) fn wait_until_closed(dir: &std::path::Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while fds_under(dir) > 0 {
            assert!(Instant::now() < deadline, "deleted files under {dir:?} stay open");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The io_uring backend keeps `dup`s of the segments it syncs (without a journal). An
    /// idle committing thread closes those of deleted logs, so that their space is freed.
    #[test]
    fn an_idle_commit_thread_closes_its_ring_handles_of_deleted_files() {
        let group = match CommitGroup::start(CommitConfig {
            io_backend: IoBackend::Uring,
            ..CommitConfig::default()
        }) {
            Ok(g) => g,
            Err(e) => return eprintln!("io_uring unavailable here ({e}); test skipped"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let log_a = ShardLog::open(&a, LogConfig::default(), &group).expect("open a");
        let log_b = ShardLog::open(&b, LogConfig::default(), &group).expect("open b");
        // Both logs in one cycle: the backend runs a single op through std calls.
        group.queue().hold();
        let tickets =
            [log_a.append(&[rec(b"a")]).expect("a"), log_b.append(&[rec(b"b")]).expect("b")];
        group.queue().release();
        tickets.into_iter().for_each(|t| {
            t.wait().expect("acknowledged");
        });
        assert!(fds_under(dir.path()) > 2, "the ring holds handles of its own");
        drop((log_a, log_b));
        std::fs::remove_dir_all(&a).expect("delete a");
        std::fs::remove_dir_all(&b).expect("delete b");
        wait_until_closed(dir.path());
    }
}
