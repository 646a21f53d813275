//! The issue's throughput targets, measured in one run against raw-disk baselines taken in
//! the same process (and by fio, if installed), in alternating rounds; medians reported.
//!
//! ```text
//! cargo run --release -p riffle-engine --example commit_throughput -- [OPTIONS]
//!
//!   --rounds N          rounds; every figure is the median over rounds (default 5)
//!   --secs S            seconds per timed run (default 3)
//!   --threads T         appender threads in the `sync` runs (default 64)
//!   --record-bytes B    record payload bytes (default 1024)
//!   --dir PATH          where to put the logs and raw files (default $TMPDIR or /tmp)
//!   --backends LIST     I/O backends, comma separated: std,auto,uring (default std,auto)
//!   --none-appends LIST records per append in the `none` runs (default 100,500)
//!   --none-mib M        payload MiB per `none` run from memory (default 960)
//!   --only WHAT         sync | none | all (default all)
//!   --no-fio            skip the fio runs (they also skip themselves if fio is missing)
//!   --no-pipelined      skip the diagnostic pipelined-producer runs
//! ```
//!
//! **sync** (target: 64 appenders of 1 KiB records reach at least 80 % of the bytes per
//! second of raw sequential writes with one `fdatasync` per batch of the same size):
//!
//! - *engine fresh*: a new log, so its first segment, which the engine creates sparse
//!   (`set_len`); 1 GiB segments so that the run never leaves it. `T` threads each loop on
//!   `append_wait` of one record for `S` seconds.
//! - *engine steady*: default 128 MiB segments, filled past the first roll before the timed
//!   run, so that the timed run writes into a segment the engine zero-filled in the
//!   background (the steady state of a busy shard). Whether that worked is checked
//!   (`allocated`: the newest segment file has all its blocks).
//! - **Batch size**: every commit cycle closes the log's open batch (`BatchBuilder::take`),
//!   and a cycle of at most `T` one-record appends stays far below the 1 MiB batch target,
//!   so *one batch in the log = one commit cycle = one write + one `fdatasync`* (a segment
//!   roll adds a few syncs; rolls are counted). The batches are read back from the log after
//!   the run: mean batch size = on-disk bytes of the run's batches / their number.
//! - *engine pipelined* (diagnostic): the same `T` appends in flight, but issued by one
//!   thread that waits for the oldest ticket (no thread wake-up per append). With the
//!   *mini group commit* (a textbook group commit in a few lines, same threads and file
//!   layouts), it separates the cost of the commit path from the cost of `T` blocking
//!   threads taking turns on the machine's cores.
//! - *raw*: the same process writes that many bytes per `pwrite`, each followed by
//!   `fdatasync`, sequentially for `S` seconds, into a file sized with `set_len` (sparse,
//!   like the fresh segment; compared with *fresh*), into a pre-written file that it
//!   overwrites (like a prepared segment; compared with *steady*), and into a file that grows
//!   by appending (for reference).
//! - *fio*: the same three layouts with `--fdatasync=1` and `bs` = the fresh batch size
//!   rounded to 1 KiB (`--fallocate=truncate`, `--fallocate=none`, `--overwrite=1` on the
//!   pre-written file). The exact commands are printed.
//! - Ratio: engine on-disk bytes per second (batch and record headers included, as the raw
//!   writes count every byte) over raw bytes per second, per round; the median is reported.
//! - Hygiene for a noisy disk: files are deleted only at the end of a round (the root file
//!   system is mounted with `discard`, and the discards of a deleted file slow the syncs
//!   that follow), and every timed run starts after a `sync` and a short pause.
//!
//! **none** (target: over 1 GB/s of 1 KiB records from memory on one core): one appender
//! thread appending `R` records per call, pipelined (at most 64 unacknowledged appends),
//! then a `flush`; the time covers all of it. *memory*: `--none-mib` of payload into one
//! 1 GiB segment without background preparation (no roll, nothing leaves the page cache).
//! *sustained*: default configuration for `S` seconds (segments roll; sealing syncs, and the
//! preparer zero-fills and syncs every next segment), with and without preparation. CPU time
//! of the appender thread and of all other threads of the process (committer, io_uring
//! workers, preparer) comes from `/proc/self/task/*/schedstat` and is given per GB of
//! payload. Each round's `none` runs start with a *cold* run, reported on its own row: on a
//! VM the first touch of page-cache memory freed a while ago can cost more than the copy
//! (see the README). Run under `taskset -c 0` to put everything on one core.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use riffle_engine::batch::split_batches;
use riffle_engine::constants::SEGMENT_BYTES_MAX;
use riffle_engine::{
    CommitConfig, CommitGroup, Durability, IoBackend, LogConfig, Record, ShardLog,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const KEY: &[u8] = b"user-0042";
const MIB: u64 = 1024 * 1024;
/// Unacknowledged appends a `none` producer keeps in flight.
const NONE_WINDOW: usize = 64;
/// Size of the pre-written file that the raw and fio overwrite runs overwrite.
const OVERWRITE_FILE_BYTES: u64 = 1024 * MIB;
/// Numbers the scratch files.
static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);
/// Where raw writes start: after a segment's 64-byte header, as the engine's do.
const RAW_START: u64 = 64;

