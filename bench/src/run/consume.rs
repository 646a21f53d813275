//! The consumer side of a run: push consumers and polling consumers that check every
//! record ([`crate::payload`]) and each producer's order within a shard, and record
//! put-to-delivery latency; and the consume workload (fill, then read everything back from
//! TRIM_HORIZON), which records the latency of each GetRecords call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{produce, ConsumeCounts, Counts, Produced, RunConfig, RunResult, Shared, Workload};
use crate::payload;
use crate::stats::Latencies;
use crate::target::Target;

/// A push consumer: takes events until stopped, checks every record and each producer's
/// order within a shard, records put-to-delivery latency.
pub(super) fn consume_push(
    config: &RunConfig,
    shared: &Shared,
    shards: usize,
    mut events: Box<dyn crate::target::EventStream>,
) -> (ConsumeCounts, Latencies) {
    let mut counts = ConsumeCounts::default();
    let mut hist = Latencies::default();
    let mut last: Vec<Vec<u64>> = vec![vec![0; config.producers as usize]; shards];
    let end = config.warmup + config.duration;
    while !shared.stop.load(Ordering::Acquire) {
        let Some(event) = events.next() else { break };
        let crate::target::PushEvent { shard, records, received } = match event {
            Ok(event) => event,
            Err(e) => {
                crate::target::note_error(|| format!("subscription: {e}"));
                counts.errors += 1;
                continue;
            }
        };
        let now = received.saturating_duration_since(shared.start);
        shared.delivered.fetch_add(records.len() as u64, Ordering::AcqRel);
        for r in &records {
            let Some(stamp) = payload::check(&r.data) else {
                counts.corrupt += 1;
                continue;
            };
            match last.get_mut(shard).and_then(|l| l.get_mut(stamp.producer as usize)) {
                Some(prev) => {
                    if stamp.seq < *prev {
                        counts.out_of_order += 1;
                    }
                    *prev = stamp.seq + 1;
                }
                None => counts.corrupt += 1,
            }
            let sent = Duration::from_nanos(stamp.sent_ns);
            if sent >= shared.measure_from && sent < end {
                hist.record(now.saturating_sub(sent));
                counts.records += 1;
                counts.bytes += r.data.len() as u64;
            }
        }
    }
    (counts, hist)
}

/// The consume workload: fill, then read everything back from TRIM_HORIZON.
pub(super) fn run_consume(
    target: &dyn Target,
    config: &RunConfig,
    shards: &[String],
) -> Result<RunResult, String> {
    let per_producer =
        config.records.ok_or("the consume workload needs --records (per producer) to fill")?;
    let fill = RunConfig {
        workload: Workload::Produce,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(24 * 3600),
        rate: None,
        progress: false,
        ..config.clone()
    };
    let shared = Arc::new(Shared::new(Duration::ZERO));
    let mut filled = Counts::default();
    let mut put_hist = Latencies::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..config.producers)
            .map(|p| {
                let (fill, shared) = (&fill, Arc::clone(&shared));
                s.spawn(move || produce(target, fill, shared, p))
            })
            .collect();
        for h in handles {
            let Produced { counts: c, acks, .. } = h.join().expect("producer thread");
            filled += &c;
            put_hist.merge(&acks);
        }
    });
    if filled.records != per_producer * u64::from(config.producers) {
        return Err(format!(
            "filling stored {} of {} records",
            filled.records,
            per_producer * u64::from(config.producers)
        ));
    }
    // Read phase: consumers until every record is read (or the duration runs out).
    let shared = Shared::new(Duration::ZERO);
    let consumers = config.consumers.max(1) as usize;
    let mut assigned: Vec<Vec<String>> = vec![Vec::new(); consumers];
    for (i, shard) in shards.iter().enumerate() {
        assigned[i % consumers].push(shard.clone());
    }
    let read_count = AtomicU64::new(0);
    let total = filled.records;
    let mut consumed = ConsumeCounts::default();
    let mut calls = Latencies::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = assigned
            .iter()
            .filter(|a| !a.is_empty())
            .map(|mine| {
                s.spawn(|| consume(target, config, &shared, mine, Some((&read_count, total)), None))
            })
            .collect();
        for h in handles {
            let (c, hist) = h.join().expect("consumer thread");
            consumed += &c;
            calls.merge(&hist);
        }
    });
    let seconds = shared.now().as_secs_f64().max(1e-9);
    Ok(RunResult {
        version: env!("CARGO_PKG_VERSION").into(),
        target: target.describe(),
        config: config.clone(),
        seconds,
        produce_records_per_sec: 0.0,
        produce_mb_per_sec: 0.0,
        produced: filled,
        put_latency: put_hist.summary(),
        put_histogram: put_hist.encode(),
        send_lag: None,
        consume_records_per_sec: Some(consumed.records as f64 / seconds),
        consumed: Some(consumed),
        e2e_latency: None,
        e2e_histogram: None,
        read_latency: Some(calls.summary()),
        intervals: Vec::new(),
    })
}

