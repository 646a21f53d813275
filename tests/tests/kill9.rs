//! Pins crash consistency under kill -9: a child process (`riffle-crash-child`) appends with
//! `sync` durability and reports each acknowledgement; the test kills it with SIGKILL at a
//! random moment, reopens the logs in-process, and checks that
//!
//! - every acknowledged record, from every run so far, is at its acknowledged position with
//!   exactly its contents;
//! - positions are contiguous from 0 up to the end position, and arrival timestamps never
//!   decrease;
//! - every readable record (acknowledged or not) decodes and matches the deterministic
//!   workload byte for byte: unacknowledged records that became durable are allowed,
//!   half-written or foreign ones are not;
//! - each producer's records form a prefix of its sequence, in order, and run past its last
//!   acknowledgement by at most the one append that was in flight;
//! - reopening is stable: the next child recovers the same end positions the test saw.
//!
//! Several cycles per I/O backend (std and auto), on one data directory that keeps growing,
//! with segments small enough to roll during every run; one cycle per backend kills the
//! child right after it starts, during recovery. A second test runs three shards in one
//! commit group. The kill moments come from a seeded generator: the seed is printed, and
//! `RIFFLE_TEST_SEED=<seed>` replays the same choices (the timing of the child itself is
//! not reproducible).
//!
//! A kill -9 loses the process, not the page cache: this checks that what the engine
//! acknowledges is written and that recovery handles whatever a dead process left, not
//! that `fdatasync` reaches the platter.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use riffle_engine::batch::{split_batches, RecordIter};
use riffle_engine::{CommitConfig, CommitGroup, Durability, IoBackend, ShardLog};
use riffle_tests::{
    log_config, partition_key, record_data, record_id, shard_dir, test_seed, Ack, ChildLine,
    RecordId, SplitMix64, MAX_RECORDS_PER_APPEND,
};

const CHILD: &str = env!("CARGO_BIN_EXE_riffle-crash-child");
const SIGKILL: i32 = 9;
/// How long the child may take to report `READY`, or its first acknowledgement, before the
/// test gives up on it. A liveness bound, far above anything a working engine needs.
const STALL_LIMIT: Duration = Duration::from_secs(20);

fn backend_arg(backend: IoBackend) -> &'static str {
    match backend {
        IoBackend::Std => "std",
        IoBackend::Auto => "auto",
        IoBackend::Uring => "uring",
    }
}

/// When to kill the child.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after it starts, whatever it is doing (recovery, opening, first appends).
    Early(Duration),
    /// This long after it reports `READY`, and not before its first acknowledgement.
    Appending(Duration),
}

/// What one run of the child reported before it died.
struct RunReport {
    ready: Option<Vec<u64>>,
    acks: Vec<Ack>,
}

/// Runs the child on `root` until `kill_at`, kills it with SIGKILL, and returns what it
/// reported. Fails if the child died of anything but the kill.
fn run_child(
    root: &Path,
    backend: IoBackend,
    run: u32,
    shards: usize,
    threads: u32,
    kill_at: KillAt,
) -> RunReport {
    let started = Instant::now();
    let mut child = Command::new(CHILD)
        .arg(root)
        .arg(backend_arg(backend))
        .arg(run.to_string())
        .arg(shards.to_string())
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash child");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                // A line without its newline was being written at the kill: not reported.
                Ok(0) | Err(_) => return,
                Ok(_) if line.last() != Some(&b'\n') => return,
                Ok(_) => {
                    let text = String::from_utf8(line[..line.len() - 1].to_vec())
                        .expect("the child writes UTF-8");
                    if tx.send(text).is_err() {
                        return;
                    }
                }
            }
        }
    });

    let mut lines = Vec::new();
    let mut ready_at = None;
    let mut acked = false;
    loop {
        let now = Instant::now();
        let deadline = match kill_at {
            KillAt::Early(after) => started + after,
            KillAt::Appending(after) => match ready_at {
                None => started + STALL_LIMIT,
                Some(ready) if acked => ready + after,
                Some(ready) => ready + STALL_LIMIT,
            },
        };
        if now >= deadline {
            if matches!(kill_at, KillAt::Appending(_)) && !acked {
                let _ = child.kill();
                panic!("run {run}: the child made no progress in {STALL_LIMIT:?}");
            }
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                if line.starts_with("READY") && ready_at.is_none() {
                    ready_at = Some(Instant::now());
                }
                acked |= line.starts_with("ACK");
                lines.push(line);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The child closed its stdout: it died on its own; the status check says why.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    child.kill().expect("kill the crash child");
    let status = child.wait().expect("reap the crash child");
    reader.join().expect("stdout reader");
    lines.extend(rx.try_iter());
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "run {run}: the child must die of the kill, not of {status:?} (see its stderr above)"
    );

    let mut report = RunReport { ready: None, acks: Vec::new() };
    for (i, line) in lines.iter().enumerate() {
        match ChildLine::parse(line) {
            Some(ChildLine::Ready { ends }) if i == 0 => report.ready = Some(ends),
            Some(ChildLine::Ack(ack)) if i > 0 => report.acks.push(ack),
            _ => panic!("run {run}: unexpected line {i} from the child: {line:?}"),
        }
    }
    report
}