#[derive(Debug, Clone)]
struct Args {
    rounds: usize,
    secs: f64,
    threads: usize,
    record_bytes: usize,
    dir: PathBuf,
    backends: Vec<IoBackend>,
    none_appends: Vec<usize>,
    none_mib: u64,
    sync: bool,
    none: bool,
    fio: bool,
    pipelined: bool,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        rounds: 5,
        secs: 3.0,
        threads: 64,
        record_bytes: 1024,
        dir: std::env::temp_dir(),
        backends: vec![IoBackend::Std, IoBackend::Auto],
        none_appends: vec![100, 500],
        none_mib: 960,
        sync: true,
        none: true,
        fio: true,
        pipelined: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => a.rounds = value()?.parse()?,
            "--secs" => a.secs = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            "--record-bytes" => a.record_bytes = value()?.parse()?,
            "--dir" => a.dir = PathBuf::from(value()?),
            "--backends" => {
                a.backends = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--none-appends" => {
                a.none_appends = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--none-mib" => a.none_mib = value()?.parse()?,
            "--only" => match value()?.as_str() {
                "sync" => a.none = false,
                "none" => a.sync = false,
                "all" => {}
                other => return Err(format!("--only {other}: expected sync, none or all").into()),
            },
            "--no-fio" => a.fio = false,
            "--no-pipelined" => a.pipelined = false,
            "-h" | "--help" => {
                println!("see the header of engine/examples/commit_throughput.rs for the options");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if a.rounds == 0 || a.threads == 0 || a.secs <= 0.0 || a.backends.is_empty() {
        return Err("rounds, threads, secs and backends must be positive".into());
    }
    if a.none_appends.is_empty() || a.none_appends.contains(&0) {
        return Err("--none-appends needs positive numbers".into());
    }
    if a.none_mib * MIB > SEGMENT_BYTES_MAX * 15 / 16 {
        return Err("--none-mib must fit in one 1 GiB segment (at most 960)".into());
    }
    Ok(a)
}

fn payload(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i * 31 % 251) as u8).collect()
}

fn record(data: &[u8]) -> Record<'_> {
    Record { partition_key: KEY, explicit_hash_key: None, data }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn backend_label(b: IoBackend) -> &'static str {
    match b {
        IoBackend::Std => "std",
        IoBackend::Auto => "auto",
        IoBackend::Uring => "uring",
    }
}

/// Flushes the page cache and lets the disk settle before a timed run.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

// ---------------------------------------------------------------------------------------
// sync: engine

#[derive(Debug, Clone, Default)]
struct SyncRun {
    wall_s: f64,
    records: u64,
    disk_bytes: u64,
    batches: u64,
    records_per_batch_p50: f64,
    rolls: usize,
    /// Whether the segment written last was fully allocated when the run ended.
    allocated: bool,
    backend: &'static str,
    /// On-CPU seconds of the committing thread(s) during the run.
    committer_cpu_s: f64,
}

impl SyncRun {
    fn disk_mbps(&self) -> f64 {
        self.disk_bytes as f64 / self.wall_s / 1e6
    }
    fn payload_mbps(&self, record_bytes: usize) -> f64 {
        (self.records * record_bytes as u64) as f64 / self.wall_s / 1e6
    }
    fn batch_bytes(&self) -> f64 {
        self.disk_bytes as f64 / self.batches.max(1) as f64
    }
    fn records_per_batch(&self) -> f64 {
        self.records as f64 / self.batches.max(1) as f64
    }
    fn cycles_per_s(&self) -> f64 {
        self.batches as f64 / self.wall_s
    }
    /// Committer on-CPU microseconds per commit cycle.
    fn committer_us_per_cycle(&self) -> f64 {
        self.committer_cpu_s * 1e6 / self.batches.max(1) as f64
    }
}

/// On-disk bytes and record counts of the batches at or after position `from`.
fn batch_stats(log: &ShardLog, from: u64) -> Res<(u64, Vec<u32>)> {
    let (mut bytes, mut counts) = (0u64, Vec::new());
    let mut position = from;
    while let Some(read) = log.read(position, 8 << 20)? {
        for b in split_batches(&read.bytes) {
            let (header, _) = b?;
            if header.base_position >= from {
                bytes += u64::from(header.batch_bytes);
                counts.push(header.record_count);
            }
        }
        position = read.next_position;
    }
    Ok((bytes, counts))
}

/// True if the newest `.log` file in `dir` has (nearly) all of its length allocated.
fn newest_segment_allocated(dir: &Path) -> Res<bool> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let Some(newest) = logs.last() else { return Ok(false) };
    let meta = std::fs::metadata(newest)?;
    Ok(meta.blocks() * 512 >= meta.len() / 100 * 99)
}

/// Appends big chunks (1000 records per append, a few in flight) until `done` says stop.
fn bulk_fill(log: &ShardLog, data: &[u8], mut done: impl FnMut(&ShardLog, u64) -> bool) -> Res<()> {
    let chunk = vec![record(data); 1000];
    let mut tickets = VecDeque::new();
    let mut appended = 0u64;
    while !done(log, appended) {
        tickets.push_back(log.append(&chunk)?);
        appended += (chunk.len() * data.len()) as u64;
        if tickets.len() >= 8 {
            tickets.pop_front().map(|t| t.wait()).transpose()?;
        }
    }
    for t in tickets {
        t.wait()?;
    }
    log.flush()?;
    Ok(())
}

