//! A benchmark run: producers (open or closed loop), consumers, progress, results.
//!
//! Each producer sends requests (PutRecords of `batch` records), at most `window` in flight;
//! a full window blocks the sender (in an open loop that makes sends late, which the latency
//! from the intended send time accounts for; see [`crate::schedule`]). A producer is a
//! thread that hands each pending request to its own completer thread, which waits for the
//! acknowledgement and records the latency; or, against a target that offers it (the
//! server), a task on one event-loop thread ([`event_loop`]), which costs the harness far
//! less CPU per request. Consumer threads (`run/consume.rs`) poll GetRecords on their
//! shards or take push events, check every record ([`crate::payload`]) and per-producer
//! order within a shard, and record end-to-end latency from the record's intended send time
//! to its delivery. Each thread keeps its own histogram; they are merged at the end.
//! Requests sent during the warm-up are executed but not recorded.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::keys::{key_name, KeyDistribution, KeySampler, Rng};
use crate::payload::{self, Stamp};
use crate::schedule::{latency, Schedule};
use crate::stats::{Latencies, Summary};
use crate::target::{PutOutcome, Target};

mod consume;
mod event_loop;

use consume::{consume, consume_push, run_consume};

/// Record sizes: fixed, or uniform in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordSize {
    /// Every record this many bytes.
    Fixed(usize),
    /// Uniform in `lo..=hi` bytes.
    Uniform(usize, usize),
}

impl std::str::FromStr for RecordSize {
    type Err = String;

    /// `N` or `uniform:LO:HI` (bytes, at least 20).
    fn from_str(text: &str) -> Result<Self, String> {
        let min = payload::HEADER_BYTES;
        let parse = |v: &str| v.parse::<usize>().map_err(|e| format!("{text}: {e}"));
        let size = match text.split(':').collect::<Vec<_>>().as_slice() {
            [n] => RecordSize::Fixed(parse(n)?),
            ["uniform", lo, hi] => RecordSize::Uniform(parse(lo)?, parse(hi)?),
            _ => return Err(format!("record size {text:?}: N or uniform:LO:HI")),
        };
        let (lo, hi) = match size {
            RecordSize::Fixed(n) => (n, n),
            RecordSize::Uniform(lo, hi) => (lo, hi),
        };
        if lo < min || hi < lo || hi > 1024 * 1024 {
            return Err(format!(
                "record size {text:?}: sizes must be in {min}..=1048576, LO <= HI"
            ));
        }
        Ok(size)
    }
}

impl RecordSize {
    fn sample(&self, rng: &mut Rng) -> usize {
        match *self {
            RecordSize::Fixed(n) => n,
            RecordSize::Uniform(lo, hi) => lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize,
        }
    }
}

/// What runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workload {
    /// Producers only: acknowledgement latency and throughput.
    Produce,
    /// Consumers read what producers write; delivery latency is recorded too.
    EndToEnd,
    /// Producers fill the stream first (not measured); then consumers read it all from
    /// TRIM_HORIZON as fast as they can: read throughput and GetRecords call latency.
    Consume,
    /// Like `e2e`, but each consumer is a registered enhanced fan-out consumer subscribed to
    /// every shard (push): `consumers` subscribers per shard.
    Push,
}

impl std::str::FromStr for Workload {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "produce" => Ok(Workload::Produce),
            "e2e" | "end-to-end" => Ok(Workload::EndToEnd),
            "consume" => Ok(Workload::Consume),
            "push" => Ok(Workload::Push),
            _ => Err(format!("unknown workload {text:?}: produce, e2e, consume or push")),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// What runs.
    pub workload: Workload,
    /// Stream name.
    pub stream: String,
    /// Shards of the stream.
    pub shards: u32,
    /// Producers (threads, or tasks of one event loop; see the module's documentation).
    pub producers: u32,
    /// Consumer threads (end-to-end only); shards are dealt to them round-robin.
    pub consumers: u32,
    /// Record size.
    pub record_size: RecordSize,
    /// Records per request.
    pub batch: u32,
    /// Requests in flight per producer.
    pub window: u32,
    /// Partition keys.
    pub keys: KeyDistribution,
    /// Open loop at this many records per second in total; closed loop if `None`.
    pub rate: Option<f64>,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    /// Stop after this many records per producer (whichever comes first with `duration`).
    pub records: Option<u64>,
    /// Time before measuring starts.
    pub warmup: Duration,
    /// GetRecords limit for consumers.
    pub read_limit: u32,
    /// Pause after an empty GetRecords.
    pub poll_interval: Duration,
    /// Seed of keys and sizes.
    pub seed: u64,
    /// Live progress line on stderr.
    pub progress: bool,
}

