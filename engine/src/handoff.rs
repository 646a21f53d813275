//! The group-commit hand-off between producers and the committing thread.
//!
//! - [`Completion`]: a one-shot result a producer waits for, either blocking ([`wait`]) or
//!   as a future (so a reactor never blocks). The committer completes every waiter of a
//!   cycle after that cycle's one write and one sync.
//! - [`DirtyQueue`]: the set of logs with pending appends. A producer that makes a log
//!   dirty enqueues it (once, until the committer takes it) and wakes the committer; the
//!   committer takes the whole set at the start of a cycle. The committer is a thread
//!   blocked in [`DirtyQueue::take`] or a task polling [`DirtyQueue::poll_take`] on an event
//!   loop (a group's commit driver); a thread can be asked to hand over ([`Taken::Yield`]).
//! - [`JobQueue`]: jobs for one background worker (the journal's checkpoints), waited for
//!   by ticket.
//!
//! # Invariants (model-checked in `tests/loom_group_commit.rs`)
//! - No lost wake-up: an item marked after the committer took the set is in the next set.
//! - Every completion is completed exactly once, and a waiter that arrives after completion
//!   returns at once.
//! - A job's ticket is waited for only until that job and every earlier one are done, and a
//!   failure reaches every later wait.
//!
//! [`wait`]: Completion::wait

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::sync::{fence, lock, AtomicBool, Condvar, Mutex, Ordering};