/// Waits (up to 30 s) until the log directory's prepared next segment has its full length,
/// then a little longer for its final sync.
fn wait_for_prepared(dir: &Path, capacity: u64) {
    let prep = dir.join("next.log.prep");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::fs::metadata(&prep).is_ok_and(|m| m.len() >= capacity) {
            std::thread::sleep(Duration::from_millis(1500));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One timed `sync` run of the engine; the log directory is returned, to be deleted later.
fn engine_sync(
    args: &Args,
    scratch: &Path,
    backend: IoBackend,
    steady: bool,
    pipelined: bool,
) -> Res<(SyncRun, tempfile::TempDir)> {
    let dir = tempfile::tempdir_in(scratch)?;
    let group = CommitGroup::start(CommitConfig {
        durability: Durability::Sync,
        io_backend: backend,
        ..CommitConfig::default()
    })?;
    let config = if steady {
        LogConfig::default()
    } else {
        LogConfig { segment_bytes: SEGMENT_BYTES_MAX, ..LogConfig::default() }
    };
    let segment_bytes = config.segment_bytes;
    let log = ShardLog::open(dir.path(), config, &group)?;
    let data = Arc::new(payload(args.record_bytes));
    log.append_wait(&[record(&data)])?;
    if steady {
        // Past half of the first segment (the preparer starts), wait for the prepared file,
        // then on past the roll into it.
        bulk_fill(&log, &data, |_, appended| appended >= segment_bytes / 2 + 8 * MIB)?;
        wait_for_prepared(dir.path(), segment_bytes);
        bulk_fill(&log, &data, |log, _| log.segment_count() >= 2)?;
    }
    settle();
    let start_position = log.end_position();
    let start_segments = log.segment_count();
    let (acked, wall_s, committer0) = if pipelined {
        // One thread keeps `threads` one-record appends in flight, waiting for the oldest.
        let committer0 = threads_cpu_ns(is_committer);
        let deadline = Duration::from_secs_f64(args.secs);
        let mut tickets = VecDeque::with_capacity(args.threads);
        let mut acked = 0u64;
        let t0 = Instant::now();
        while t0.elapsed() < deadline {
            tickets.push_back(log.append(&[record(&data)])?);
            if tickets.len() >= args.threads {
                tickets.pop_front().map(|t| t.wait()).transpose()?;
                acked += 1;
            }
        }
        for t in tickets {
            t.wait()?;
            acked += 1;
        }
        (acked, t0.elapsed().as_secs_f64(), committer0)
    } else {
        let stop = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(Barrier::new(args.threads + 1));
        let handles: Vec<_> = (0..args.threads)
            .map(|_| {
                let (log, stop, barrier, data) =
                    (log.clone(), Arc::clone(&stop), Arc::clone(&barrier), Arc::clone(&data));
                std::thread::spawn(move || -> riffle_engine::Result<u64> {
                    barrier.wait();
                    let mut acked = 0;
                    while !stop.load(Ordering::Relaxed) {
                        log.append_wait(&[record(&data)])?;
                        acked += 1;
                    }
                    Ok(acked)
                })
            })
            .collect();
        barrier.wait();
        let committer0 = threads_cpu_ns(is_committer);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(args.secs));
        stop.store(true, Ordering::Relaxed);
        let mut acked = 0;
        for h in handles {
            acked += h.join().map_err(|_| "appender thread panicked")??;
        }
        (acked, t0.elapsed().as_secs_f64(), committer0)
    };
    let committer_cpu_s = threads_cpu_ns(is_committer).saturating_sub(committer0) as f64 / 1e9;
    let records = log.end_position() - start_position;
    assert_eq!(records, acked, "every acknowledged append is durable, and only those");
    let (disk_bytes, counts) = batch_stats(&log, start_position)?;
    let run = SyncRun {
        wall_s,
        records,
        disk_bytes,
        batches: counts.len() as u64,
        records_per_batch_p50: median(counts.iter().map(|&c| f64::from(c)).collect()),
        rolls: log.segment_count() - start_segments,
        allocated: newest_segment_allocated(dir.path())?,
        backend: group.backend_name(),
        committer_cpu_s,
    };
    drop(log);
    drop(group);
    Ok((run, dir))
}

// ---------------------------------------------------------------------------------------
// sync: raw baselines

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A file sized with `set_len` (sparse), written from the start.
    SetLen,
    /// A new file that grows with every write.
    Append,
    /// A pre-written file, overwritten.
    Overwrite,
}

#[derive(Debug, Clone, Default)]
struct RawRun {
    wall_s: f64,
    bytes: u64,
    syncs: u64,
    /// On-CPU seconds of the writing thread.
    cpu_s: f64,
}

impl RawRun {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.wall_s / 1e6
    }
    fn syncs_per_s(&self) -> f64 {
        self.syncs as f64 / self.wall_s
    }
    fn cpu_us_per_sync(&self) -> f64 {
        self.cpu_s * 1e6 / self.syncs.max(1) as f64
    }
}