/// What one producer did: its counters, its acknowledgement latencies and (open loop)
/// how late its sends went out.
#[derive(Default)]
struct Produced {
    counts: Counts,
    acks: Latencies,
    lag: Latencies,
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Records acknowledged during the measured period.
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Records refused by a throughput limit.
    pub throttled: u64,
    /// Records or reads that failed otherwise.
    pub errors: u64,
}

impl std::ops::AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, o: &Counts) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.throttled += o.throttled;
        self.errors += o.errors;
    }
}

/// Consumer-side counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumeCounts {
    /// Records read and checked during the measured period.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Records that failed the payload check.
    pub corrupt: u64,
    /// Records that came before an earlier record of the same producer in the same shard.
    pub out_of_order: u64,
    /// Reads refused by a throughput limit.
    pub throttled_reads: u64,
    /// Reads that failed otherwise.
    pub errors: u64,
}

impl std::ops::AddAssign<&ConsumeCounts> for ConsumeCounts {
    fn add_assign(&mut self, o: &ConsumeCounts) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.corrupt += o.corrupt;
        self.out_of_order += o.out_of_order;
        self.throttled_reads += o.throttled_reads;
        self.errors += o.errors;
    }
}

/// The result of a run, as saved in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Harness version.
    pub version: String,
    /// The target's description.
    pub target: String,
    /// The configuration.
    pub config: RunConfig,
    /// Measured seconds.
    pub seconds: f64,
    /// Producer counters.
    pub produced: Counts,
    /// Acknowledged records per second.
    pub produce_records_per_sec: f64,
    /// Acknowledged payload MB (10^6 bytes) per second.
    pub produce_mb_per_sec: f64,
    /// Request acknowledgement latency (one value per request).
    pub put_latency: Summary,
    /// The full acknowledgement histogram (HdrHistogram V2, base64).
    pub put_histogram: String,
    /// Open loop only: how late each request went out after its intended send time (the
    /// harness's own lag: a timer woken late, a full window). The acknowledgement latency
    /// includes it; when it is a large part of it, the harness or the machine, not the
    /// target, is what the latency measures.
    #[serde(default)]
    pub send_lag: Option<Summary>,
    /// Consumer counters (end-to-end only).
    pub consumed: Option<ConsumeCounts>,
    /// Put to delivery latency, one value per record (end-to-end only).
    pub e2e_latency: Option<Summary>,
    /// The full delivery histogram.
    pub e2e_histogram: Option<String>,
    /// GetRecords call latency (consume only).
    #[serde(default)]
    pub read_latency: Option<Summary>,
    /// Records read and checked per second (consume only).
    #[serde(default)]
    pub consume_records_per_sec: Option<f64>,
    /// Per-second acknowledgement histograms, for the HDR interval log.
    #[serde(skip)]
    pub intervals: Vec<(Duration, Latencies)>,
}

struct Shared {
    start: Instant,
    measure_from: Duration,
    stop: AtomicBool,
    acked: AtomicU64,
    /// Records the consumers have seen (each consumer's copy counts).
    delivered: AtomicU64,
    errors: AtomicU64,
    /// Acknowledgement latencies since the last progress tick.
    interval: Mutex<Latencies>,
}

