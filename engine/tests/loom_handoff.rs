#![cfg(loom)]
//! Pins the two hand-off primitives of group commit (`riffle_engine::handoff`) on their own:
//!
//! - `Completion`: the value arrives whether `complete` runs before or after `wait`, and the
//!   async path (`poll_result` with a waker) is woken, so an awaiting producer never hangs.
//! - `DirtyQueue` hold: items marked while a producer holds the queue are taken together,
//!   and the release wakes the committer.
//! - `DirtyQueue` shutdown: a committer in `take` returns `Taken::Shutdown` carrying the
//!   items still queued, and every marked item is handed out exactly once.
//! - `DirtyQueue` with a task as committer (`poll_take`, a group's commit driver): a mark
//!   or a release wakes it; and the hand-over from the thread to the driver (`request_yield`,
//!   then `Taken::Yield`) loses no item and hands none out twice.
//! - `JobQueue` (the journal's background checkpoints): the worker gets the jobs in order,
//!   a wait for a ticket returns only once that job and the earlier ones are done, a
//!   failure reaches the waits after it, and shutdown ends an idle worker.
//!
//! Any lost wake-up shows up as a loom deadlock (a failed test, or an aborted test process).
//! Some models also record which outcomes they explored (std atomics, outside the model)
//! and assert afterwards that both orders were really visited, so a model cannot pass by
//! never reaching the race.
//!
//! Run: `bash scripts/loom.sh` (or `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! cargo test --release -p riffle-engine --no-default-features --test loom_handoff`).
//! `LOOM_MAX_PREEMPTIONS` overrides the preemption bound (default 2).

use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
use std::task::{Context, Poll, Wake, Waker};

mod loom_common;

use loom::sync::Arc;
use loom::thread;
use riffle_engine::handoff::{Completion, DirtyQueue, JobQueue, Taken};

/// A waker that unparks the loom thread that created it.
struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `poll` to completion on the current loom thread, parking between polls until the
/// waker handed to `poll` is woken (loom's own `block_on` needs its `futures` feature,
/// which would add a dependency). A waker that is never woken parks the thread for good,
/// which loom reports as a deadlock.
fn block_on<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let waker = Waker::from(std::sync::Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = poll(&mut cx) {
            return value;
        }
        thread::park();
    }
}

/// Complete before wait, in one thread: `wait` returns at once.
#[test]
fn complete_then_wait_returns_the_value() {
    loom_common::explore("complete_then_wait_returns_the_value", || {
        let c = Completion::new();
        assert!(!c.is_ready());
        c.complete(7u64);
        assert!(c.is_ready());
        assert_eq!(c.wait(), 7);
        assert!(!c.is_ready(), "the result is taken once");
    });
}

/// Blocking wait racing the committer's `complete`: loom explores the completion landing
/// before the waiter locks, between its check and its condvar wait, and after it sleeps.
#[test]
fn wait_and_complete_race_returns_the_value() {
    loom_common::explore_concurrent("wait_and_complete_race_returns_the_value", || {
        let c = Arc::new(Completion::new());
        let committer = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.complete(7u64))
        };
        assert_eq!(c.wait(), 7);
        committer.join().expect("committer");
        assert!(!c.is_ready());
    });
}

/// Two waiters on two completions, completed by one committer in one go (as a cycle's
/// `finish` does): 3 threads, each waiter gets its own value.
#[test]
fn one_committer_completes_two_waiters() {
    loom_common::explore_concurrent("one_committer_completes_two_waiters", || {
        let a = Arc::new(Completion::new());
        let b = Arc::new(Completion::new());
        let committer = {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            thread::spawn(move || {
                a.complete(1u64);
                b.complete(2u64);
            })
        };
        let other = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.wait())
        };
        assert_eq!(a.wait(), 1);
        assert_eq!(other.join().expect("waiter"), 2);
        committer.join().expect("committer");
    });
}

/// The async path: a task polls `poll_result` (through `block_on` above, which parks the
/// thread until the registered waker is woken). If `complete` failed to wake the stored
/// waker, loom would report a deadlock. Both "ready at first poll" and "pending, then woken"
/// must be explored.
#[test]
fn async_poll_is_woken_by_complete() {
    static FIRST_POLL_PENDING: AtomicBool = AtomicBool::new(false);
    static FIRST_POLL_READY: AtomicBool = AtomicBool::new(false);
    loom_common::explore_concurrent("async_poll_is_woken_by_complete", || {
        let c = Arc::new(Completion::new());
        let committer = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.complete(7u64))
        };
        let mut polls = 0;
        let value = block_on(|cx| {
            polls += 1;
            let p = c.poll_result(cx);
            if polls == 1 {
                let seen = if p.is_pending() { &FIRST_POLL_PENDING } else { &FIRST_POLL_READY };
                seen.store(true, StdOrdering::Relaxed);
            }
            p
        });
        assert_eq!(value, 7);
        committer.join().expect("committer");
        // The future took the result: nothing is left for a second taker.
        assert!(!c.is_ready());
    });
    assert!(FIRST_POLL_PENDING.load(StdOrdering::Relaxed), "never explored pending-then-woken");
    assert!(FIRST_POLL_READY.load(StdOrdering::Relaxed), "never explored ready-at-first-poll");
}