/// Writes `OVERWRITE_FILE_BYTES` and syncs them: the file the overwrite runs reuse.
fn prewrite(path: &Path) -> Res<()> {
    let file = File::create(path)?;
    let chunk = vec![0x5Au8; MIB as usize];
    let mut at = 0;
    while at < OVERWRITE_FILE_BYTES {
        file.write_all_at(&chunk, at)?;
        at += MIB;
    }
    file.sync_all()?;
    Ok(())
}

/// `pwrite` of `batch` bytes then `fdatasync`, sequentially, for `secs` seconds. New files
/// go under `scratch` and are left for the caller to delete.
fn raw_sync(
    scratch: &Path,
    prewritten: &Path,
    layout: Layout,
    batch: usize,
    secs: f64,
) -> Res<RawRun> {
    let new_file = || -> Res<File> {
        let path = scratch.join(format!("raw-{}.dat", NEXT_FILE.fetch_add(1, Ordering::Relaxed)));
        Ok(File::options().read(true).write(true).create_new(true).open(path)?)
    };
    let (file, wrap_at) = match layout {
        Layout::SetLen => {
            let f = new_file()?;
            f.set_len(SEGMENT_BYTES_MAX)?;
            f.sync_all()?;
            (f, SEGMENT_BYTES_MAX)
        }
        Layout::Append => {
            let f = new_file()?;
            f.sync_all()?;
            (f, u64::MAX)
        }
        Layout::Overwrite => {
            (File::options().read(true).write(true).open(prewritten)?, OVERWRITE_FILE_BYTES)
        }
    };
    let buf = payload(batch);
    settle();
    let deadline = Duration::from_secs_f64(secs);
    let mut at = RAW_START;
    let mut run = RawRun::default();
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if at + batch as u64 > wrap_at {
            at = RAW_START;
        }
        file.write_all_at(&buf, at)?;
        file.sync_data()?;
        at += batch as u64;
        run.bytes += batch as u64;
        run.syncs += 1;
    }
    run.wall_s = t0.elapsed().as_secs_f64();
    run.cpu_s = thread_cpu_ns().saturating_sub(cpu0) as f64 / 1e9;
    Ok(run)
}

// ---------------------------------------------------------------------------------------
// sync: a minimal group commit, for reference

/// The textbook group commit in a few lines: appenders copy their record into one shared
/// buffer under a mutex and sleep on one condition variable; a committing thread swaps the
/// buffer out, writes it and `fdatasync`s it, then wakes everyone (`notify_all`). Same
/// threads, same record framing (16 + key + data bytes), same file layouts as the engine; no
/// batches, no CRC, no indexes, no per-append completion. It shows how much of the gap to
/// raw writes is the closed loop of blocking threads itself rather than the engine.
#[derive(Default)]
struct MiniState {
    buf: Vec<u8>,
    /// The cycle that records appended now will belong to.
    filling: u64,
    /// Cycles below this are durable.
    durable: u64,
    stop: bool,
}

fn mini_group_commit(
    args: &Args,
    file: File,
    start: u64,
    wrap_at: u64,
    prewritten: bool,
) -> Res<SyncRun> {
    let shared = Arc::new((Mutex::new(MiniState::default()), Condvar::new(), Condvar::new()));
    let framed = 16 + KEY.len() + args.record_bytes;
    let committer = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new().name("riffle-commit-mini".into()).spawn(
            move || -> std::io::Result<(u64, u64)> {
                let (state, work, done) = &*shared;
                let (mut at, mut bytes, mut cycles) = (start, 0u64, 0u64);
                let mut spare = Vec::new();
                loop {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    while s.buf.is_empty() && !s.stop {
                        s = work.wait(s).unwrap_or_else(|e| e.into_inner());
                    }
                    if s.buf.is_empty() {
                        return Ok((bytes, cycles));
                    }
                    std::mem::swap(&mut s.buf, &mut spare);
                    let cycle = s.filling;
                    s.filling += 1;
                    drop(s);
                    if at + spare.len() as u64 > wrap_at {
                        at = start;
                    }
                    file.write_all_at(&spare, at)?;
                    file.sync_data()?;
                    at += spare.len() as u64;
                    bytes += spare.len() as u64;
                    cycles += 1;
                    spare.clear();
                    state.lock().unwrap_or_else(|e| e.into_inner()).durable = cycle + 1;
                    done.notify_all();
                }
            },
        )?
    };
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(args.threads + 1));
    let record = payload(framed);
    let handles: Vec<_> = (0..args.threads)
        .map(|_| {
            let (shared, stop, barrier, record) =
                (Arc::clone(&shared), Arc::clone(&stop), Arc::clone(&barrier), record.clone());
            std::thread::spawn(move || -> u64 {
                let (state, work, done) = &*shared;
                barrier.wait();
                let mut acked = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    s.buf.extend_from_slice(&record);
                    let mine = s.filling;
                    if s.buf.len() == record.len() {
                        work.notify_one();
                    }
                    while s.durable <= mine {
                        s = done.wait(s).unwrap_or_else(|e| e.into_inner());
                    }
                    acked += 1;
                }
                acked
            })
        })
        .collect();
    barrier.wait();
    let committer0 = threads_cpu_ns(is_committer);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    stop.store(true, Ordering::Relaxed);
    let mut records = 0;
    for h in handles {
        records += h.join().map_err(|_| "appender thread panicked")?;
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let committer_cpu_s = threads_cpu_ns(is_committer).saturating_sub(committer0) as f64 / 1e9;
    shared.0.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
    shared.1.notify_one();
    let (disk_bytes, batches) = committer.join().map_err(|_| "committer panicked")??;
    Ok(SyncRun {
        wall_s,
        records,
        disk_bytes,
        batches,
        records_per_batch_p50: f64::NAN,
        rolls: 0,
        allocated: prewritten,
        backend: "mini",
        committer_cpu_s,
    })
}