/// Polls `shards` until stopped. End-to-end (`catch_up` = `None`): from the tip, recording
/// put-to-delivery latency per record; `ready` is told once the iterators are taken. Catch-up (`Some((read, total))`): from TRIM_HORIZON,
/// recording the latency of each GetRecords call, until `total` records were read by all
/// consumers together or the duration ran out.
pub(super) fn consume(
    target: &dyn Target,
    config: &RunConfig,
    shared: &Shared,
    shards: &[String],
    catch_up: Option<(&AtomicU64, u64)>,
    ready: Option<std::sync::mpsc::Sender<()>>,
) -> (ConsumeCounts, Latencies) {
    let mut counts = ConsumeCounts::default();
    let mut hist = Latencies::default();
    let from_tip = catch_up.is_none();
    let mut iterators: Vec<Option<String>> =
        shards.iter().map(|s| target.iterator(&config.stream, s, from_tip).ok()).collect();
    // Iterators taken: the producers may start (the sender is dropped here, too).
    if let Some(ready) = ready {
        let _ = ready.send(());
    }
    // Last sequence seen per shard and producer (+1; 0 = none yet).
    let mut last: Vec<Vec<u64>> = vec![vec![0; config.producers as usize]; shards.len()];
    let end = config.warmup + config.duration;
    while !shared.stop.load(Ordering::Acquire) {
        if let Some((read, total)) = catch_up {
            if read.load(Ordering::Acquire) >= total || shared.now() >= config.duration {
                break;
            }
        }
        // A page filled to the limit means the consumer is behind: poll again at once.
        // Otherwise it is at the tip: pause, as a polling consumer does, so that it does not
        // spin a core the system under test needs.
        let mut behind = false;
        for (i, slot) in iterators.iter_mut().enumerate() {
            let Some(it) = slot.clone() else { continue };
            let called = shared.now();
            let result = target.get_records(&it, config.read_limit);
            if catch_up.is_some() {
                hist.record(shared.now().saturating_sub(called));
            }
            match result {
                Ok(page) => {
                    counts.throttled_reads += u64::from(page.throttled);
                    let now = shared.now();
                    shared.delivered.fetch_add(page.records.len() as u64, Ordering::AcqRel);
                    behind |= page.records.len() >= config.read_limit as usize;
                    for r in &page.records {
                        let Some(stamp) = payload::check(&r.data) else {
                            counts.corrupt += 1;
                            continue;
                        };
                        match last[i].get_mut(stamp.producer as usize) {
                            Some(prev) => {
                                if stamp.seq < *prev {
                                    counts.out_of_order += 1;
                                }
                                *prev = stamp.seq + 1;
                            }
                            None => counts.corrupt += 1, // no such producer
                        }
                        let sent = Duration::from_nanos(stamp.sent_ns);
                        if catch_up.is_some() {
                            counts.records += 1;
                            counts.bytes += r.data.len() as u64;
                        } else if sent >= shared.measure_from && sent < end {
                            hist.record(now.saturating_sub(sent));
                            counts.records += 1;
                            counts.bytes += r.data.len() as u64;
                        }
                    }
                    if let Some((read, _)) = catch_up {
                        read.fetch_add(page.records.len() as u64, Ordering::AcqRel);
                    }
                    *slot = page.next;
                }
                Err(e) => {
                    crate::target::note_error(|| format!("read: {e}"));
                    counts.errors += 1
                }
            }
        }
        if !behind && catch_up.is_none() {
            std::thread::sleep(config.poll_interval);
        }
    }
    (counts, hist)
}