/// A result delivered once by the committer to one waiting producer.
#[derive(Debug)]
pub struct Completion<T> {
    state: Mutex<CompletionState<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct CompletionState<T> {
    result: Option<T>,
    taken: bool,
    /// A thread is (or is about to be) blocked in `wait`. std's futex condvar makes a wake
    /// syscall on every notify, waiter or not, so `complete` notifies only when this is set.
    waiting: bool,
    waker: Option<Waker>,
}

impl<T> Default for Completion<T> {
    fn default() -> Self {
        Completion {
            state: Mutex::new(CompletionState {
                result: None,
                taken: false,
                waiting: false,
                waker: None,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Completion<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers the result. Committer only; exactly once.
    pub fn complete(&self, result: T) {
        let (waker, waiting) = {
            let mut state = lock(&self.state);
            assert!(state.result.is_none() && !state.taken, "completion completed twice");
            state.result = Some(result);
            (state.waker.take(), state.waiting)
        };
        if waiting {
            self.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Blocks until the result arrives, then takes it.
    pub fn wait(&self) -> T {
        let mut state = lock(&self.state);
        loop {
            if let Some(result) = state.result.take() {
                state.taken = true;
                return result;
            }
            assert!(!state.taken, "completion result taken twice");
            state.waiting = true;
            #[cfg(loom)]
            {
                state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            #[cfg(not(loom))]
            {
                state = self.ready.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }

    /// True once the result has arrived (and not been taken).
    pub fn is_ready(&self) -> bool {
        lock(&self.state).result.is_some()
    }

    /// Polls for the result; registers the task's waker otherwise.
    pub fn poll_result(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = lock(&self.state);
        match state.result.take() {
            Some(result) => {
                state.taken = true;
                Poll::Ready(result)
            }
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A future over a shared completion.
pub struct CompletionFuture<T> {
    pub(crate) completion: crate::sync::Arc<Completion<T>>,
}

impl<T> Future for CompletionFuture<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.completion.poll_result(cx)
    }
}

/// Items (logs) waiting for the committer, and the committer's wake-up.
#[derive(Debug)]
pub struct DirtyQueue<T> {
    state: Mutex<DirtyState<T>>,
    wake: Condvar,
}

#[derive(Debug)]
struct DirtyState<T> {
    items: Vec<T>,
    shutdown: bool,
    /// Producers holding the queue ([`DirtyQueue::hold`]): the committer waits for them.
    holds: usize,
    /// The committing thread is asked to return [`Taken::Yield`] ([`DirtyQueue::request_yield`]).
    yield_asked: bool,
    /// The task polling [`DirtyQueue::poll_take`], woken wherever the condvar is notified.
    waker: Option<Waker>,
}

impl<T> DirtyState<T> {
    /// Whether the committer has to wait.
    fn idle(&self) -> bool {
        (self.items.is_empty() || self.holds > 0) && !self.shutdown && !self.yield_asked
    }

    /// Takes the task to wake, if one is polling.
    fn waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }
}

impl<T> Default for DirtyQueue<T> {
    fn default() -> Self {
        DirtyQueue {
            state: Mutex::new(DirtyState {
                items: Vec::new(),
                shutdown: false,
                holds: 0,
                yield_asked: false,
                waker: None,
            }),
            wake: Condvar::new(),
        }
    }
}

/// What the committer got from [`DirtyQueue::take`].
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    /// Items to commit (possibly empty after a timeout).
    Items(Vec<T>),
    /// Shut down, with the items that were still queued (commit them, then stop).
    Shutdown(Vec<T>),
    /// Asked to hand over ([`DirtyQueue::request_yield`]), with the items that were queued:
    /// commit them, then stop and let the next committer go on. Only [`DirtyQueue::take`]
    /// returns it.
    Yield(Vec<T>),
}

impl<T> DirtyQueue<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enqueues an item and wakes the committer. The caller guarantees an item is queued
    /// at most once until taken (the log's `enqueued` flag). Returns false, and drops the
    /// item, if the queue was shut down: nobody will commit it.
    #[must_use = "a false return means the item will never be committed"]
    pub fn mark(&self, item: T) -> bool {
        let mut state = lock(&self.state);
        if state.shutdown {
            return false;
        }
        state.items.push(item);
        let wake = state.items.len() == 1 && state.holds == 0;
        let waker = if wake { state.waker() } else { None };
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Holds the committer back until [`DirtyQueue::release`], so that items marked
    /// meanwhile (the shards of one PutRecords) are taken together, in one cycle: fewer
    /// cycles, and the same cycles for the same calls (the simulated disk replays a seed
    /// exactly only if they are). Hold only for the length of a few appends.
    pub fn hold(&self) {
        lock(&self.state).holds += 1;
    }

    /// Ends a [`DirtyQueue::hold`]; wakes the committer if items wait.
    pub fn release(&self) {
        let mut state = lock(&self.state);
        state.holds -= 1;
        let wake = state.holds == 0 && !state.items.is_empty();
        let waker = if wake { state.waker() } else { None };
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes every queued item, waiting up to `timeout` for one to arrive (forever if
    /// `None`).
    pub fn take(&self, timeout: Option<Duration>) -> Taken<T> {
        let mut state = lock(&self.state);
        if state.idle() {
            state = match timeout {
                None => self.wait(state),
                Some(t) => self.wait_timeout(state, t),
            };
        }
        let items = std::mem::take(&mut state.items);
        if state.shutdown {
            Taken::Shutdown(items)
        } else if std::mem::take(&mut state.yield_asked) {
            Taken::Yield(items)
        } else {
            Taken::Items(items)
        }
    }

    /// [`DirtyQueue::take`] for a committer that is a task: takes every queued item if there
    /// is one (or the queue shut down), else registers the task to be woken when there is.
    /// Never returns [`Taken::Yield`]. One task polls at a time.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Taken<T>> {
        let mut state = lock(&self.state);
        if (state.items.is_empty() || state.holds > 0) && !state.shutdown {
            match &state.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let items = std::mem::take(&mut state.items);
        Poll::Ready(if state.shutdown { Taken::Shutdown(items) } else { Taken::Items(items) })
    }

    /// Asks the thread blocked in (or next entering) [`DirtyQueue::take`] to return
    /// [`Taken::Yield`] with what is queued.
    pub fn request_yield(&self) {
        lock(&self.state).yield_asked = true;
        self.wake.notify_all();
    }

    /// Whether [`DirtyQueue::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        lock(&self.state).shutdown
    }

    #[cfg(not(loom))]
    fn wait<'a>(
        &self,
        guard: crate::sync::MutexGuard<'a, DirtyState<T>>,
    ) -> crate::sync::MutexGuard<'a, DirtyState<T>> {
        self.wake.wait_while(guard, |s| s.idle()).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(not(loom))]
    fn wait_timeout<'a>(
        &self,
        guard: crate::sync::MutexGuard<'a, DirtyState<T>>,
        timeout: Duration,
    ) -> crate::sync::MutexGuard<'a, DirtyState<T>> {
        self.wake
            .wait_timeout_while(guard, timeout, |s| s.idle())
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }

    #[cfg(loom)]
    fn wait<'a>(
        &self,
        mut guard: crate::sync::MutexGuard<'a, DirtyState<T>>,
    ) -> crate::sync::MutexGuard<'a, DirtyState<T>> {
        while guard.idle() {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        guard
    }

    #[cfg(loom)]
    fn wait_timeout<'a>(
        &self,
        guard: crate::sync::MutexGuard<'a, DirtyState<T>>,
        _timeout: Duration,
    ) -> crate::sync::MutexGuard<'a, DirtyState<T>> {
        // loom has no time; a timed wait is modelled as a wait for an event.
        self.wait(guard)
    }

    /// Asks the committer to stop after committing what is queued.
    pub fn shutdown(&self) {
        let waker = {
            let mut state = lock(&self.state);
            state.shutdown = true;
            state.waker()
        };
        self.wake.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Wakers of tasks waiting for a watermark to move (push subscriptions waiting for new
/// durable records). The publisher checks one flag per publish and takes the lock only
/// when someone waits.
///
/// Protocol, to lose no wake-up:
/// - waiter: [`WakeList::register`] its waker (push, then set `waiting`), a SeqCst fence,
///   then re-check the condition;
/// - publisher: publish the new watermark, a SeqCst fence, then [`WakeList::wake_all`]
///   (swap `waiting` off, wake everything registered).
///
/// Both sides store, then load the other side's variable; the fences forbid both loads
/// from missing both stores, so either the waiter sees the new watermark or the publisher
/// sees the waiter. `tests/loom_wakelist.rs` model-checks it.
#[derive(Debug, Default)]
pub struct WakeList {
    waiting: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl WakeList {
    /// Registers `waker` (once per task), then fences: re-check the condition afterwards.
    pub fn register(&self, waker: &Waker) {
        {
            let mut wakers = lock(&self.wakers);
            if !wakers.iter().any(|w| w.will_wake(waker)) {
                wakers.push(waker.clone());
            }
            self.waiting.store(true, Ordering::Release);
        }
        fence(Ordering::SeqCst);
    }

    /// Wakes every registered waker. Call after publishing what the waiters wait for.
    pub fn wake_all(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.swap(false, Ordering::AcqRel) {
            let wakers = std::mem::take(&mut *lock(&self.wakers));
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

/// Jobs handed in order to one worker thread (the journal's background checkpoints), each
/// known by a ticket that the submitter can wait for.
///
/// - The submitter: [`submit`](JobQueue::submit) returns the job's ticket;
///   [`wait`](JobQueue::wait) blocks until that job and every earlier one are done.
/// - The worker: [`next`](JobQueue::next) blocks for the next job (`None` once shut down and
///   drained), and [`done`](JobQueue::done) reports it, with its failure if it failed.
///
/// A failure is sticky: the wait for the failed job's ticket and for every later one
/// returns it, so nothing can proceed as if a failed checkpoint had happened; a wait for an
/// earlier ticket is not affected (found by the loom model, which ran job 2's failure
/// before the wait for job 1). Modelled in `tests/loom_handoff.rs`.
#[derive(Debug)]
pub struct JobQueue<J, E> {
    state: Mutex<JobState<J, E>>,
    changed: Condvar,
}

#[derive(Debug)]
struct JobState<J, E> {
    queue: std::collections::VecDeque<J>,
    submitted: u64,
    done: u64,
    /// The first failed job: its ticket and error.
    failed: Option<(u64, E)>,
    shutdown: bool,
}

impl<J, E: Clone> Default for JobQueue<J, E> {
    fn default() -> Self {
        JobQueue {
            state: Mutex::new(JobState {
                queue: std::collections::VecDeque::new(),
                submitted: 0,
                done: 0,
                failed: None,
                shutdown: false,
            }),
            changed: Condvar::new(),
        }
    }
}

impl<J, E: Clone> JobQueue<J, E> {
    /// Queues `job`; returns its ticket (1, 2, ...).
    pub fn submit(&self, job: J) -> u64 {
        let mut state = lock(&self.state);
        state.queue.push_back(job);
        state.submitted += 1;
        let ticket = state.submitted;
        drop(state);
        self.changed.notify_all();
        ticket
    }

    /// Blocks until the job of `ticket` and all before it are done; the first failure
    /// among them or, if a job failed earlier still, that one's.
    pub fn wait(&self, ticket: u64) -> Result<(), E> {
        let mut state = lock(&self.state);
        loop {
            if let Some((failed, e)) = &state.failed {
                if *failed <= ticket {
                    return Err(e.clone());
                }
            }
            if state.done >= ticket {
                return Ok(());
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Worker: the next job, in submission order; `None` once shut down with nothing left.
    pub fn next(&self) -> Option<J> {
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.queue.pop_front() {
                return Some(job);
            }
            if state.shutdown {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Worker: the job from the last [`next`](JobQueue::next) is finished.
    pub fn done(&self, result: Result<(), E>) {
        let mut state = lock(&self.state);
        state.done += 1;
        if let Err(e) = result {
            let ticket = state.done;
            state.failed.get_or_insert((ticket, e));
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The worker ends once the queued jobs are done.
    pub fn shutdown(&self) {
        lock(&self.state).shutdown = true;
        self.changed.notify_all();
    }
}
