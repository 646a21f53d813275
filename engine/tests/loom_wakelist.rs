#![cfg(loom)]
//! Pins the wake-up protocol of push subscriptions (`riffle_engine::handoff::WakeList`, used
//! by `ShardLog::durable_beyond`): a task that finds no new record registers its waker and
//! re-checks; the committer publishes the watermark and wakes. Whatever the interleaving,
//! the task either sees the new watermark or is woken: a lost wake-up would park it for
//! good, which loom reports as a deadlock. The model also records that both outcomes (seen
//! at the re-check, and woken) were explored, so it cannot pass by missing the race.
//!
//! Run: `bash scripts/loom.sh` (see `scripts/loom.sh` for the flags).

use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
use std::task::{Context, Poll, Wake, Waker};

mod loom_common;

use loom::sync::Arc;
use loom::thread;
use riffle_engine::handoff::WakeList;
use riffle_engine::watermark::Watermark;

struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn a_waiting_subscriber_is_never_left_behind_a_publish() {
    let saw_on_recheck = std::sync::Arc::new(AtomicBool::new(false));
    let was_woken = std::sync::Arc::new(AtomicBool::new(false));
    let (a, b) = (std::sync::Arc::clone(&saw_on_recheck), std::sync::Arc::clone(&was_woken));
    loom_common::explore_concurrent(
        "a_waiting_subscriber_is_never_left_behind_a_publish",
        move || {
            let mark = Arc::new(Watermark::new(0));
            let list = Arc::new(WakeList::default());
            let committer = {
                let (mark, list) = (Arc::clone(&mark), Arc::clone(&list));
                thread::spawn(move || {
                    mark.publish(1);
                    list.wake_all();
                })
            };
            let waker = Waker::from(std::sync::Arc::new(Unparker(thread::current())));
            let mut cx = Context::from_waker(&waker);
            let mut polls = 0;
            let mut poll = |cx: &mut Context<'_>| {
                polls += 1;
                if mark.load() > 0 {
                    return Poll::Ready(());
                }
                list.register(cx.waker());
                if mark.load() > 0 {
                    a.store(true, StdOrdering::Relaxed);
                    return Poll::Ready(());
                }
                Poll::Pending
            };
            while poll(&mut cx).is_pending() {
                thread::park();
            }
            if polls > 1 {
                b.store(true, StdOrdering::Relaxed);
            }
            committer.join().expect("committer");
        },
    );
    assert!(saw_on_recheck.load(StdOrdering::Relaxed), "the re-check race was explored");
    assert!(was_woken.load(StdOrdering::Relaxed), "the wake-up path was explored");
}