/// Re-polling with a new waker replaces the old one: the latest waker is the one woken.
#[test]
fn async_repoll_with_a_new_waker_is_woken() {
    loom_common::explore_concurrent("async_repoll_with_a_new_waker_is_woken", || {
        let c = Arc::new(Completion::new());
        let committer = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.complete(7u64))
        };
        // The first poll registers a waker that is then dropped unused (a noop waker); the
        // second poll, inside `block_on`, must register the waker that gets woken.
        let mut cx = Context::from_waker(Waker::noop());
        let value = match c.poll_result(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => block_on(|cx| c.poll_result(cx)),
        };
        assert_eq!(value, 7);
        committer.join().expect("committer");
    });
}

/// A committer blocked in `take` with nothing queued is released by `shutdown` alone.
#[test]
fn shutdown_releases_an_idle_committer() {
    loom_common::explore_concurrent("shutdown_releases_an_idle_committer", || {
        let q = Arc::new(DirtyQueue::<u32>::new());
        let committer = {
            let q = Arc::clone(&q);
            thread::spawn(move || q.take(None))
        };
        q.shutdown();
        assert_eq!(committer.join().expect("committer"), Taken::Shutdown(Vec::new()));
    });
}

/// Two producers mark items; the main one then shuts the queue down (as `CommitGroup::drop`
/// does after the last append). The committer loops on `take` like `group_commit::run`:
/// it must end with `Taken::Shutdown`, and between its `Items` and the final `Shutdown` it
/// must receive each item exactly once. Both a `Shutdown` carrying queued items and an empty
/// one (everything taken earlier) must be explored. 3 threads.
#[test]
fn committer_in_take_returns_shutdown_with_the_queued_items() {
    static SHUTDOWN_WITH_ITEMS: AtomicBool = AtomicBool::new(false);
    static SHUTDOWN_EMPTY: AtomicBool = AtomicBool::new(false);
    loom_common::explore_concurrent(
        "committer_in_take_returns_shutdown_with_the_queued_items",
        || {
            let q = Arc::new(DirtyQueue::<u32>::new());
            let committer = {
                let q = Arc::clone(&q);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        match q.take(None) {
                            Taken::Items(items) => {
                                assert!(!items.is_empty(), "an untimed take returned nothing");
                                got.extend(items);
                            }
                            Taken::Shutdown(items) => {
                                let seen = if items.is_empty() {
                                    &SHUTDOWN_EMPTY
                                } else {
                                    &SHUTDOWN_WITH_ITEMS
                                };
                                seen.store(true, StdOrdering::Relaxed);
                                got.extend(items);
                                return got;
                            }
                            Taken::Yield(_) => panic!("nobody asked to yield"),
                        }
                    }
                })
            };
            let producer = {
                let q = Arc::clone(&q);
                thread::spawn(move || assert!(q.mark(2)))
            };
            assert!(q.mark(1));
            producer.join().expect("producer");
            q.shutdown();
            let mut got = committer.join().expect("committer");
            got.sort_unstable();
            assert_eq!(got, vec![1, 2], "every item handed out exactly once");
        },
    );
    assert!(SHUTDOWN_WITH_ITEMS.load(StdOrdering::Relaxed), "never explored Shutdown(items)");
    assert!(SHUTDOWN_EMPTY.load(StdOrdering::Relaxed), "never explored Shutdown([])");
}

/// A producer holds the queue, marks two items and releases it (PutRecords over two
/// shards); another producer marks a third item with no hold. The committer, taking like
/// `group_commit::run`, never hands out the held items apart (both come in one `take`) and
/// is never left waiting: a release that forgot to wake it would be a loom deadlock.
#[test]
fn held_items_are_taken_together_and_release_wakes_the_committer() {
    loom_common::explore_concurrent(
        "held_items_are_taken_together_and_release_wakes_the_committer",
        || {
            let q = Arc::new(DirtyQueue::<u32>::new());
            let committer = {
                let q = Arc::clone(&q);
                thread::spawn(move || {
                    let mut takes = Vec::new();
                    while takes.iter().map(Vec::len).sum::<usize>() < 3 {
                        match q.take(None) {
                            Taken::Items(items) => takes.push(items),
                            Taken::Shutdown(_) => panic!("nobody shut the queue down"),
                            Taken::Yield(_) => panic!("nobody asked to yield"),
                        }
                    }
                    takes
                })
            };
            let other = {
                let q = Arc::clone(&q);
                thread::spawn(move || assert!(q.mark(3)))
            };
            q.hold();
            assert!(q.mark(1));
            assert!(q.mark(2));
            q.release();
            other.join().expect("producer");
            let takes = committer.join().expect("committer");
            assert!(
                takes.iter().any(|t| t.contains(&1) && t.contains(&2)),
                "held items were split: {takes:?}"
            );
        },
    );
}

