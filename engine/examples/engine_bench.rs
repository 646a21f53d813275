//! The issue-3 performance targets of the stream engine, each against a baseline measured
//! in the same run.
//!
//! ```text
//! cargo run --release -p riffle-engine --example engine_bench -- [OPTIONS]
//!
//!   --only WHAT     overhead | open | shards | all (default all)
//!   --rounds N      rounds of the overhead comparison; medians reported (default 5)
//!   --records N     records per overhead run (default 200000)
//!   --open-gib G    GiB of data for the open-time run (default 10)
//!   --shards N      shards for the idle-memory run (default 1000)
//!   --durability D  none | sync: durability of the overhead runs (default none)
//!   --dir PATH      where to put the data (default $TMPDIR or /tmp)
//! ```
//!
//! **overhead** (target: routing plus append overhead above the raw shard log under 10 %
//! for 1 KiB records): one thread, `Durability::None`, std I/O, limits off. Baseline:
//! `ShardLog::append` of the same records into a bare log, waiting for each ack. Engine:
//! `put_record` / `put_records` into a 1-shard stream (validation, MD5 routing, limits
//! check, sequence numbers, and the same append). Two shapes: one record per call, and 100
//! records per call. Runs alternate (baseline, engine) in every round; the ratio is
//! engine time / baseline time per round, and the median ratio is reported.
//!
//! **open** (target: an engine whose shards hold 10 GiB opens in under 1 s): fills 8 shards
//! with 10 GiB under `None` (1 KiB records in `put_records` calls of 500), closes, drops the
//! page cache (`/proc/sys/vm/drop_caches`, if permitted) and times `Engine::open` three
//! times cold (cache dropped before each) and three times warm; medians reported. Baseline: the time to list and `stat` every file of the data
//! directory, cold, in the same run (the least any open must do).
//!
//! **shards** (target: 1,000 shards in one stream, idle memory under 256 MiB): the
//! process's resident set (`VmRSS`) before opening, after creating a 1,000-shard stream,
//! after one record was put into every shard (each then has a segment, two index maps and a
//! batch buffer), and after a reopen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riffle_engine::{
    CommitConfig, CommitGroup, Durability, Engine, EngineConfig, IoBackend, LimitsConfig,
    LogConfig, PutRecordInput, Record, ShardLog,
};

