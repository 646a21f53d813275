//! A commit group's cycles run by a task on the caller's event loop: DESIGN.md's
//! thread-per-core commit, where the core that serves a shard's connections also writes,
//! syncs and acknowledges its appends.
//!
//! The group's own thread (module docs of [`super`]) costs each cycle three thread
//! hand-offs: producer to committer (a futex wake), committer to acker, acker to the
//! producer's reactor (an eventfd write). A driver runs the same cycle as a task: the
//! producers on its own runtime are woken without a syscall, the segment writes (into the
//! page cache) are plain `pwrite`s, and each `fdatasync` goes through the runtime's
//! io_uring, so that the reactor serves its sockets while the disk syncs and the records
//! that arrive meanwhile make up the next cycle.
//!
//! What still blocks the runtime's thread, because it runs inside a cycle's preparation or
//! end as it does on the thread: a segment roll (the new segment's header write,
//! `fdatasync` and directory sync, once per segment size written), a durable seal, a
//! journal half switch that finds the previous half's checkpoint still running (it waits for
//! it), and the last turn at shutdown. The page-cache writes can also block under
//! dirty-page throttling. Each of these is rare next to the per-cycle sync.
//!
//! Handing over ([`CommitGroup::driver`]) waits for the group's thread to finish its cycle
//! and take what it carries (the journal, the `Interval` mode's unsynced logs) with it.
//! When the driver is dropped before the group shuts down (its runtime stopped first), it
//! starts a thread again with what it carries, so the group never stops committing; when
//! the group shuts down, the driver commits what is queued and closes the journal, as the
//! thread does. A group dropped while its driver is polled on another thread waits for
//! that; one whose driver was never polled, or is polled on the dropping thread, returns
//! first, and the driver finishes when it next runs or is dropped.
//!
//! [`CommitGroup::driver`]: super::CommitGroup::driver

use std::future::{poll_fn, Future};
use std::io as stdio;
use std::pin::Pin;
use std::task::Poll;

use super::{
    acknowledge, begin_cycle, end_cycle, finish, spawn_thread, stop_here, sync_due, sync_interval,
    unsynced_done, unsynced_ops, Carry, CycleWork, Runner, Shared, SWEEP_EVERY,
};
use crate::error::Error;
use crate::handoff::Taken;
use crate::io::std_file::StdIo;
use crate::io::uring::RingFiles;
use crate::io::{self, CommitIo, CycleOp};

/// Runs a commit group's cycles as a task ([`CommitDriver::run`]). Made by
/// [`CommitGroup::driver`](super::CommitGroup::driver).
pub struct CommitDriver {
    shared: std::sync::Arc<Shared>,
    /// What the group's committer carries; `None` once the driver has stopped.
    carry: Option<Carry>,
    /// A cycle whose I/O is in flight. If the driver is dropped then, its drop runs the
    /// cycle's I/O again, to the end.
    work: Option<CycleWork>,
    ring_syncs: bool,
}

impl std::fmt::Debug for CommitDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitDriver").field("ring_syncs", &self.ring_syncs).finish_non_exhaustive()
    }
}

impl CommitDriver {
    pub(super) fn new(shared: std::sync::Arc<Shared>, carry: Carry) -> Self {
        CommitDriver { shared, carry: Some(carry), work: None, ring_syncs: true }
    }

    /// Whether each `fdatasync` goes through the runtime's io_uring (the default), or is
    /// called in place, blocking the runtime's thread until the disk answers (Redis's way).
    pub fn ring_syncs(mut self, on: bool) -> Self {
        self.ring_syncs = on;
        self
    }