/// A driver task polls `poll_take` while a producer marks an item under a hold and
/// releases it: the task is woken and gets the item, whichever comes first (no lost
/// wake-up through the waker, the hold, or the release).
#[test]
fn a_polling_committer_is_woken_by_mark_and_release() {
    loom_common::explore("a_polling_committer_is_woken_by_mark_and_release", || {
        let q = Arc::new(DirtyQueue::<u32>::new());
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                q.hold();
                assert!(q.mark(1));
                q.release();
                assert!(q.mark(2));
            })
        };
        let mut got = Vec::new();
        while got.len() < 2 {
            match block_on(|cx| q.poll_take(cx)) {
                Taken::Items(items) => got.extend(items),
                other => panic!("unexpected {other:?}"),
            }
        }
        producer.join().expect("producer");
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
    });
}

/// A driver task waiting in `poll_take` on an empty queue is woken by `shutdown` and gets
/// `Taken::Shutdown` (the group's drop waits for exactly that).
#[test]
fn shutdown_wakes_a_polling_committer() {
    loom_common::explore("shutdown_wakes_a_polling_committer", || {
        let q = Arc::new(DirtyQueue::<u32>::new());
        let stopper = {
            let q = Arc::clone(&q);
            thread::spawn(move || q.shutdown())
        };
        assert_eq!(block_on(|cx| q.poll_take(cx)), Taken::Shutdown(Vec::new()));
        stopper.join().expect("stopper");
    });
}

static YIELD_CARRIED: AtomicBool = AtomicBool::new(false);
static YIELD_EMPTY: AtomicBool = AtomicBool::new(false);

/// The hand-over (`CommitGroup::driver`): the thread committer in `take` is asked to yield
/// while a producer marks an item. The item is either in the thread's `Taken::Yield` (it
/// commits it before stopping) or left queued for the driver task, never lost and never
/// handed out twice.
#[test]
fn handover_from_thread_to_task_loses_no_item() {
    YIELD_CARRIED.store(false, StdOrdering::Relaxed);
    YIELD_EMPTY.store(false, StdOrdering::Relaxed);
    loom_common::explore("handover_from_thread_to_task_loses_no_item", || {
        let q = Arc::new(DirtyQueue::<u32>::new());
        let thread_committer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match q.take(None) {
                        Taken::Items(items) => got.extend(items),
                        Taken::Yield(items) => {
                            let seen = if items.is_empty() { &YIELD_EMPTY } else { &YIELD_CARRIED };
                            seen.store(true, StdOrdering::Relaxed);
                            got.extend(items);
                            return got;
                        }
                        Taken::Shutdown(_) => panic!("nobody shut the queue down"),
                    }
                }
            })
        };
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || assert!(q.mark(7)))
        };
        q.request_yield();
        let mut got = thread_committer.join().expect("thread committer");
        producer.join().expect("producer");
        if got.is_empty() {
            // Not taken by the thread: the driver finds it.
            match block_on(|cx| q.poll_take(cx)) {
                Taken::Items(items) => got.extend(items),
                other => panic!("unexpected {other:?}"),
            }
        } else {
            // Taken once: the driver finds the queue empty (and would wait).
            let waker = Waker::from(std::sync::Arc::new(Unparker(thread::current())));
            assert!(q.poll_take(&mut Context::from_waker(&waker)).is_pending());
        }
        assert_eq!(got, vec![7]);
    });
    assert!(YIELD_CARRIED.load(StdOrdering::Relaxed), "no run handed the item over in Yield");
    assert!(YIELD_EMPTY.load(StdOrdering::Relaxed), "no run yielded before the mark");
}

/// The journal's pattern: submit a checkpoint, then wait for the previous one, while the
/// worker runs them. A wait never returns before its job is done (the worker records what
/// it finished, outside the model), the jobs run in order, and a failed job fails every
/// later wait. Then shutdown ends the worker, which may be idle in `next`.
#[test]
fn job_queue_waits_follow_the_worker_and_failures_stick() {
    loom_common::explore_concurrent("job_queue_waits_follow_the_worker", || {
        let jobs: Arc<JobQueue<u32, &'static str>> = Arc::new(JobQueue::default());
        let finished = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let worker = {
            let (jobs, finished) = (Arc::clone(&jobs), Arc::clone(&finished));
            thread::spawn(move || {
                let mut order = Vec::new();
                while let Some(job) = jobs.next() {
                    order.push(job);
                    finished.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
                    jobs.done(if job == 2 { Err("checkpoint 2 failed") } else { Ok(()) });
                }
                order
            })
        };
        let first = jobs.submit(1);
        let second = jobs.submit(2);
        assert_eq!(jobs.wait(first), Ok(()));
        assert!(finished.load(loom::sync::atomic::Ordering::SeqCst) >= 1, "waited past job 1");
        assert_eq!(jobs.wait(second), Err("checkpoint 2 failed"));
        let third = jobs.submit(3);
        assert_eq!(jobs.wait(third), Err("checkpoint 2 failed"), "a failure sticks");
        jobs.shutdown();
        assert_eq!(worker.join().expect("worker"), vec![1, 2, 3], "every job, in order");
    });
}