/// Every readable record of `log`, in position order: (position, timestamp, key, data).
fn read_all(log: &ShardLog) -> Vec<(u64, u64, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut position = log.start_position();
    while let Some(read) = log.read(position, 1 << 20).expect("read") {
        for batch in split_batches(&read.bytes) {
            let (_, bytes) = batch.expect("a readable batch passes its CRC");
            for r in RecordIter::new(bytes).expect("batch header") {
                let r = r.expect("a readable record decodes");
                if r.position >= position {
                    out.push((
                        r.position,
                        r.timestamp_ms,
                        r.partition_key.to_vec(),
                        r.data.to_vec(),
                    ));
                }
            }
        }
        assert!(read.next_position > position, "reads make progress");
        position = read.next_position;
    }
    out
}

/// What a reopen found.
struct Recovered {
    /// Each shard's end position.
    ends: Vec<u64>,
    /// Each shard's segment count.
    segments: Vec<usize>,
    /// Records found past their producer's last acknowledgement: durable, not acknowledged.
    unacked: u64,
    /// The I/O backend the reopen ran on (`Auto` resolves to `io_uring` or `std`).
    backend: &'static str,
}

/// Reopens the logs and checks them against every acknowledgement so far (`acks`, with the
/// run each came from).
fn verify(
    root: &Path,
    backend: IoBackend,
    shards: usize,
    runs: u32,
    acks: &[(u32, Ack)],
) -> Recovered {
    let group = CommitGroup::start(CommitConfig {
        durability: Durability::Sync,
        io_backend: backend,
        ..CommitConfig::default()
    })
    .expect("commit group");
    let backend = group.backend_name();
    let mut ends = Vec::with_capacity(shards);
    let mut segments = Vec::with_capacity(shards);
    // Per shard, the id of the record at each position.
    let mut ids: Vec<Vec<RecordId>> = Vec::with_capacity(shards);
    // Per (run, producer), the sequence numbers found, over all shards.
    let mut found: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
    for shard in 0..shards {
        let log = ShardLog::open(&shard_dir(root, shard), log_config(), &group).expect("reopen");
        assert_eq!(log.start_position(), 0, "shard {shard}: nothing is ever deleted");
        let end = log.end_position();
        let records = read_all(&log);
        assert_eq!(records.len() as u64, end, "shard {shard}: every position below the end reads");
        let mut last_timestamp = 0;
        let mut last_seq: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        let mut last_run = 0;
        let mut shard_ids = Vec::with_capacity(records.len());
        for (i, (position, timestamp, key, data)) in records.iter().enumerate() {
            assert_eq!(*position, i as u64, "shard {shard}: positions are contiguous from 0");
            assert!(*timestamp >= last_timestamp, "shard {shard}: timestamp goes back at {i}");
            last_timestamp = *timestamp;
            let id = record_id(data)
                .unwrap_or_else(|| panic!("shard {shard} position {i}: too short for an id"));
            assert!(id.run < runs, "shard {shard} position {i}: record of a future run {id:?}");
            assert!(id.run >= last_run, "shard {shard} position {i}: runs out of order");
            last_run = id.run;
            assert!(
                *data == record_data(id),
                "shard {shard} position {i}: the contents of {id:?} are damaged"
            );
            assert_eq!(key, partition_key(id.run, id.thread).as_bytes(), "shard {shard} at {i}");
            if let Some(previous) = last_seq.insert((id.run, id.thread), id.seq) {
                assert!(id.seq > previous, "shard {shard} position {i}: {id:?} out of order");
            }
            found.entry((id.run, id.thread)).or_default().push(id.seq);
            shard_ids.push(id);
        }
        ends.push(end);
        segments.push(log.segment_count());
        ids.push(shard_ids);
        drop(log);
    }
    drop(group);

    let mut acked_through: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for (run, ack) in acks {
        for i in 0..ack.count {
            let expected = RecordId { run: *run, thread: ack.thread, seq: ack.seq + i };
            let position = ack.position + i;
            let at = ids[ack.shard].get(position as usize);
            assert_eq!(
                at,
                Some(&expected),
                "acknowledged record {expected:?} must be at shard {} position {position}",
                ack.shard
            );
        }
        let through = acked_through.entry((*run, ack.thread)).or_default();
        *through = (*through).max(ack.seq + ack.count);
    }
    let mut unacked = 0;
    for ((run, thread), seqs) in &mut found {
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert!(
            seqs.iter().copied().eq(0..n),
            "run {run} producer {thread}: its records must be a prefix of its sequence"
        );
        let acked = acked_through.get(&(*run, *thread)).copied().unwrap_or(0);
        assert!(
            n <= acked + MAX_RECORDS_PER_APPEND,
            "run {run} producer {thread}: {n} records found but only {acked} acknowledged, \
             and at most one append ({MAX_RECORDS_PER_APPEND} records) can be in flight"
        );
        unacked += n.saturating_sub(acked);
    }
    Recovered { ends, segments, unacked, backend }
}