    /// Runs the group's commit cycles until the group shuts down. Poll it on one thread
    /// of a tokio-uring runtime (`tokio_uring::spawn`), or, without ring syncs, on any
    /// tokio runtime with its timer enabled.
    pub async fn run(mut self) {
        *self.shared.runner() = Runner::Driver(Some(std::thread::current().id()));
        let durability = self.shared.durability;
        let mut files = RingFiles::default();
        let mut io = Forgets::default();
        loop {
            let (logs, stopping) = match self.next(!files.is_empty()).await {
                Taken::Items(logs) | Taken::Yield(logs) => (logs, false),
                Taken::Shutdown(logs) => (logs, true),
            };
            // The carry stays in the driver, borrowed across the awaits below, so that a
            // drop in the middle of a cycle finds it there (and `work`) to finish the cycle.
            // It is `None` only once the driver has stopped, after which `run` returns.
            let Some(carry) = self.carry.as_mut() else { return };
            let sync_due = sync_due(durability, carry, stopping);
            if let Some(work) = begin_cycle(&mut io, durability, logs, sync_due, &mut carry.journal)
            {
                let work = self.work.insert(work);
                run_ops(&mut work.ops, &mut files, self.ring_syncs).await;
                if let Some(work) = self.work.take() {
                    acknowledge(end_cycle(&mut io, durability, work, carry));
                }
            }
            // Close the ring-side handles of files sealed, or deleted elsewhere (retention,
            // a deleted stream), so that their space is freed.
            for uid in io.0.drain(..).chain(files.dead()) {
                files.remove(uid);
            }
            if sync_due && sync_interval(durability).is_some() {
                // `Interval` mode: the logs written since the last sync, through the ring.
                // They stay in the carry until synced, in case the task is dropped meanwhile.
                let (logs, mut ops) = unsynced_ops(&mut carry.unsynced.clone());
                run_ops(&mut ops, &mut files, self.ring_syncs).await;
                unsynced_done(logs, ops);
                carry.unsynced.clear();
                carry.last_sync = std::time::Instant::now();
            }
            if stopping {
                finish(&mut io, carry);
                self.carry = None;
                *self.shared.runner() = Runner::Stopped;
                self.shared.runner_changed.notify_all();
                return;
            }
        }
    }

    /// Waits for dirty logs, or (`Interval` mode, with unsynced logs) for the next sync, or
    /// (with ring-side file handles open) at most [`SWEEP_EVERY`], to sweep them.
    async fn next(&self, sweep: bool) -> Taken<std::sync::Arc<crate::shard_log::LogInner>> {
        let queue = &self.shared.queue;
        let sync_at = match (sync_interval(self.shared.durability), &self.carry) {
            (Some(interval), Some(carry)) if !carry.unsynced.is_empty() => {
                Some(carry.last_sync + interval)
            }
            _ => None,
        };
        let sweep_at = sweep.then(|| std::time::Instant::now() + SWEEP_EVERY);
        let deadline = sync_at.into_iter().chain(sweep_at).min();
        let mut sleep: Option<Pin<Box<tokio::time::Sleep>>> =
            deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into())));
        poll_fn(|cx| {
            if let Poll::Ready(taken) = queue.poll_take(cx) {
                return Poll::Ready(taken);
            }
            match sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Taken::Items(Vec::new())),
                _ => Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for CommitDriver {
    fn drop(&mut self) {
        let Some(mut carry) = self.carry.take() else { return };
        let durability = self.shared.durability;
        let mut io = StdIo;
        if let Some(mut work) = self.work.take() {
            // The cycle's I/O was cut short (the task dropped while a sync was in flight):
            // run again, here, every op that has not failed. Writing the same bytes at the
            // same offsets again changes nothing, and only a sync that completed
            // acknowledges; an op that failed keeps its error (its log is poisoned).
            io.run(&mut work.ops);
            acknowledge(end_cycle(&mut io, durability, work, &mut carry));
        }
        let shared = &self.shared;
        let mut runner = shared.runner();
        if shared.queue.is_shut_down() {
            // The group is stopping: commit what is queued here, as its thread would.
            stop_here(shared, &mut io, carry);
            *runner = Runner::Stopped;
        } else {
            // Back to a thread. The carry waits in `handed` until the thread takes it, so
            // that it is still here if the thread cannot start.
            *shared.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(carry);
            let backend = shared.backend;
            let slot = std::sync::Arc::clone(shared);
            let started = spawn_thread(shared, move || {
                let io = io::commit_io(backend).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "restarting a commit thread on std I/O");
                    Box::new(StdIo)
                });
                let carry =
                    slot.handed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                Ok((io, carry.ok_or(Error::Closed)?))
            });
            match started {
                Ok((thread, _)) => *runner = Runner::Thread(thread),
                Err(e) => {
                    tracing::error!(error = %e, "restarting a commit thread failed; the group stops");
                    let carry = shared
                        .handed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take()
                        .unwrap_or_else(|| Carry::new(None));
                    stop_here(shared, &mut io, carry);
                    *runner = Runner::Stopped;
                }
            }
        }
        shared.runner_changed.notify_all();
    }
}

