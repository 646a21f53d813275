//! Micro-benchmarks of the engine: batch encode/decode, CRC, appends under `none`,
//! sequential and random reads, timestamp lookups, and group commit under `sync`.
//!
//! ```text
//! cargo bench -p riffle-engine                      # everything, a few minutes
//! cargo bench -p riffle-engine -- group_commit      # one group (a name filter)
//! cargo bench -p riffle-engine -- --measurement-time 10 --sample-size 30   # longer runs
//! ```
//!
//! Defaults are short on purpose (10 samples, 1 s warm-up, 3 s measurement): the machine
//! this runs on is shared and noisy, so a single run is a smoke test and a comparison
//! between two builds should be repeated. Throughputs are in **payload bytes** (1 KiB of
//! record data per record); on disk a record takes 16 header bytes + the partition key
//! more, and each batch 48 bytes more.
//!
//! Every engine benchmark opens a fresh shard log in a temporary directory (on the same
//! file system as `$TMPDIR`, normally `/tmp`) for each criterion sample, primes it with one
//! acknowledged append (so that creating the first segment is not timed), and times only
//! the appends or reads. See `bench/README.md` for what the numbers mean and for the
//! issue-level throughput run (`examples/commit_throughput.rs`).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use riffle_engine::batch::{self, BatchBuilder, EncodedBatches, RecordIter};
use riffle_engine::{
    CommitConfig, CommitGroup, Durability, IoBackend, LogConfig, ManualClock, Record, ShardLog,
};

/// Record payload size used throughout.
const RECORD_BYTES: usize = 1024;
const KEY: &[u8] = b"user-0042";
const TIMESTAMP_MS: u64 = 1_700_000_000_000;

fn payload() -> Vec<u8> {
    (0..RECORD_BYTES).map(|i| (i * 31 % 251) as u8).collect()
}

fn record(data: &[u8]) -> Record<'_> {
    Record { partition_key: KEY, explicit_hash_key: None, data }
}

fn group(durability: Durability, io_backend: IoBackend) -> CommitGroup {
    CommitGroup::start(CommitConfig { durability, io_backend, ..CommitConfig::default() })
        .expect("commit group")
}

/// A log config whose segments are large enough that no roll happens inside one sample.
fn big_segments() -> LogConfig {
    LogConfig { segment_bytes: riffle_engine::constants::SEGMENT_BYTES_MAX, ..LogConfig::default() }
}

/// Opens a fresh log in a new temporary directory, primes it with one acknowledged append
/// (creating the first segment), runs `timed` on it and returns what `timed` measured.
/// The directory is removed afterwards, outside the measurement.
fn with_fresh_log(
    group: &CommitGroup,
    config: LogConfig,
    timed: impl FnOnce(&ShardLog) -> Duration,
) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ShardLog::open(dir.path(), config, group).expect("open log");
    let data = payload();
    log.append_wait(&[record(&data)]).expect("priming append");
    let elapsed = timed(&log);
    drop(log);
    drop(dir);
    elapsed
}

fn bench_batch(c: &mut Criterion) {
    let data = payload();
    let rec = record(&data);
    let mut g = c.benchmark_group("batch");
    for n in [1usize, 100] {
        let encoded = batch::encode_batch(0, &vec![rec; n], TIMESTAMP_MS);
        g.throughput(Throughput::Bytes((n * RECORD_BYTES) as u64));
        g.bench_with_input(BenchmarkId::new("encode", n), &n, |b, &n| {
            let mut builder = BatchBuilder::with_capacity(encoded.len());
            let mut spare = EncodedBatches::default();
            b.iter(|| {
                builder.begin(0);
                for _ in 0..n {
                    builder.push(black_box(&rec), TIMESTAMP_MS);
                }
                let out = builder.take(std::mem::take(&mut spare));
                black_box(out.bytes.len());
                spare = out;
            });
        });
        g.bench_with_input(BenchmarkId::new("validate_and_iter", n), &encoded, |b, encoded| {
            b.iter(|| {
                let bytes = black_box(encoded.as_slice());
                let header = batch::validate(bytes).expect("valid");
                let mut sum = 0usize;
                for r in RecordIter::new(bytes).expect("header") {
                    sum += r.expect("record").data.len();
                }
                black_box((header, sum))
            });
        });
    }
    g.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32fast");
    for (name, len) in [("1KiB", 1024usize), ("1MiB", 1024 * 1024)] {
        let buf: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &buf, |b, buf| {
            b.iter(|| crc32fast::hash(black_box(buf)));
        });
    }
    g.finish();
}