/// The minimal group commit into a new `set_len` file (`fresh`) or the pre-written file.
fn mini_run(args: &Args, scratch: &Path, prewritten: &Path, steady: bool) -> Res<SyncRun> {
    let (file, wrap_at) = if steady {
        (File::options().read(true).write(true).open(prewritten)?, OVERWRITE_FILE_BYTES)
    } else {
        let f = File::options().read(true).write(true).create_new(true).open(
            scratch.join(format!("mini-{}.dat", NEXT_FILE.fetch_add(1, Ordering::Relaxed))),
        )?;
        f.set_len(SEGMENT_BYTES_MAX)?;
        f.sync_all()?;
        (f, SEGMENT_BYTES_MAX)
    };
    settle();
    mini_group_commit(args, file, RAW_START, wrap_at, steady)
}

// ---------------------------------------------------------------------------------------
// sync: fio

#[derive(Debug, Clone, Default)]
struct FioRun {
    mbps: f64,
    sync_mean_us: f64,
}

/// The number after the last of `keys`, each found after the previous (a minimal scan of
/// fio's JSON output, to avoid a JSON dependency).
fn json_number_after(text: &str, keys: &[&str]) -> Option<f64> {
    let mut at = 0;
    for key in keys {
        at += text[at..].find(key)? + key.len();
    }
    let rest = text[at..].trim_start_matches(|c: char| c == '"' || c == ':' || c.is_whitespace());
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))?;
    rest[..end].parse().ok()
}

fn fio_command(file: &Path, layout: Layout, bs: u64, secs: f64) -> Vec<String> {
    let name = match layout {
        Layout::SetLen => "riffle_fdsync_truncate",
        Layout::Append => "riffle_fdsync_append",
        Layout::Overwrite => "riffle_fdsync_overwrite",
    };
    let mut cmd: Vec<String> = vec![
        "fio".into(),
        format!("--name={name}"),
        format!("--filename={}", file.display()),
        "--rw=write".into(),
        "--ioengine=psync".into(),
        format!("--bs={bs}"),
        "--fdatasync=1".into(),
        "--size=1G".into(),
        "--time_based".into(),
        format!("--runtime={}", secs.ceil() as u64),
        "--output-format=json".into(),
    ];
    cmd.push(
        match layout {
            // ftruncate to 1 GiB: a sparse file, as `set_len` makes.
            Layout::SetLen => "--fallocate=truncate",
            // A new file that grows with each write.
            Layout::Append => "--fallocate=none",
            // The pre-written 1 GiB file: fio overwrites it without laying it out again.
            Layout::Overwrite => "--overwrite=1",
        }
        .into(),
    );
    cmd
}

fn fio_run(file: &Path, layout: Layout, bs: u64, secs: f64) -> Option<FioRun> {
    let cmd = fio_command(file, layout, bs, secs);
    settle();
    let out = Command::new(&cmd[0]).args(&cmd[1..]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("fio failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    let bw = json_number_after(&text, &["\"write\" : {", "\"bw_bytes\""])?;
    let sync = json_number_after(&text, &["\"sync\" : {", "\"lat_ns\"", "\"mean\""]);
    Some(FioRun { mbps: bw / 1e6, sync_mean_us: sync.unwrap_or(f64::NAN) / 1e3 })
}

fn have_fio() -> bool {
    Command::new("fio").arg("--version").output().is_ok_and(|o| o.status.success())
}

// ---------------------------------------------------------------------------------------
// none

#[derive(Debug, Clone, Default)]
struct NoneRun {
    wall_s: f64,
    payload_bytes: u64,
    disk_bytes: u64,
    appender_cpu_s: f64,
    other_cpu_s: f64,
    rolls: usize,
}

impl NoneRun {
    fn payload_gbps(&self) -> f64 {
        self.payload_bytes as f64 / self.wall_s / 1e9
    }
    fn disk_gbps(&self) -> f64 {
        self.disk_bytes as f64 / self.wall_s / 1e9
    }
    fn appender_cpu_per_gb(&self) -> f64 {
        self.appender_cpu_s / (self.payload_bytes as f64 / 1e9)
    }
    fn other_cpu_per_gb(&self) -> f64 {
        self.other_cpu_s / (self.payload_bytes as f64 / 1e9)
    }
}

fn first_number(s: &str) -> u64 {
    s.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// On-CPU nanoseconds of this thread.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat").map_or(0, |s| first_number(&s))
}

/// On-CPU nanoseconds of the live threads of this process whose name `pick` accepts.
fn threads_cpu_ns(pick: impl Fn(&str) -> bool) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| pick(c.trim())))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .map(|s| first_number(&s))
        .sum()
}