/// The std backend, remembering the files a cycle says it will not write again, so that
/// the driver closes its ring-side handles of them.
#[derive(Default)]
struct Forgets(Vec<u64>);

impl CommitIo for Forgets {
    fn run(&mut self, ops: &mut [CycleOp]) {
        StdIo.run(ops);
    }
    fn forget(&mut self, file_uid: u64) {
        self.0.push(file_uid);
    }
    fn name(&self) -> &'static str {
        "std"
    }
}

/// A cycle's I/O: every write in place (into the page cache: a copy, a few microseconds),
/// then the syncs, through the ring if `ring`, all in flight together.
async fn run_ops(ops: &mut [CycleOp], files: &mut RingFiles, ring: bool) {
    // A simulated disk's model sees only the std calls.
    if !ring || ops.iter().any(|op| op.file.is_simulated()) {
        return StdIo.run(ops);
    }
    for op in ops.iter_mut().filter(|op| !op.range.is_empty()) {
        op.result = op.file.write_all_at(&op.buf[op.range.clone()], op.file_offset);
    }
    let mut syncs = Vec::new();
    for (i, op) in ops.iter_mut().enumerate().filter(|(_, op)| op.sync && op.result.is_ok()) {
        match files.handle(&op.file) {
            Ok(handle) => syncs.push((i, handle)),
            Err(e) => op.result = Err(Error::io(op.file.path(), e)),
        }
    }
    if let [(i, handle)] = syncs.as_slice() {
        let op = &mut ops[*i];
        op.result = op.file.synced(handle.sync_data().await);
        return;
    }
    let tasks: Vec<_> = syncs
        .into_iter()
        .map(|(i, handle)| (i, tokio_uring::spawn(async move { handle.sync_data().await })))
        .collect();
    for (i, task) in tasks {
        let result = task.await.unwrap_or_else(|e| Err(stdio::Error::other(e.to_string())));
        let op = &mut ops[i];
        op.result = op.file.synced(result);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CommitConfig, CommitGroup, Durability};
    use crate::batch::Record;
    use crate::io::IoBackend;
    use crate::shard_log::{LogConfig, ShardLog};

    fn rec(data: &[u8]) -> Record<'_> {
        Record { partition_key: b"k", explicit_hash_key: None, data }
    }

    fn group(dir: &std::path::Path, durability: Durability) -> CommitGroup {
        CommitGroup::start(CommitConfig {
            durability,
            io_backend: IoBackend::Std,
            journal: Some(dir.join("journal.log")),
            journal_bytes: 0,
        })
        .expect("group")
    }

    /// A tokio-uring runtime, or `None` (with a note) where the kernel refuses io_uring.
    fn runtime() -> Option<tokio_uring::Runtime> {
        match tokio_uring::Runtime::new(&tokio_uring::builder()) {
            Ok(rt) => Some(rt),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}); driver test skipped");
                None
            }
        }
    }

    /// Appends from this thread are committed by a driver on another thread's runtime,
    /// through the journal, with ring syncs and with inline ones; when the group drops,
    /// the driver stops, and everything acknowledged is there after reopening.
    #[test]
    fn a_driver_commits_and_stops_with_the_group() {
        if runtime().is_none() {
            return;
        }
        for (ring, durability) in [
            (true, Durability::Sync),
            (false, Durability::Sync),
            (true, Durability::Interval { interval_ms: 5 }),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let logs = dir.path().join("log");
            let group = group(dir.path(), durability);
            let driver = group.driver().expect("driver").ring_syncs(ring);
            assert!(group.driver().is_err(), "one driver at a time");
            let core = std::thread::spawn(move || {
                runtime().expect("runtime").block_on(driver.run());
            });
            let log = ShardLog::open(&logs, LogConfig::default(), &group).expect("open");
            for i in 0..200u32 {
                let data = i.to_be_bytes();
                assert_eq!(log.append_wait(&[rec(&data)]).expect("acked"), u64::from(i));
            }
            drop(log);
            drop(group);
            core.join().expect("the driver returns when its group stops");
            let group = CommitGroup::start(CommitConfig::default()).expect("group");
            let log = ShardLog::open(&logs, LogConfig::default(), &group).expect("reopen");
            assert_eq!(log.end_position(), 200, "ring {ring}, {durability:?}");
        }
    }

    /// A driver whose runtime stops first (its task dropped) hands the group back to a
    /// thread: appends after that are still committed, and a second driver can take over.
    #[test]
    fn a_dropped_driver_hands_the_group_back_to_a_thread() {
        if runtime().is_none() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let group = group(dir.path(), Durability::Sync);
        let log =
            ShardLog::open(&dir.path().join("log"), LogConfig::default(), &group).expect("open");
        for round in 0..3u64 {
            let driver = group.driver().expect("driver");
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
            let core = std::thread::spawn(move || {
                let rt = runtime().expect("runtime");
                rt.block_on(async move {
                    tokio_uring::spawn(driver.run());
                    let _ = ran_tx.send(());
                    // Serve until told to stop, then return: the runtime drops the task.
                    while stop_rx.try_recv().is_err() {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                });
            });
            ran_rx.recv().expect("the runtime started");
            let data = round.to_be_bytes();
            assert_eq!(log.append_wait(&[rec(&data)]).expect("by the driver"), 2 * round);
            stop_tx.send(()).expect("stop");
            core.join().expect("core");
            assert_eq!(log.append_wait(&[rec(&data)]).expect("by the thread"), 2 * round + 1);
        }
    }

    /// Runtimes stopped at arbitrary moments while appends are in flight (the driver's task
    /// dropped before, during or after a cycle): every append is still acknowledged, by the
    /// driver, by its drop rerunning the cut-short cycle, or by the thread it restarts, and
    /// every acknowledged record is there after reopening.
    #[test]
    fn appends_in_flight_survive_their_driver_being_dropped() {
        if runtime().is_none() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("log");
        let group = group(dir.path(), Durability::Sync);
        let log = ShardLog::open(&logs, LogConfig::default(), &group).expect("open");
        let mut acked = 0u64;
        for round in 0..20u64 {
            let driver = group.driver().expect("driver");
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
            let core = std::thread::spawn(move || {
                runtime().expect("runtime").block_on(async move {
                    tokio_uring::spawn(driver.run());
                    let _ = ran_tx.send(());
                    while stop_rx.try_recv().is_err() {
                        tokio::task::yield_now().await;
                    }
                });
            });
            ran_rx.recv().expect("the runtime started");
            let tickets: Vec<_> = (0..1 + round % 7)
                .map(|i| log.append(&[rec(&(round * 100 + i).to_be_bytes())]).expect("append"))
                .collect();
            stop_tx.send(()).expect("stop");
            core.join().expect("core");
            for t in tickets {
                assert_eq!(t.wait().expect("acknowledged"), acked);
                acked += 1;
            }
        }
        drop(log);
        drop(group);
        let group = CommitGroup::start(CommitConfig::default()).expect("group");
        let log = ShardLog::open(&logs, LogConfig::default(), &group).expect("reopen");
        assert_eq!(log.end_position(), acked);
    }

    /// Without a journal, the driver syncs segments through ring-side handles (`dup`s). A
    /// deleted log's handles are closed while the group is idle, so its space is freed.
    #[test]
    fn an_idle_driver_closes_the_handles_of_deleted_files() {
        if runtime().is_none() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("log");
        let group = CommitGroup::start(CommitConfig {
            io_backend: IoBackend::Std,
            ..CommitConfig::default()
        })
        .expect("group");
        let driver = group.driver().expect("driver");
        let core = std::thread::spawn(move || {
            runtime().expect("runtime").block_on(driver.run());
        });
        let log = ShardLog::open(&logs, LogConfig::default(), &group).expect("open");
        log.append_wait(&[rec(b"x")]).expect("acked");
        drop(log);
        std::fs::remove_dir_all(&logs).expect("delete the log");
        super::super::tests::wait_until_closed(&logs);
        drop(group);
        core.join().expect("core");
    }
}
