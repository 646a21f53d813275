//! Producers as tasks on one thread's event loop.
//!
//! The thread-per-producer design ([`super::produce`]: a sending thread and a completer
//! thread each, requests handed to a runtime) costs the harness four to five thread
//! wake-ups per request. On a small machine shared with the server that is most of the
//! harness's CPU: measured on the 2-vCPU VM, 37 µs of harness CPU per single-record put,
//! more than the server spent on it, half of it in the scheduler. Here every producer is a
//! task on one current-thread tokio runtime, its requests in flight are tasks too, and a
//! reply wakes nothing but the event loop (the same shape as `redis-benchmark`, the
//! baseline's client).
//!
//! In an open loop each producer sleeps to its next send time on its own `timerfd`
//! ([`Timer`]), which the loop polls with the sockets: tokio's own timer has a resolution of
//! 1 ms, which would add up to 1 ms to every latency measured from the intended send time.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Produced, RecordMaker, Recorder, RunConfig, Schedule, Sent, Shared};
use crate::target::{ConnectLoop, LoopPutter};

/// Runs `config.producers` producers over the connections `connect` opens
/// (producer `p` on connection `p % connections`); one result per producer.
pub(super) fn produce(
    connect: ConnectLoop,
    config: &RunConfig,
    shared: Arc<Shared>,
) -> Result<Vec<Produced>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("event loop: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let config = Rc::new(config.clone());
    local.block_on(&runtime, async move {
        let putters: Vec<Rc<dyn LoopPutter>> = connect.await?.into_iter().map(Rc::from).collect();
        if putters.is_empty() {
            return Err("the target opened no connections".to_string());
        }
        let producers: Vec<_> = (0..config.producers)
            .map(|p| {
                let putter = Rc::clone(&putters[p as usize % putters.len()]);
                tokio::task::spawn_local(producer(
                    putter,
                    Rc::clone(&config),
                    Arc::clone(&shared),
                    p,
                ))
            })
            .collect();
        let mut results = Vec::with_capacity(producers.len());
        for p in producers {
            results.push(p.await.map_err(|e| format!("producer task: {e}"))??);
        }
        Ok(results)
    })
}

/// One producer: sends on its schedule (open loop) or as soon as a slot of its window is
/// free (closed loop), with at most `window` requests in flight, until the run ends.
async fn producer(
    putter: Rc<dyn LoopPutter>,
    config: Rc<RunConfig>,
    shared: Arc<Shared>,
    producer: u32,
) -> Result<Produced, String> {
    let recorder = Rc::new(RefCell::new(Recorder::new(&config, Arc::clone(&shared))));
    let window = Arc::new(tokio::sync::Semaphore::new(config.window as usize));
    let mut maker = RecordMaker::new(&config, producer);
    let end = config.warmup + config.duration;
    let schedule = match config.rate {
        Some(rate) => {
            let requests = rate / f64::from(config.batch);
            let timer = Timer::new().map_err(|e| format!("timerfd: {e}"))?;
            Some((Schedule::staggered(requests, config.producers, producer), timer))
        }
        None => None,
    };
    let mut i = 0u64;
    while !maker.exhausted() {
        let intended = match &schedule {
            Some((schedule, timer)) => {
                let at = schedule.at(i);
                timer
                    .sleep(at.saturating_sub(shared.now()))
                    .await
                    .map_err(|e| format!("timerfd: {e}"))?;
                at
            }
            None => shared.now(),
        };
        if intended >= end || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        // A full window makes an open-loop send late, which its latency includes.
        let Ok(slot) = Arc::clone(&window).acquire_owned().await else { break };
        i += 1;
        let bytes = maker.fill(intended);
        let reply = putter.put(&config.stream, &maker.records);
        let records = u64::from(config.batch);
        let (recorder, shared) = (Rc::clone(&recorder), Arc::clone(&shared));
        tokio::task::spawn_local(async move {
            // The request is written when the reply future is first polled: now.
            let sent = Sent { intended, at: shared.now(), records, bytes };
            let outcome = reply.await;
            let done = shared.now();
            recorder.borrow_mut().complete(&sent, outcome, done);
            // The recorder's handle goes before the slot: once the whole window is free,
            // the producer holds the only one.
            drop(recorder);
            drop(slot);
        });
    }
    // Every request in flight has answered once the whole window is free again.
    let _all = window.acquire_many(config.window).await;
    Ok(Rc::into_inner(recorder).map(|r| r.into_inner().finish()).unwrap_or_default())
}

/// A one-shot `timerfd` on the monotonic clock, polled by the event loop like a socket.
struct Timer(tokio::io::unix::AsyncFd<rustix::fd::OwnedFd>);

impl Timer {
    fn new() -> std::io::Result<Timer> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: `register` needs the descriptor to stay open and unreplaced for as long
        // as the `AsyncFd` holds it. It holds the `OwnedFd` itself, which nothing else
        // can close, and closes it only after deregistering, when dropped.
        #[allow(unsafe_code)]
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(Timer(fd))
    }

    /// Returns after `delay` (at once if it is zero).
    async fn sleep(&self, delay: Duration) -> std::io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        if delay.is_zero() {
            return Ok(());
        }
        let value = Timespec {
            tv_sec: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(delay.subsec_nanos()),
        };
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        let spec = Itimerspec { it_interval: zero, it_value: value };
        timerfd_settime(self.0.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut ready = self.0.readable().await?;
            // The expiration count; reading it re-arms readiness for the next sleep.
            let mut count = [0u8; 8];
            match rustix::io::read(ready.get_inner(), &mut count) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