/// The engine's committing thread, and io_uring's workers (which run its syncs).
fn is_committer(name: &str) -> bool {
    name.starts_with("riffle-commit") || name.starts_with("iou-wrk")
}

/// On-CPU nanoseconds of all live threads of this process.
fn process_cpu_ns() -> u64 {
    threads_cpu_ns(|_| true)
}

/// One appender appending `per_append` records per call, pipelined, until `payload_limit`
/// bytes, or for `secs` seconds if there is no limit; then a flush. Deletes its log.
fn engine_none(
    args: &Args,
    scratch: &Path,
    backend: IoBackend,
    per_append: usize,
    config: LogConfig,
    payload_limit: Option<u64>,
) -> Res<NoneRun> {
    let dir = tempfile::tempdir_in(scratch)?;
    let group = CommitGroup::start(CommitConfig {
        durability: Durability::None,
        io_backend: backend,
        ..CommitConfig::default()
    })?;
    let log = ShardLog::open(dir.path(), config, &group)?;
    let data = payload(args.record_bytes);
    let chunk = vec![record(&data); per_append];
    log.append_wait(&[record(&data)])?;
    let start_position = log.end_position();
    let start_segments = log.segment_count();
    let chunk_bytes = (per_append * data.len()) as u64;
    let deadline = Duration::from_secs_f64(args.secs);
    let mut tickets = VecDeque::with_capacity(NONE_WINDOW);
    let (mine0, all0) = (thread_cpu_ns(), process_cpu_ns());
    let t0 = Instant::now();
    let mut payload_bytes = 0u64;
    let mut appends = 0u64;
    loop {
        let more = match payload_limit {
            Some(limit) => payload_bytes + chunk_bytes <= limit,
            None => !appends.is_multiple_of(64) || t0.elapsed() < deadline,
        };
        if !more {
            break;
        }
        tickets.push_back(log.append(&chunk)?);
        payload_bytes += chunk_bytes;
        appends += 1;
        if tickets.len() >= NONE_WINDOW {
            tickets.pop_front().map(|t| t.wait()).transpose()?;
        }
    }
    for t in tickets {
        t.wait()?;
    }
    log.flush()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let appender_cpu_s = thread_cpu_ns().saturating_sub(mine0) as f64 / 1e9;
    let all_cpu_s = process_cpu_ns().saturating_sub(all0) as f64 / 1e9;
    let (disk_bytes, _) = batch_stats(&log, start_position)?;
    let run = NoneRun {
        wall_s,
        payload_bytes,
        disk_bytes,
        appender_cpu_s,
        other_cpu_s: (all_cpu_s - appender_cpu_s).max(0.0),
        rolls: log.segment_count() - start_segments,
    };
    drop(log);
    drop(group);
    drop(dir);
    Ok(run)
}

// ---------------------------------------------------------------------------------------
// the run

#[derive(Default)]
struct Results {
    /// Per backend label: the engine run and the raw run matched to it.
    fresh: Vec<(String, SyncRun, RawRun)>,
    steady: Vec<(String, SyncRun, RawRun)>,
    append: Vec<(f64, RawRun)>,
    fio: Vec<(Layout, u64, FioRun)>,
    none: Vec<(String, NoneRun)>,
}

fn machine_note(dir: &Path) -> String {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let dir_s = dir.display().to_string();
    let dev = run("df", &["--output=source", &dir_s]).lines().last().unwrap_or("").to_string();
    let fs = run("df", &["--output=fstype", &dir_s]).lines().last().unwrap_or("").to_string();
    format!("{cpus} CPUs usable, kernel {}, {dir_s} on {fs} ({dev})", run("uname", &["-r"]))
}

/// Runs a raw baseline at the run's mean batch size, prints both and keeps them.
fn match_and_record(
    args: &Args,
    scratch: &Path,
    prewritten: &Path,
    label: String,
    steady: bool,
    e: SyncRun,
    r: &mut Results,
) -> Res<usize> {
    let batch = e.batch_bytes().round() as usize;
    let layout = if steady { Layout::Overwrite } else { Layout::SetLen };
    let raw = raw_sync(scratch, prewritten, layout, batch, args.secs)?;
    println!(
        "{:<16} {:<6} {:>6.1} MB/s {:>5.0} cycles/s batch {:>6} B ({:>4.1} rec, p50 {:>2.0}) commit CPU {:>3.0} us/cycle rolls {} allocated {:<5} | raw {:<9} {:>6.1} MB/s {:>5.0} syncs/s CPU {:>3.0} us/sync | ratio {:.2}",
        label,
        if steady { "steady" } else { "fresh" },
        e.disk_mbps(),
        e.cycles_per_s(),
        batch,
        e.records_per_batch(),
        e.records_per_batch_p50,
        e.committer_us_per_cycle(),
        e.rolls,
        e.allocated,
        format!("{layout:?}"),
        raw.mbps(),
        raw.syncs_per_s(),
        raw.cpu_us_per_sync(),
        e.disk_mbps() / raw.mbps(),
    );
    if steady {
        r.steady.push((label, e, raw));
    } else {
        r.fresh.push((label, e, raw));
    }
    Ok(batch)
}