struct Options {
    only: String,
    rounds: usize,
    records: usize,
    open_gib: u64,
    shards: u32,
    durability: Durability,
    dir: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        only: "all".into(),
        rounds: 5,
        records: 200_000,
        open_gib: 10,
        shards: 1000,
        durability: Durability::None,
        dir: std::env::temp_dir(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--only" => o.only = value,
            "--rounds" => o.rounds = value.parse().expect("--rounds N"),
            "--records" => o.records = value.parse().expect("--records N"),
            "--open-gib" => o.open_gib = value.parse().expect("--open-gib G"),
            "--shards" => o.shards = value.parse().expect("--shards N"),
            "--dir" => o.dir = PathBuf::from(value),
            "--durability" => o.durability = value.parse().expect("--durability sync|none"),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn engine_config() -> EngineConfig {
    engine_config_with(Durability::None)
}

fn engine_config_with(durability: Durability) -> EngineConfig {
    EngineConfig {
        commit: CommitConfig { durability, io_backend: IoBackend::Std, ..CommitConfig::default() },
        limits: LimitsConfig::unlimited(),
        maintenance_interval_ms: 0,
        ..EngineConfig::default()
    }
}

/// On-CPU nanoseconds of the calling thread so far.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Wall seconds and the caller threads' CPU seconds of one run.
#[derive(Clone, Copy)]
struct Run {
    wall: f64,
    cpu: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `calls` calls of `f` on each of `threads` threads.
fn timed(threads: usize, calls: usize, f: &(dyn Fn() + Sync)) -> Run {
    let started = Instant::now();
    let cpu: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let before = thread_cpu_ns();
                    for _ in 0..calls {
                        f();
                    }
                    thread_cpu_ns() - before
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    Run { wall: started.elapsed().as_secs_f64(), cpu: cpu as f64 / 1e9 }
}

/// Calls in flight per thread in the pipelined runs.
const WINDOW: usize = 16;

/// Baseline: the bare shard log. `pipelined`: up to [`WINDOW`] unacknowledged calls.
fn run_log(
    o: &Options,
    dir: &Path,
    records: usize,
    per_call: usize,
    threads: usize,
    pipelined: bool,
    data: &[u8],
) -> Run {
    let group = CommitGroup::start(CommitConfig {
        durability: o.durability,
        io_backend: IoBackend::Std,
        ..CommitConfig::default()
    })
    .expect("group");
    let log = ShardLog::open(&dir.join("log"), LogConfig::default(), &group).expect("log");
    let keys: Vec<String> = (0..per_call).map(|i| format!("user-{i:04}")).collect();
    let batch: Vec<Record<'_>> = keys
        .iter()
        .map(|k| Record { partition_key: k.as_bytes(), explicit_hash_key: None, data })
        .collect();
    if pipelined {
        return timed(threads, 1, &|| {
            let mut window = std::collections::VecDeque::new();
            for _ in 0..records / per_call / threads {
                if window.len() == WINDOW {
                    let t: riffle_engine::AppendTicket = window.pop_front().expect("window");
                    t.wait().expect("ack");
                }
                window.push_back(log.append(&batch).expect("append"));
            }
            window.into_iter().for_each(|t| {
                t.wait().expect("ack");
            });
        });
    }
    timed(threads, records / per_call / threads, &|| {
        log.append(&batch).expect("append").wait().expect("ack");
    })
}

/// The engine: a one-shard stream.
fn run_engine(
    o: &Options,
    dir: &Path,
    records: usize,
    per_call: usize,
    threads: usize,
    pipelined: bool,
    data: &[u8],
) -> Run {
    let engine =
        Engine::open(dir.join("engine"), engine_config_with(o.durability)).expect("engine");
    engine.create_stream("bench", Some(1), None, &[]).expect("create");
    let keys: Vec<String> = (0..per_call).map(|i| format!("user-{i:04}")).collect();
    let batch: Vec<PutRecordInput<'_>> =
        keys.iter().map(|k| PutRecordInput::new(k, data)).collect();
    // The first put completes the stream's CREATING -> ACTIVE transition (a catalog commit).
    engine.put_record("bench", &batch[0]).expect("first put");
    if pipelined {
        return timed(threads, 1, &|| {
            let mut window = std::collections::VecDeque::new();
            for _ in 0..records / per_call / threads {
                if window.len() == WINDOW {
                    let p: riffle_engine::PendingPutRecords = window.pop_front().expect("window");
                    assert_eq!(p.wait().failed_record_count, 0);
                }
                window.push_back(engine.put_records_begin("bench", &batch).expect("put_records"));
            }
            window.into_iter().for_each(|p| assert_eq!(p.wait().failed_record_count, 0));
        });
    }
    if per_call == 1 {
        timed(threads, records / threads, &|| {
            engine.put_record("bench", &batch[0]).expect("put");
        })
    } else {
        timed(threads, records / per_call / threads, &|| {
            let out = engine.put_records("bench", &batch).expect("put_records");
            assert_eq!(out.failed_record_count, 0);
        })
    }
}

fn overhead(o: &Options) {
    println!(
        "## overhead: engine put vs bare ShardLog append, 1 KiB records, Durability::{:?}, std I/O",
        o.durability
    );
    let data = vec![0x5au8; 1024];
    println!("(wall: time per record; cpu: on-CPU time of the calling threads per record, the engine's own work; ratio = engine / log)");
    for (per_call, threads, pipelined) in
        [(1usize, 1usize, false), (100, 1, false), (100, 4, false), (100, 1, true)]
    {
        let records = match (per_call, o.durability) {
            (1, Durability::None) => o.records / 4,
            (1, _) => o.records / 200,
            (_, Durability::None) => o.records,
            _ => o.records / 10,
        };
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for round in 0..o.rounds {
            let dir = fresh_dir(&o.dir, "riffle-engine-bench-overhead");
            let log = run_log(o, &dir, records, per_call, threads, pipelined, &data);
            let engine = run_engine(o, &dir, records, per_call, threads, pipelined, &data);
            let _ = std::fs::remove_dir_all(&dir);
            let us = |secs: f64| secs * 1e6 / records as f64;
            println!(
                "round {}: {per_call} record(s)/call, {threads} thread(s){}: wall log {:.2} engine {:.2} us/record (ratio {:.3}); cpu log {:.2} engine {:.2} us/record (ratio {:.3})",
                round + 1,
                if pipelined { ", pipelined" } else { "" },
                us(log.wall),
                us(engine.wall),
                engine.wall / log.wall,
                us(log.cpu),
                us(engine.cpu),
                engine.cpu / log.cpu
            );
            wall.push(engine.wall / log.wall);
            cpu.push(engine.cpu / log.cpu);
        }
        println!(
            "median over {} rounds, {per_call} record(s) per call, {threads} thread(s){}: wall ratio {:.3} ({:+.1} %), caller cpu ratio {:.3} ({:+.1} %)",
            o.rounds,
            if pipelined { ", pipelined" } else { "" },
            median(wall.clone()),
            (median(wall) - 1.0) * 100.0,
            median(cpu.clone()),
            (median(cpu) - 1.0) * 100.0
        );
    }
}

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn walk(dir: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = entry.metadata().expect("stat");
        if meta.is_dir() {
            let (f, b) = walk(&entry.path());
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

fn open_time(o: &Options) {
    println!("## open: an engine holding {} GiB in 8 shards", o.open_gib);
    let dir = fresh_dir(&o.dir, "riffle-engine-bench-open");
    {
        let engine = Engine::open(&dir, engine_config()).expect("engine");
        engine.create_stream("big", Some(8), None, &[]).expect("create");
        let data = vec![0x33u8; 1024];
        let keys: Vec<String> = (0..500).map(|i| format!("key-{i}")).collect();
        let batch: Vec<PutRecordInput<'_>> =
            keys.iter().map(|k| PutRecordInput::new(k, &data)).collect();
        let target = o.open_gib << 30;
        let started = Instant::now();
        let per_call = 500 * (1024 + 9);
        let calls = target / per_call as u64;
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (engine, batch) = (&engine, &batch);
                s.spawn(move || {
                    for _ in (t..calls).step_by(2) {
                        engine.put_records("big", batch).expect("put_records");
                    }
                });
            }
        });
        engine.close().expect("close");
        println!("filled in {:.1} s", started.elapsed().as_secs_f64());
    }
    let cold = drop_caches();
    let started = Instant::now();
    let (files, bytes) = walk(&dir);
    let walk_s = started.elapsed().as_secs_f64();
    println!(
        "baseline: list + stat of {files} files ({:.2} GiB) {} in {:.1} ms",
        bytes as f64 / (1u64 << 30) as f64,
        if cold { "cold" } else { "(page cache not dropped: not permitted)" },
        walk_s * 1e3
    );
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..6 {
        let cold = run < 3 && drop_caches();
        let started = Instant::now();
        let engine = Engine::open(&dir, engine_config()).expect("reopen");
        let opened = started.elapsed().as_secs_f64();
        let d = engine.describe_stream_summary("big").expect("summary");
        println!(
            "open {}: {:.1} ms ({} open shards), {:.1} x the cold baseline walk",
            if cold { "cold" } else { "warm" },
            opened * 1e3,
            d.open_shard_count,
            opened / walk_s
        );
        times[usize::from(!cold)].push(opened * 1e3);
        drop(engine);
    }
    for (label, t) in ["cold", "warm"].iter().zip(times) {
        if !t.is_empty() {
            println!("median {label} open: {:.1} ms over {} runs", median(t.clone()), t.len());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Resident memory split: anonymous (heap, stacks) and file-backed (mapped page cache:
/// segment and index pages, shared with the kernel's cache and reclaimable).
fn rss_split() -> String {
    format!(
        "anon {} MiB, file-backed {} MiB",
        status_kib("RssAnon:") / 1024,
        status_kib("RssFile:") / 1024
    )
}

fn shards_memory(o: &Options) {
    println!("## idle memory: one stream of {} shards", o.shards);
    let dir = fresh_dir(&o.dir, "riffle-engine-bench-shards");
    let base = rss_kib();
    println!("before: RSS {} MiB ({})", base / 1024, rss_split());
    let mut config = engine_config();
    config.commit.durability = Durability::Sync;
    {
        let engine = Engine::open(&dir, config.clone()).expect("engine");
        let started = Instant::now();
        engine.create_stream("wide", Some(o.shards), None, &[]).expect("create");
        println!(
            "created in {:.0} ms; RSS +{} MiB ({})",
            started.elapsed().as_secs_f64() * 1e3,
            (rss_kib() - base) / 1024,
            rss_split()
        );
        // One record into every shard: explicit hash keys at each shard's start.
        let shards = riffle_engine::routing::uniform_ranges(o.shards);
        let keys: Vec<String> = shards.iter().map(|r| r.start.to_string()).collect();
        let records: Vec<PutRecordInput<'_>> = keys
            .iter()
            .map(|k| PutRecordInput {
                explicit_hash_key: Some(k),
                ..PutRecordInput::new("k", &[7u8; 1024])
            })
            .collect();
        let started = Instant::now();
        for chunk in records.chunks(500) {
            assert_eq!(engine.put_records("wide", chunk).expect("put").failed_record_count, 0);
        }
        std::thread::sleep(Duration::from_millis(200));
        println!(
            "one record in each shard ({:.0} ms); idle RSS +{} MiB ({})",
            started.elapsed().as_secs_f64() * 1e3,
            (rss_kib() - base) / 1024,
            rss_split()
        );
        engine.close().expect("close");
    }
    let after_close = rss_kib();
    let started = Instant::now();
    let engine = Engine::open(&dir, config).expect("reopen");
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "reopened in {:.0} ms; idle RSS +{} MiB over the closed state, +{} MiB over the start ({})",
        started.elapsed().as_secs_f64() * 1e3,
        rss_kib().saturating_sub(after_close) / 1024,
        rss_kib().saturating_sub(base) / 1024,
        rss_split()
    );
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let o = options();
    println!(
        "# engine_bench: {} CPUs, dir {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        o.dir.display()
    );
    let _keep = Arc::new(());
    if matches!(o.only.as_str(), "all" | "overhead") {
        overhead(&o);
    }
    if matches!(o.only.as_str(), "all" | "shards") {
        shards_memory(&o);
    }
    if matches!(o.only.as_str(), "all" | "open") {
        open_time(&o);
    }
}
