//! Closed-loop producers as tasks on one thread's event loop.
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
//! Only closed loops run here: an open loop sends at exact times, and tokio's timer has a
//! resolution of 1 ms, which would add up to 1 ms to every latency measured from the
//! intended send time. Open loops keep their threads and their precise sleeps.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Counts, RecordMaker, Recorder, RunConfig, Sent, Shared};
use crate::stats::Latencies;
use crate::target::{ConnectLoop, LoopPutter};

/// Runs `config.producers` closed-loop producers over the connections `connect` opens
/// (producer `p` on connection `p % connections`); one result per producer.
pub(super) fn produce(
    connect: ConnectLoop,
    config: &RunConfig,
    shared: Arc<Shared>,
) -> Result<Vec<(Counts, Latencies)>, String> {
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
            results.push(p.await.map_err(|e| format!("producer task: {e}"))?);
        }
        Ok(results)
    })
}

/// One producer: keeps `window` requests in flight until the run ends.
async fn producer(
    putter: Rc<dyn LoopPutter>,
    config: Rc<RunConfig>,
    shared: Arc<Shared>,
    producer: u32,
) -> (Counts, Latencies) {
    let recorder = Rc::new(RefCell::new(Recorder::new(&config, Arc::clone(&shared))));
    let window = Arc::new(tokio::sync::Semaphore::new(config.window as usize));
    let mut maker = RecordMaker::new(&config, producer);
    let end = config.warmup + config.duration;
    while !maker.exhausted() {
        let Ok(slot) = Arc::clone(&window).acquire_owned().await else { break };
        let intended = shared.now();
        if intended >= end || shared.stop.load(Ordering::Relaxed) {
            break;
        }
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
    Rc::into_inner(recorder).map(|r| r.into_inner().finish()).unwrap_or_default()
}