/// Appends under `none`: `iters` appends of `n` records, then one `flush` so that the time
/// counts the committer's writes too (the page cache, no `fdatasync`). Appends are pipelined:
/// the producer never waits for an acknowledgement except at the end.
fn bench_append_none(c: &mut Criterion) {
    let data = payload();
    let mut g = c.benchmark_group("append_none");
    for backend in [IoBackend::Std, IoBackend::Auto] {
        let group = group(Durability::None, backend);
        let name = group.backend_name();
        for n in [1usize, 100] {
            let records = vec![record(&data); n];
            g.throughput(Throughput::Bytes((n * RECORD_BYTES) as u64));
            g.bench_function(BenchmarkId::new(format!("pipelined_{name}"), n), |b| {
                b.iter_custom(|iters| {
                    with_fresh_log(&group, big_segments(), |log| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let _ticket = log.append(&records).expect("append");
                        }
                        log.flush().expect("flush");
                        start.elapsed()
                    })
                });
            });
        }
        // One record per append, waiting for each acknowledgement: the round trip through
        // the committing thread (wake-up, pwrite, completion), without fdatasync.
        g.throughput(Throughput::Bytes(RECORD_BYTES as u64));
        g.bench_function(BenchmarkId::new(format!("append_wait_{name}"), 1), |b| {
            b.iter_custom(|iters| {
                with_fresh_log(&group, big_segments(), |log| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        log.append_wait(&[record(&data)]).expect("append");
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

/// Fills a log under `none` with `records` 1 KiB records in appends of `per_append`,
/// advancing the manual clock by 1 ms per append, and returns its directory, group and log.
fn prefilled(
    records: u64,
    per_append: usize,
    config: LogConfig,
    clock: &ManualClock,
) -> (tempfile::TempDir, CommitGroup, ShardLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let group = group(Durability::None, IoBackend::Std);
    let log = ShardLog::open(dir.path(), config, &group).expect("open");
    let data = payload();
    let chunk = vec![record(&data); per_append];
    let mut left = records;
    while left > 0 {
        let n = (left as usize).min(per_append);
        let _ticket = log.append(&chunk[..n]).expect("append");
        clock.advance(1);
        left -= n as u64;
    }
    log.flush().expect("flush");
    (dir, group, log)
}

/// Reads the whole log once, from its start, `max_bytes` per read; returns the bytes read.
fn read_all(log: &ShardLog, max_bytes: usize, decode: bool) -> usize {
    let mut position = log.start_position();
    let mut total = 0;
    while let Some(read) = log.read(position, max_bytes).expect("read") {
        total += read.bytes.len();
        if decode {
            for b in batch::split_batches(&read.bytes) {
                let (_, bytes) = b.expect("batch");
                for r in RecordIter::new(bytes).expect("header") {
                    black_box(r.expect("record").data);
                }
            }
        }
        position = read.next_position;
    }
    total
}

fn bench_sequential_read(c: &mut Criterion) {
    // 64 Ki records of 1 KiB (about 66 MiB on disk), in the page cache after the fill.
    let clock = ManualClock::new(TIMESTAMP_MS);
    let config = LogConfig { clock: Arc::new(clock.clone()), ..LogConfig::default() };
    let (_dir, _group, log) = prefilled(64 * 1024, 100, config, &clock);
    let bytes = read_all(&log, 1 << 20, false);
    let mut g = c.benchmark_group("read_sequential");
    g.throughput(Throughput::Bytes(bytes as u64));
    // `ShardLog::read` checks every returned batch's CRC; `decode` adds what a consumer does:
    // split the bytes into batches (validated again) and walk every record.
    for (name, decode) in [("read_1MiB", false), ("read_1MiB_and_decode", true)] {
        g.bench_function(name, |b| b.iter(|| read_all(&log, 1 << 20, decode)));
    }
    g.finish();
}

/// A small xorshift generator: deterministic, no dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn bench_lookup(c: &mut Criterion) {
    // 256 Ki records of 1 KiB (about 262 MiB: three 128 MiB segments), batches of about
    // 16 KiB (so that a point read validates one small batch), a sparse index entry every
    // 4 KiB (the default), one distinct arrival millisecond per 16-record append.
    let records: u64 = 256 * 1024;
    let per_append = 16;
    let clock = ManualClock::new(TIMESTAMP_MS);
    let config = LogConfig {
        batch_bytes_target: 16 * 1024,
        clock: Arc::new(clock.clone()),
        ..LogConfig::default()
    };
    let (_dir, _group, log) = prefilled(records, per_append, config, &clock);
    let distinct_ms = records / per_append as u64;
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("read_random_position_{}_segments", log.segment_count()), |b| {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        b.iter(|| {
            let position = rng.below(records);
            let read = log.read(position, 1).expect("read").expect("durable");
            assert!(read.first_position <= position && position < read.next_position);
            black_box(read.bytes.len())
        });
    });
    g.bench_function("position_at_timestamp_random", |b| {
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        b.iter(|| {
            let ms = TIMESTAMP_MS + rng.below(distinct_ms);
            black_box(log.position_at_timestamp(ms).expect("lookup").expect("found"))
        });
    });
    g.finish();
}

/// Group commit under `sync`: `threads` appender threads, each appending one 1 KiB record
/// at a time and waiting for its acknowledgement (one `fdatasync` per commit cycle, shared
/// by everyone waiting in it). Criterion's iteration is one acknowledged append; the
/// measured time is the wall time for all `iters` appends across the threads.
fn bench_group_commit(c: &mut Criterion) {
    let data = Arc::new(payload());
    let mut g = c.benchmark_group("group_commit_sync");
    g.throughput(Throughput::Bytes(RECORD_BYTES as u64));
    for backend in [IoBackend::Std, IoBackend::Auto] {
        let group = group(Durability::Sync, backend);
        let name = group.backend_name();
        for threads in [1u64, 8, 64] {
            g.bench_function(BenchmarkId::new(name, format!("{threads}_appenders")), |b| {
                b.iter_custom(|iters| {
                    with_fresh_log(&group, LogConfig::default(), |log| {
                        let barrier = Arc::new(Barrier::new(threads as usize + 1));
                        let handles: Vec<_> = (0..threads)
                            .map(|t| {
                                let share = iters / threads + u64::from(t < iters % threads);
                                let (log, barrier, data) =
                                    (log.clone(), Arc::clone(&barrier), Arc::clone(&data));
                                std::thread::spawn(move || {
                                    barrier.wait();
                                    for _ in 0..share {
                                        log.append_wait(&[record(&data)]).expect("append");
                                    }
                                })
                            })
                            .collect();
                        barrier.wait();
                        let start = Instant::now();
                        for h in handles {
                            h.join().expect("appender thread");
                        }
                        start.elapsed()
                    })
                });
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_batch, bench_crc, bench_append_none, bench_sequential_read, bench_lookup,
        bench_group_commit
}
criterion_main!(benches);