fn sync_round(args: &Args, base: &Path, prewritten: &Path, fio: bool, r: &mut Results) -> Res<()> {
    let scratch = tempfile::tempdir_in(base)?;
    let mut keep = Vec::new();
    let mut fresh_batch = None;
    for &backend in &args.backends {
        for pipelined in [false, true] {
            if pipelined && !args.pipelined {
                continue;
            }
            for steady in [false, true] {
                let (e, dir) = engine_sync(args, scratch.path(), backend, steady, pipelined)?;
                keep.push(dir);
                let label =
                    format!("engine {}{}", e.backend, if pipelined { " pipelined" } else { "" });
                let batch =
                    match_and_record(args, scratch.path(), prewritten, label, steady, e, r)?;
                let default_backend = backend == IoBackend::Auto;
                if !steady && !pipelined && (fresh_batch.is_none() || default_backend) {
                    fresh_batch = Some(batch);
                }
            }
        }
    }
    for steady in [false, true] {
        let e = mini_run(args, scratch.path(), prewritten, steady)?;
        let label = "mini group commit".to_string();
        match_and_record(args, scratch.path(), prewritten, label, steady, e, r)?;
    }
    let batch = fresh_batch.unwrap_or(64 * 1024);
    let raw = raw_sync(scratch.path(), prewritten, Layout::Append, batch, args.secs)?;
    println!("raw append at {batch} B: {:.1} MB/s, {:.0} syncs/s", raw.mbps(), raw.syncs_per_s());
    r.append.push((batch as f64, raw));
    if fio {
        let bs = ((batch as u64 + 512) / 1024).max(1) * 1024;
        for (i, layout) in
            [Layout::SetLen, Layout::Append, Layout::Overwrite].into_iter().enumerate()
        {
            let file = match layout {
                Layout::Overwrite => prewritten.to_path_buf(),
                _ => scratch.path().join(format!("fio-{i}.dat")),
            };
            if let Some(f) = fio_run(&file, layout, bs, args.secs) {
                println!(
                    "fio {:<9} bs={bs}: {:.1} MB/s, sync mean {:.0} us",
                    format!("{layout:?}"),
                    f.mbps,
                    f.sync_mean_us
                );
                r.fio.push((layout, bs, f));
            }
        }
    }
    drop(keep);
    drop(scratch);
    let _ = Command::new("sync").status();
    Ok(())
}

fn none_round(args: &Args, base: &Path, r: &mut Results) -> Res<()> {
    let memory = || LogConfig {
        segment_bytes: SEGMENT_BYTES_MAX,
        prepare_segments: false,
        ..LogConfig::default()
    };
    // The first run after a pause pays for the first touch of the page-cache memory it gets
    // (on this VM, ~7 us per 4 KiB page, host side): kept as its own row, not mixed in.
    let first = args.backends[0];
    let limit = Some(args.none_mib * MIB);
    let cold = engine_none(args, base, first, args.none_appends[0], memory(), limit)?;
    let label = format!("memory {:<5} x{} cold", backend_label(first), args.none_appends[0]);
    print_none(&label, &cold);
    r.none.push((label, cold));
    for &backend in &args.backends {
        for &per_append in &args.none_appends {
            let limit = Some(args.none_mib * MIB);
            let run = engine_none(args, base, backend, per_append, memory(), limit)?;
            let label = format!("memory {:<5} x{per_append}", backend_label(backend));
            print_none(&label, &run);
            r.none.push((label, run));
        }
    }
    let backend = *args.backends.last().unwrap_or(&IoBackend::Auto);
    let per_append = args.none_appends[0];
    for prepare_segments in [true, false] {
        let config = LogConfig { prepare_segments, ..LogConfig::default() };
        let run = engine_none(args, base, backend, per_append, config, None)?;
        let label = format!(
            "sustained {:<5} x{per_append}{}",
            backend_label(backend),
            if prepare_segments { "" } else { " no-prep" }
        );
        print_none(&label, &run);
        r.none.push((label, run));
        let _ = Command::new("sync").status();
    }
    Ok(())
}

fn print_none(label: &str, run: &NoneRun) {
    println!(
        "none {label:<26} {:>5.2} GB/s payload ({:.2} on disk), {:.2} GB in {:.2} s, rolls {}, CPU s/GB: appender {:.2}, other threads {:.2}",
        run.payload_gbps(),
        run.disk_gbps(),
        run.payload_bytes as f64 / 1e9,
        run.wall_s,
        run.rolls,
        run.appender_cpu_per_gb(),
        run.other_cpu_per_gb(),
    );
}

fn main() -> Res<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let base = tempfile::Builder::new().prefix("riffle-commit-throughput").tempdir_in(&args.dir)?;
    let fio = args.fio && args.sync && have_fio();
    println!("# commit_throughput: {}", machine_note(base.path()));
    println!(
        "# {} rounds x {} s runs; sync: {} appenders x {} B records; none: 1 appender, {:?} records per append, {} MiB from memory; backends {:?}; fio: {}",
        args.rounds,
        args.secs,
        args.threads,
        args.record_bytes,
        args.none_appends,
        args.none_mib,
        args.backends.iter().map(|b| backend_label(*b)).collect::<Vec<_>>(),
        if fio { "yes" } else { "no" },
    );
    let prewritten = base.path().join("overwrite.dat");
    if args.sync {
        let t = Instant::now();
        prewrite(&prewritten)?;
        println!(
            "# pre-wrote {} MiB for the overwrite runs in {:.1} s",
            OVERWRITE_FILE_BYTES / MIB,
            t.elapsed().as_secs_f64()
        );
    }
    let mut r = Results::default();
    for round in 1..=args.rounds {
        println!("\n## round {round}/{}", args.rounds);
        if args.sync {
            sync_round(&args, base.path(), &prewritten, fio, &mut r)?;
        }
        if args.none {
            none_round(&args, base.path(), &mut r)?;
        }
    }
    summarize(&args, &r, fio, &prewritten, base.path());
    Ok(())
}