impl Shared {
    /// Counters at zero; the clock starts now and measuring after `measure_from`.
    fn new(measure_from: Duration) -> Self {
        Shared {
            start: Instant::now(),
            measure_from,
            stop: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            interval: Mutex::new(Latencies::default()),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

struct InFlight {
    sent: Sent,
    pending: Box<dyn crate::target::PendingPut>,
}

/// Runs `config` against `target` (the stream is created first).
pub fn run(target: &dyn Target, config: &RunConfig) -> Result<RunResult, String> {
    if config.producers == 0 || config.batch == 0 || config.window == 0 {
        return Err("producers, batch and window must be at least 1".into());
    }
    target.setup(&config.stream, config.shards)?;
    let shards = target.shards(&config.stream)?;
    if config.workload == Workload::Consume {
        return run_consume(target, config, &shards);
    }
    let shared = Arc::new(Shared::new(config.warmup));
    let end = config.warmup + config.duration;
    let intervals = Mutex::new(Vec::new());
    let (produced, put_hist, send_lag, consumed, e2e_hist) = std::thread::scope(|s| {
        // Consumers start first, at the tip, so that they see every record of the run.
        let consumer_handles: Vec<_> = if config.workload == Workload::Push {
            let mut handles = Vec::new();
            for c in 0..config.consumers.max(1) {
                let events =
                    match target.subscribe(&config.stream, &format!("bench-consumer-{c}"), &shards)
                    {
                        Ok(events) => events,
                        Err(e) => {
                            shared.stop.store(true, Ordering::Release);
                            eprintln!("riffle-bench: {e}");
                            break;
                        }
                    };
                let shared = Arc::clone(&shared);
                let n = shards.len();
                handles.push(s.spawn(move || consume_push(config, &shared, n, events)));
            }
            handles
        } else if config.workload == Workload::EndToEnd {
            let consumers = config.consumers.max(1) as usize;
            let mut assigned: Vec<Vec<String>> = vec![Vec::new(); consumers];
            for (i, shard) in shards.iter().enumerate() {
                assigned[i % consumers].push(shard.clone());
            }
            let assigned: Vec<Vec<String>> =
                assigned.into_iter().filter(|a| !a.is_empty()).collect();
            // The consumers take their iterators at the tip before any producer starts:
            // otherwise, on a loaded machine, the first records could land before an
            // iterator was taken and never be delivered (a flaky harness test).
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
            let handles: Vec<_> = assigned
                .into_iter()
                .map(|mine| {
                    let (shared, ready) = (Arc::clone(&shared), ready_tx.clone());
                    s.spawn(move || consume(target, config, &shared, &mine, None, Some(ready)))
                })
                .collect();
            drop(ready_tx);
            while ready_rx.recv().is_ok() {}
            handles
        } else {
            Vec::new()
        };
        // Producers run as tasks on one event-loop thread where the target offers that
        // (see `event_loop`); otherwise each is a thread.
        let producer_handles: Vec<_> = if let Some(connect) = target.loop_putters() {
            let shared = Arc::clone(&shared);
            vec![s.spawn(move || event_loop::produce(connect, config, shared))]
        } else {
            (0..config.producers)
                .map(|p| {
                    let shared = Arc::clone(&shared);
                    s.spawn(move || Ok(vec![produce(target, config, shared, p)]))
                })
                .collect()
        };
        let ticker = s.spawn(|| progress(config, &shared, end, &intervals));
        let mut produced = Counts::default();
        let mut put_hist = Latencies::default();
        let mut send_lag = Latencies::default();
        let results = producer_handles.into_iter().flat_map(|h| {
            h.join().expect("producer thread").unwrap_or_else(|e| {
                eprintln!("riffle-bench: {e}");
                shared.stop.store(true, Ordering::Release);
                Vec::new()
            })
        });
        for Produced { counts, acks, lag } in results {
            produced += &counts;
            put_hist.merge(&acks);
            send_lag.merge(&lag);
        }
        // Let consumers drain what was acknowledged (every consumer sees every record when
        // pushed, one consumer each when polled), for at most 5 s, then stop them. (A fixed
        // 200 ms pause lost records on a loaded machine: a flaky harness test.)
        if !consumer_handles.is_empty() {
            let copies = match config.workload {
                Workload::Push => u64::from(config.consumers.max(1)),
                _ => 1,
            };
            let drained = || {
                shared.delivered.load(Ordering::Acquire)
                    >= shared.acked.load(Ordering::Acquire) * copies
            };
            let give_up = Instant::now() + Duration::from_secs(5);
            std::thread::sleep(config.poll_interval * 4);
            while !drained() && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        shared.stop.store(true, Ordering::Release);
        let mut consumed = ConsumeCounts::default();
        let mut e2e = Latencies::default();
        for h in consumer_handles {
            let (counts, hist) = h.join().expect("consumer thread");
            consumed += &counts;
            e2e.merge(&hist);
        }
        ticker.join().expect("progress thread");
        (produced, put_hist, send_lag, consumed, e2e)
    });
    let measured = shared.now().min(end).saturating_sub(config.warmup).as_secs_f64().max(1e-9);
    let e2e = matches!(config.workload, Workload::EndToEnd | Workload::Push);
    Ok(RunResult {
        version: env!("CARGO_PKG_VERSION").into(),
        target: target.describe(),
        config: config.clone(),
        seconds: measured,
        produce_records_per_sec: produced.records as f64 / measured,
        produce_mb_per_sec: produced.bytes as f64 / measured / 1e6,
        produced,
        put_latency: put_hist.summary(),
        put_histogram: put_hist.encode(),
        send_lag: config.rate.is_some().then(|| send_lag.summary()),
        consumed: e2e.then_some(consumed),
        e2e_latency: e2e.then(|| e2e_hist.summary()),
        e2e_histogram: e2e.then(|| e2e_hist.encode()),
        read_latency: None,
        consume_records_per_sec: None,
        intervals: intervals.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

fn produce(
    target: &dyn Target,
    config: &RunConfig,
    shared: Arc<Shared>,
    producer: u32,
) -> Produced {
    let schedule = config
        .rate
        .map(|r| Schedule::staggered(r / f64::from(config.batch), config.producers, producer));
    let end = config.warmup + config.duration;
    // At most `window` requests in flight: a producer takes a token before it sends, the
    // completer returns it once the request is answered.
    let (tx, rx) = std::sync::mpsc::channel::<InFlight>();
    let (tokens_back, tokens) = std::sync::mpsc::sync_channel::<()>(config.window as usize);
    for _ in 0..config.window {
        let _ = tokens_back.send(());
    }
    std::thread::scope(|s| {
        let mut recorder = Recorder::new(config, Arc::clone(&shared));
        let clock = Arc::clone(&shared);
        let completer = s.spawn(move || {
            for request in rx {
                let outcome = request.pending.wait();
                let done = clock.now();
                let _ = tokens_back.send(());
                recorder.complete(&request.sent, outcome, done);
            }
            recorder.finish()
        });
        let mut maker = RecordMaker::new(config, producer);
        let mut i = 0u64;
        loop {
            if maker.exhausted() {
                break;
            }
            let intended = match &schedule {
                Some(s) => {
                    let at = s.at(i);
                    sleep_until(&shared, at);
                    at
                }
                None => shared.now(),
            };
            if intended >= end || shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let bytes = maker.fill(intended);
            if tokens.recv().is_err() {
                break;
            }
            let sent = Sent { intended, at: shared.now(), records: u64::from(config.batch), bytes };
            let pending = target.put(&config.stream, &maker.records);
            if tx.send(InFlight { sent, pending }).is_err() {
                break;
            }
            i += 1;
        }
        drop(tx);
        completer.join().expect("completer thread")
    })
}

/// Builds a producer's requests: keys from its sampler, payloads stamped with the producer,
/// its sequence and the intended send time.
struct RecordMaker {
    batch: u32,
    limit: Option<u64>,
    record_size: RecordSize,
    producer: u32,
    keys: KeySampler,
    rng: Rng,
    key_names: Vec<Option<String>>,
    /// The request being built; reused (the target copies the records before `put` returns).
    records: Vec<(String, Vec<u8>)>,
    seq: u64,
}

impl RecordMaker {
    fn new(config: &RunConfig, producer: u32) -> Self {
        RecordMaker {
            batch: config.batch,
            limit: config.records,
            record_size: config.record_size,
            producer,
            keys: KeySampler::new(config.keys, config.seed ^ (u64::from(producer) << 32)),
            rng: Rng::new(config.seed.wrapping_add(u64::from(producer))),
            key_names: Vec::new(),
            records: Vec::with_capacity(config.batch as usize),
            seq: 0,
        }
    }

    /// The producer has sent its `--records`.
    fn exhausted(&self) -> bool {
        self.limit.is_some_and(|n| self.seq >= n)
    }

    /// Fills [`RecordMaker::records`] with the next request; returns its payload bytes.
    fn fill(&mut self, intended: Duration) -> u64 {
        self.records.resize_with(self.batch as usize, Default::default);
        let mut bytes = 0u64;
        for (key, data) in &mut self.records {
            let k = self.keys.next_index();
            if self.key_names.len() <= k as usize {
                self.key_names.resize(k as usize + 1, None);
            }
            let name = self.key_names[k as usize].get_or_insert_with(|| key_name(k));
            key.clear();
            key.push_str(name);
            data.resize(self.record_size.sample(&mut self.rng), 0);
            let sent_ns = intended.as_nanos() as u64;
            payload::write(data, Stamp { producer: self.producer, seq: self.seq, sent_ns });
            bytes += data.len() as u64;
            self.seq += 1;
        }
        bytes
    }
}

/// What a completed request needs to be recorded.
struct Sent {
    /// When it was meant to be sent (open loop: its slot in the schedule).
    intended: Duration,
    /// When it was sent.
    at: Duration,
    records: u64,
    bytes: u64,
}

/// Records a producer's completed requests: counters, the latency histogram (requests
/// intended during the measured period only) and the progress line's interval histogram.
struct Recorder {
    shared: Arc<Shared>,
    open_loop: bool,
    end: Duration,
    counts: Counts,
    hist: Latencies,
    /// Open loop: send time minus intended send time.
    lag: Latencies,
    /// Latencies not yet in the shared interval histogram. Raw values, not a histogram: a
    /// histogram's merge walks, and its reset clears, all of its 30,000-odd buckets, and at
    /// ten merges a second per producer that was 8.6 % of the harness's CPU time under
    /// single-record puts from 50 producers (`perf record`).
    local: Vec<Duration>,
    /// When `local` was last flushed (offset from the start).
    flushed: Duration,
}

impl Recorder {
    fn new(config: &RunConfig, shared: Arc<Shared>) -> Self {
        Recorder {
            shared,
            open_loop: config.rate.is_some(),
            end: config.warmup + config.duration,
            counts: Counts::default(),
            hist: Latencies::default(),
            lag: Latencies::default(),
            local: Vec::new(),
            flushed: Duration::ZERO,
        }
    }

    /// One request answered at `done` with `outcome`.
    fn complete(&mut self, request: &Sent, outcome: PutOutcome, done: Duration) {
        let shared = &self.shared;
        let measured = request.intended >= shared.measure_from && request.intended < self.end;
        shared.acked.fetch_add(outcome.ok, Ordering::Relaxed);
        shared.errors.fetch_add(outcome.failed, Ordering::Relaxed);
        if measured {
            let l = latency(self.open_loop, request.intended, request.at, done);
            self.hist.record(l);
            self.local.push(l);
            if self.open_loop {
                self.lag.record(request.at.saturating_sub(request.intended));
            }
            self.counts.records += outcome.ok;
            self.counts.bytes += if outcome.ok == request.records { request.bytes } else { 0 };
            self.counts.throttled += outcome.throttled;
            self.counts.errors += outcome.failed;
        }
        if done.saturating_sub(self.flushed) > Duration::from_millis(100) {
            self.flush(done);
        }
    }

    fn flush(&mut self, now: Duration) {
        if !self.local.is_empty() {
            let mut interval = self.shared.interval.lock().unwrap_or_else(|e| e.into_inner());
            self.local.drain(..).for_each(|l| interval.record(l));
        }
        self.flushed = now;
    }

    /// The producer's counters and histograms.
    fn finish(mut self) -> Produced {
        self.flush(self.shared.now());
        Produced { counts: self.counts, acks: self.hist, lag: self.lag }
    }
}

/// Sleeps until `at` (offset from the start). No spinning: the kernel's timer slack (50 µs
/// by default) makes a send up to that late, which the open-loop latency, counted from the
/// intended time, includes. A final spin of up to 100 µs per request, as this did before,
/// burns CPU the server needs on a machine they share (harness CPU per record at 12,000
/// requests/s: 48 µs without it, 50-56 µs with it in earlier, unpaired runs).
fn sleep_until(shared: &Shared, at: Duration) {
    loop {
        let now = shared.now();
        if now >= at {
            return;
        }
        std::thread::sleep(at - now);
    }
}

fn progress(
    config: &RunConfig,
    shared: &Shared,
    end: Duration,
    intervals: &Mutex<Vec<(Duration, Latencies)>>,
) {
    let tty = std::io::stderr().is_terminal();
    let mut last_acked = 0u64;
    let mut tick = Duration::ZERO;
    let mut cumulative = Latencies::default();
    loop {
        tick += Duration::from_secs(1);
        while shared.now() < tick {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let interval =
            std::mem::take(&mut *shared.interval.lock().unwrap_or_else(|e| e.into_inner()));
        cumulative.merge(&interval);
        if !interval.is_empty() {
            intervals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((tick - Duration::from_secs(1), interval));
        }
        let acked = shared.acked.load(Ordering::Relaxed);
        if config.progress {
            let phase = if tick <= config.warmup { "warm-up" } else { "measuring" };
            let line = format!(
                "[{:>4}s elapsed, {:>4}s left, {phase}] {:>10.0} records/s  p99 so far {:>8.3} ms  errors {}",
                tick.as_secs(),
                end.saturating_sub(tick).as_secs(),
                (acked - last_acked) as f64,
                cumulative.percentile_ns(99.0) as f64 / 1e6,
                shared.errors.load(Ordering::Relaxed)
            );
            if tty {
                eprint!("\r{line}");
            } else if tick.as_secs().is_multiple_of(5) {
                eprintln!("{line}");
            }
        }
        last_acked = acked;
        if tick >= end + Duration::from_secs(5) {
            return;
        }
    }
}