/// Kills and reopens the child `cycles` times per backend, checking the logs after each.
fn crash_cycles(name: &str, salt: u64, shards: usize, threads: u32, cycles: u32) {
    let mut rng = SplitMix64::new(test_seed("kill9") ^ salt);
    for backend in [IoBackend::Std, IoBackend::Auto] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        let mut acks: Vec<(u32, Ack)> = Vec::new();
        let mut ends: Option<Vec<u64>> = None;
        let early = rng.below(u64::from(cycles)) as u32;
        for run in 0..cycles {
            let kill_at = if run == early {
                KillAt::Early(Duration::from_millis(rng.between(0, 20)))
            } else {
                KillAt::Appending(Duration::from_millis(rng.between(50, 400)))
            };
            let report = run_child(&root, backend, run, shards, threads, kill_at);
            if let (Some(reported), Some(seen)) = (&report.ready, &ends) {
                assert_eq!(reported, seen, "run {run}: the child recovered other end positions");
            }
            let new_acks = report.acks.len();
            acks.extend(report.acks.into_iter().map(|a| (run, a)));
            let recovered = verify(&root, backend, shards, run + 1, &acks);
            println!(
                "{name} {backend:?} run {run}: killed at {kill_at:?} with {new_acks} acks; \
                 reopened on {}: ends {:?}, segments {:?}, {} records durable but never \
                 acknowledged",
                recovered.backend, recovered.ends, recovered.segments, recovered.unacked
            );
            ends = Some(recovered.ends);
        }
        let records: u64 = acks.iter().map(|(_, a)| a.count).sum();
        assert!(records > 0, "{name} {backend:?}: nothing was ever acknowledged");
    }
}

#[test]
fn every_acknowledged_record_survives_kill_9() {
    crash_cycles("one shard", 0, 1, 4, 7);
}

#[test]
fn every_acknowledged_record_survives_kill_9_with_shards_sharing_a_commit_group() {
    crash_cycles("three shards", 0x5EED_F5A4, 3, 6, 5);
}