fn summarize(args: &Args, r: &Results, fio: bool, prewritten: &Path, base: &Path) {
    println!("\n## medians over {} rounds", args.rounds);
    if args.sync {
        println!(
            "\n{:<33} {:>6} {:>7} {:>8} {:>7} {:>7} {:>9} {:>8} {:>9} {:>6} {:>6}",
            format!("sync, {} appenders", args.threads),
            "MB/s",
            "payload",
            "cycles/s",
            "batch B",
            "rec/cyc",
            "commit us",
            "raw MB/s",
            "raw syn/s",
            "raw us",
            "ratio"
        );
        for (kind, runs) in [("fresh", &r.fresh), ("steady", &r.steady)] {
            let mut labels: Vec<&String> = runs.iter().map(|(l, _, _)| l).collect();
            labels.sort();
            labels.dedup();
            for label in labels {
                let mine: Vec<_> = runs.iter().filter(|(l, _, _)| l == label).collect();
                let m = |f: &dyn Fn(&SyncRun, &RawRun) -> f64| {
                    median(mine.iter().map(|(_, e, raw)| f(e, raw)).collect())
                };
                println!(
                    "{:<33} {:>6.1} {:>7.1} {:>8.0} {:>7.0} {:>7.1} {:>9.0} {:>8.1} {:>9.0} {:>6.0} {:>6.2}",
                    format!("{kind:<6} {label}"),
                    m(&|e, _| e.disk_mbps()),
                    m(&|e, _| e.payload_mbps(args.record_bytes)),
                    m(&|e, _| e.cycles_per_s()),
                    m(&|e, _| e.batch_bytes()),
                    m(&|e, _| e.records_per_batch()),
                    m(&|e, _| e.committer_us_per_cycle()),
                    m(&|_, raw| raw.mbps()),
                    m(&|_, raw| raw.syncs_per_s()),
                    m(&|_, raw| raw.cpu_us_per_sync()),
                    m(&|e, raw| e.disk_mbps() / raw.mbps()),
                );
            }
        }
        println!(
            "(MB/s: on-disk bytes; payload: record data only; commit us: on-CPU time of the committing thread(s) per cycle; raw us: on-CPU time of the raw writer per write+fdatasync. ratio: MB/s over raw MB/s at the same bytes per fdatasync, fresh vs a set_len file, steady vs a pre-written file; median of the per-round ratios. mini: a minimal group commit for reference, see the source)"
        );
        println!(
            "raw append (growing file) at {:.0} B: {:.1} MB/s, {:.0} syncs/s",
            median(r.append.iter().map(|(b, _)| *b).collect()),
            median(r.append.iter().map(|(_, a)| a.mbps()).collect()),
            median(r.append.iter().map(|(_, a)| a.syncs_per_s()).collect()),
        );
        if fio {
            for layout in [Layout::SetLen, Layout::Append, Layout::Overwrite] {
                let runs: Vec<_> = r.fio.iter().filter(|(l, _, _)| *l == layout).collect();
                if runs.is_empty() {
                    continue;
                }
                let file = match layout {
                    Layout::Overwrite => prewritten.to_path_buf(),
                    _ => base.join("fio.dat"),
                };
                let bs = median(runs.iter().map(|(_, bs, _)| *bs as f64).collect()) as u64;
                println!(
                    "fio {:<9} bs~{bs:>6}: {:>6.1} MB/s, sync mean {:>5.0} us; {}",
                    format!("{layout:?}"),
                    median(runs.iter().map(|(_, _, f)| f.mbps).collect()),
                    median(runs.iter().map(|(_, _, f)| f.sync_mean_us).collect()),
                    fio_command(&file, layout, bs, args.secs).join(" "),
                );
            }
        }
    }
    if args.none {
        println!(
            "\n{:<30} {:>12} {:>9} {:>18} {:>18}",
            "none, 1 appender", "payload GB/s", "disk GB/s", "appender CPU s/GB", "other CPU s/GB"
        );
        let mut labels: Vec<&String> = r.none.iter().map(|(l, _)| l).collect();
        labels.sort();
        labels.dedup();
        for label in labels {
            let runs: Vec<&NoneRun> =
                r.none.iter().filter(|(l, _)| l == label).map(|(_, n)| n).collect();
            let m = |f: &dyn Fn(&NoneRun) -> f64| median(runs.iter().map(|n| f(n)).collect());
            println!(
                "{label:<30} {:>12.2} {:>9.2} {:>18.2} {:>18.2}",
                m(&NoneRun::payload_gbps),
                m(&NoneRun::disk_gbps),
                m(&NoneRun::appender_cpu_per_gb),
                m(&NoneRun::other_cpu_per_gb),
            );
        }
    }
}
